"""The backends every store test runs on, and how a test says where they differ."""

from __future__ import annotations

import pytest

BACKENDS = ("sqlite", "postgres")


def drift(reason: str, *failing: str) -> pytest.MarkDecorator:
    """Run on every backend, expecting (strictly) the `failing` ones to fail: the test
    asserts the behaviour all backends must share, which those don't have yet. When a
    backend is fixed, its strict xfail turns into a failure, and the mark must go."""
    assert set(failing) <= set(BACKENDS), failing
    mark = pytest.mark.xfail(strict=True, reason=f"drift: {reason}")
    return pytest.mark.parametrize(
        "backend", [pytest.param(b, marks=mark) if b in failing else b for b in BACKENDS]
    )


def only(*backends: str) -> pytest.MarkDecorator:
    """For what only some backends can do (the test's docstring says why): the others
    are not run rather than skipped, since CI fails on a skip."""
    assert set(backends) <= set(BACKENDS), backends
    return pytest.mark.parametrize("backend", backends)
