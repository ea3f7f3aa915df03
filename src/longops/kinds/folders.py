"""Operator-configured folders that kinds may read or write, and nothing outside them."""

from __future__ import annotations

from pathlib import Path


class OutsideFolder(ValueError):
    pass


def inside(root: Path, relative: str) -> Path:
    """`relative` resolved under `root`; `OutsideFolder` if it escapes (`..`, links)."""
    base = root.resolve()
    path = (base / relative.lstrip("/")).resolve()
    if path == base or not path.is_relative_to(base):
        raise OutsideFolder(f"{relative!r} is outside the allowed folder")
    return path
