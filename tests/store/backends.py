"""The backends every store test runs on, and how a test says it is for some only."""

from __future__ import annotations

import pytest

BACKENDS = ("sqlite", "postgres")


def only(*backends: str) -> pytest.MarkDecorator:
    """For what only some backends can do (the test's docstring says why): the others
    are not run rather than skipped, since CI fails on a skip."""
    assert set(backends) <= set(BACKENDS), backends
    return pytest.mark.parametrize("backend", backends)
