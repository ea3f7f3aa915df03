"""Operator-configured folders that kinds may read or write, and nothing outside them.

A folder setting may hold `{tenant}` (`LONGOPS_GCS_ROOT=/srv/gcs/{tenant}`): each
operation then reads and writes only its own tenant's folder, so one tenant cannot
import or render from the files another wrote. Without it, one folder serves everyone.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

TENANT = "{tenant}"
"""The placeholder a folder setting may hold, replaced by the tenant's folder name."""
TENANT_NAME_MAX = 64
"""The longest folder name `tenant_name` gives; longer tenants are hashed."""
OPEN_TENANT = "default"
"""The folder of the open server's tenant (""); also that of bare API keys, whose
tenant is named `default`."""
_KEPT = re.compile(rf"[A-Za-z0-9._-]{{1,{TENANT_NAME_MAX}}}")


class OutsideFolder(ValueError):
    pass


def inside(root: Path, relative: str, *, absolute: bool = False) -> Path:
    """`relative` resolved under `root`; `OutsideFolder` if it escapes (`..`, links).

    With `absolute`, a path that names a place inside `root` from the file system's top
    (`file:///srv/imports/a.txt` under /srv/imports) is taken as it is, as a user who
    copies a file's path expects; any other is read relative to `root`, as before.
    """
    base = root.resolve()
    path = (base / relative.lstrip("/")).resolve()
    if absolute and relative.startswith("/"):
        whole = Path(relative).resolve()
        if whole != base and whole.is_relative_to(base):
            path = whole
    if path == base or not path.is_relative_to(base):
        raise OutsideFolder(f"{relative!r} is outside the allowed folder")
    return path


def tenant_name(tenant: str) -> str:
    """One safe path component for `tenant`, the same one every time.

    Tenants are chosen by the operator, but a name with `/`, `..`, NUL or other
    characters a file system treats specially must not pick another folder: those
    (and overlong names) become `t-` and a SHA-256 prefix, 128 bits, so no two
    tenants share one by accident.
    """
    if tenant == "":
        return OPEN_TENANT
    if _KEPT.fullmatch(tenant) and tenant not in (".", ".."):
        return tenant
    return "t-" + hashlib.sha256(tenant.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def tenant_folder(root: Path, tenant: str) -> Path:
    """`root` with each `{tenant}` replaced by the tenant's folder name; as is without one."""
    return Path(str(root).replace(TENANT, tenant_name(tenant)))
