"""The store conformance suite: every Store method, run on every backend.

Each test gets a `store` (and, for another process's view, `other`) on a fresh
database of each backend in `tests/store/backends.py`. Where the backends used to
differ (idempotent create, the types RETURNING gives back, metadata-filter operators),
a test asserts the one behaviour they now share.
"""
