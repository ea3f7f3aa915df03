"""Resumable uploads in progress: each session's settings and the bytes received so far.

They live in the blob store rather than the database, so that any API server sharing
the store can take a session's next chunk, and so that the bytes become the file's blob
without a copy (`publish_appended`). A session its client gives up on would stay
forever, bytes and all: each expires a week after it opens, as Google's upload URLs do,
and the workers' maintenance sweeps expired ones away.

Every method blocks (it is blob store I/O): callers on an event loop run them in a thread.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

import orjson

from longops.engine.blobs import BlobNotFound, Blobs
from longops.engine.registry import new_token_id

FOLDER = "uploads"
SESSION_ID = r"[a-z0-9]{32}"
"""What `open` makes a session id: long and random, as it is the upload's credential."""
STORE_UPLOADS = "search-uploads"
"""Where an upload into a file search store leaves its bytes for the import, under the
session id (`{STORE_UPLOADS}/{session}`)."""
GRACE_SECONDS = 3600.0
"""How long an expired session is kept before it is swept: a chunk accepted just
before the expiry may still be on its way into the blob store, or being published."""


@dataclass(frozen=True, slots=True)
class UploadSessions:
    blobs: Blobs
    ttl_seconds: float

    @staticmethod
    def _settings_key(session: str) -> str:
        return f"{FOLDER}/{session}.json"

    @staticmethod
    def part(session: str) -> str:
        """The growing blob that receives the session's bytes."""
        return f"{FOLDER}/{session}.part"

    def open(self, settings: dict[str, Any], now: float) -> str:
        """Start a session; returns its id (`SESSION_ID`)."""
        session = new_token_id(32)
        state = {**settings, "expires": now + self.ttl_seconds}
        self.blobs.write_bytes(self._settings_key(session), orjson.dumps(state))
        return session

    def settings(self, session: str, now: float) -> dict[str, Any] | None:
        """A live session's settings; None where it never was, has ended or expired."""
        try:
            state: dict[str, Any] = orjson.loads(self.blobs.read(self._settings_key(session)))
        except BlobNotFound:
            return None
        return state if state["expires"] > now else None

    @staticmethod
    def _claim_key(session: str) -> str:
        return f"{FOLDER}/{session}.claim"

    def claim(self, session: str) -> bool:
        """Take the right to publish the session's bytes; True for exactly one caller.

        Several finalize requests of one session may arrive at once (on any of the API
        servers): each used to publish, the later ones an empty blob over the first's.
        The claim is an exclusive create in the blob store, beside the session."""
        return self.blobs.write_new(self._claim_key(session), b"")

    def claimed(self, session: str) -> bool:
        """Whether a finalize has taken the session (its bytes may be published already)."""
        try:
            self.blobs.read(self._claim_key(session))
        except BlobNotFound:
            return False
        return True

    def end(self, session: str) -> None:
        """Forget a session whose bytes were published or thrown away (the part is gone
        with them). The claim goes last, so a finalize arriving meanwhile finds the
        session claimed or gone, never open again."""
        self.blobs.delete(self._settings_key(session))
        self.blobs.delete(self._claim_key(session))

    def purge_expired(self, now: float) -> int:
        """Remove sessions that expired over `GRACE_SECONDS` ago, bytes first; returns how
        many. Safe to run in several processes at once: removing is idempotent."""
        purged = 0
        for key in self.blobs.keys(FOLDER):
            session, suffix = posixpath.splitext(posixpath.basename(key))
            if suffix != ".json":
                continue
            try:
                expires = orjson.loads(self.blobs.read(key))["expires"]
            except BlobNotFound:  # ended meanwhile
                continue
            if expires > now - GRACE_SECONDS:
                continue
            self.blobs.discard_appended(self.part(session))
            self.blobs.delete(key)
            self.blobs.delete(self._claim_key(session))
            purged += 1
        return purged
