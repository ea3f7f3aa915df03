"""Operation names as clients write them.

Every operation has one full name (`models/veo/operations/abc`,
`fileSearchStores/s/operations/abc`, `operations/abc` …) and can also be reached by
the short `operations/{id}`; ids are unique across kinds.
"""

from __future__ import annotations

import re

from longops.server.errors import invalid_argument

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._~-]*"
_OPERATION_NAME = re.compile(rf"^(?:(?:{_SEGMENT}/)*?)operations/([a-z0-9][a-z0-9-]{{0,63}})$")
_PARENT = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT})*$")


def is_operation_name(name: str) -> bool:
    return name == "operations" or name.endswith("/operations") or "operations/" in name


def operation_id(name: str) -> str:
    """The id in an operation name; 400 when the name is not one."""
    match = _OPERATION_NAME.match(name)
    if match is None:
        raise invalid_argument(f"Invalid operation name: {name!r}.", field="name")
    return match.group(1)


def matches(requested: str, stored: str, id: str) -> bool:
    return requested == stored or requested == f"operations/{id}"


def check_parent(parent: str) -> str:
    if not _PARENT.match(parent):
        raise invalid_argument(f"Invalid parent: {parent!r}.", field="parent")
    return parent
