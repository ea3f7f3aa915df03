"""New ids for operations, files, stores and sessions: random, and shaped as Google's are."""

from __future__ import annotations

import secrets
import string
import uuid

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_token_id(length: int = 20) -> str:
    """Lowercase alphanumerics, as Google's ids are; 20 characters carry 103 random bits.

    One draw from the OS generator, written in base 36: drawing each character
    separately cost a system call apiece and showed up in the create path.
    """
    number = secrets.randbelow(36**length)
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 36)
        chars.append(_ID_ALPHABET[digit])
    return "".join(chars)


def new_uuid_id() -> str:
    return str(uuid.uuid4())
