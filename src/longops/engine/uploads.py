"""Resumable uploads in progress: each session's settings and the bytes received so far.

They live in the blob store rather than the database, so that any API server sharing
the store can take a session's next chunk, and so that the bytes become the file's blob
without a copy (`publish_appended`). A session its client gives up on would stay
forever, bytes and all: each expires a week after it opens, as Google's upload URLs do,
and the workers' maintenance sweeps expired ones away.

Every method blocks (it is blob store I/O): callers on an event loop run them in a thread.
"""

from __future__ import annotations

import contextlib
import posixpath
from dataclasses import dataclass
from typing import Any

import orjson

from longops.engine.blobs import BlobNotFound, Blobs
from longops.engine.ids import new_token_id

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

    def claim(self, session: str, expires: float, target: dict[str, Any]) -> bool:
        """Take the right to publish the session's bytes; True for exactly one caller.

        Several finalize requests of one session may arrive at once (on any of the API
        servers): each used to publish, the later ones an empty blob over the first's.
        The claim is an exclusive create in the blob store, beside the session, kept
        until the session would have expired (`expires`), after the session ended too:
        a finalize that read the settings just before they went cannot claim it again.
        It holds `target` (where the bytes go: `key`, and `fileId` for a file), so that
        a finalize that never ended its session (its process died, or its outcome is
        unknown) can be settled when the session is swept (`purge_expired`)."""
        claim = orjson.dumps({"expires": expires, "target": target})
        return self.blobs.write_new(self._claim_key(session), claim)

    def claimed(self, session: str) -> bool:
        """Whether a finalize has taken the session (its bytes may be published already)."""
        try:
            self.blobs.read(self._claim_key(session))
        except BlobNotFound:
            return False
        return True

    def end(self, session: str) -> None:
        """Forget a session whose bytes were published or thrown away (the part is gone
        with them). Its claim stays until it expires (see `claim`)."""
        self.blobs.delete(self._settings_key(session))

    def purge_expired(self, now: float) -> list[dict[str, Any]]:
        """Remove sessions that expired over `GRACE_SECONDS` ago, bytes first, and the
        claims of ended ones. Returns one entry per session removed: where a finalize
        had claimed it and not ended it, the claim's target with the session's
        `tenant` (its bytes may be published, recorded or not: the caller settles
        that), else `{}`. Safe to run in several processes at once: removing is
        idempotent."""
        purged: list[dict[str, Any]] = []
        keys = self.blobs.keys(FOLDER)
        present = set(keys)
        for key in keys:
            session, suffix = posixpath.splitext(posixpath.basename(key))
            if suffix == ".claim" and self._settings_key(session) not in present:
                with contextlib.suppress(BlobNotFound):  # an ended session's claim
                    if orjson.loads(self.blobs.read(key))["expires"] <= now - GRACE_SECONDS:
                        self.blobs.delete(key)
            if suffix != ".json":
                continue
            try:
                state = orjson.loads(self.blobs.read(key))
            except BlobNotFound:  # ended meanwhile
                continue
            if state["expires"] > now - GRACE_SECONDS:
                continue
            try:
                target = orjson.loads(self.blobs.read(self._claim_key(session)))["target"]
            except BlobNotFound:
                target = {}
            self.blobs.discard_appended(self.part(session))
            self.blobs.delete(key)
            self.blobs.delete(self._claim_key(session))
            purged.append({**target, "tenant": state.get("tenant", "")} if target else {})
        return purged
