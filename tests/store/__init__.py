"""The store conformance suite: every Store method, run on every backend.

Each test gets a `store` (and, for another process's view, `other`) on a fresh
database of each backend in `tests/store/backends.py`; a behaviour one backend does
not have yet is marked there as a drift rather than left untested.
"""
