"""Databases as an older longops left them, for tests of what opening one does.

Up to longops 0.11 the engine's own migrations made the file search tables (version 3
on both backends), and the first PostgreSQL version indexed chunks with the `english`
text search configuration. Opening such a database must keep its documents.
"""

from __future__ import annotations

import sqlite3

import asyncpg  # type: ignore[import-untyped]

from longops.engine.store import postgres, sqlite
from longops.engine.store.postgres import PostgresDatabase
from longops.kinds.file_search.fulltext import _SQLITE_TABLES

# Version 3 of the PostgreSQL store's migrations, as it was.
_POSTGRES_V3 = """
    CREATE TABLE search_stores (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        display_name TEXT,
        embedding_model TEXT,
        create_time DOUBLE PRECISION NOT NULL,
        update_time DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX search_stores_tenant ON search_stores (tenant, seq);
    CREATE TABLE documents (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        store_id TEXT NOT NULL,
        source_key TEXT NOT NULL,
        display_name TEXT,
        mime_type TEXT,
        size_bytes BIGINT NOT NULL,
        custom_metadata JSONB NOT NULL,
        state TEXT NOT NULL,
        create_time DOUBLE PRECISION NOT NULL,
        update_time DOUBLE PRECISION NOT NULL,
        UNIQUE (store_id, source_key)
    );
    CREATE INDEX documents_store ON documents (store_id, seq);
    CREATE TABLE chunks (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        document_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        chunk_index INTEGER NOT NULL,
        text TEXT NOT NULL,
        tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
    );
    CREATE INDEX chunks_document ON chunks (document_id);
    CREATE INDEX chunks_store ON chunks (store_id);
    CREATE INDEX chunks_tsv ON chunks USING GIN (tsv);
    """

_ROWS = [
    "INSERT INTO search_stores (id, tenant, display_name, embedding_model, create_time,"
    " update_time) VALUES ('s', 't', NULL, NULL, 0, 0)",
    "INSERT INTO documents (id, store_id, source_key, display_name, mime_type, size_bytes,"
    " custom_metadata, state, create_time, update_time)"
    " VALUES ('d', 's', 'key', 'doc.txt', 'text/plain', 5, '[]', 'ACTIVE', 0, 0)",
    # An import's leftovers in a store deleted under it, which older versions allowed.
    "INSERT INTO documents (id, store_id, source_key, display_name, mime_type, size_bytes,"
    " custom_metadata, state, create_time, update_time)"
    " VALUES ('orphan', 'gone', 'key', NULL, NULL, 5, '[]', 'ACTIVE', 0, 0)",
    "INSERT INTO chunks (document_id, store_id, chunk_index, text)"
    " VALUES ('orphan', 'gone', 0, 'left behind')",
]


async def make_old_layout(backend: str, url: str, text: str) -> None:
    """At `url`, a database at the engine's schema version 3 holding store `s` of
    tenant `t`, with one ACTIVE document `d` of one chunk, `text`, and orphans."""
    chunk = "INSERT INTO chunks (document_id, store_id, chunk_index, text) VALUES ('d', 's', 0, $1)"
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            for script in [*sqlite._MIGRATIONS[:2], _SQLITE_TABLES]:
                conn.executescript(script)
            for statement in _ROWS:
                conn.execute(statement)
            conn.execute(chunk.replace("$1", "?"), (text,))
            conn.execute("PRAGMA user_version = 3")
        finally:
            conn.close()
        return
    database = PostgresDatabase.from_url(url)
    conn = await asyncpg.connect(database.dsn)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"')
        await conn.execute(f'SET search_path = "{database.schema}"')
        for script in [*postgres._MIGRATIONS[:2], _POSTGRES_V3]:
            await conn.execute(script)
        for statement in _ROWS:
            await conn.execute(statement)
        await conn.execute(chunk, text)
        await conn.execute(
            "CREATE TABLE longops_schema (version INTEGER NOT NULL,"
            " applied_time TIMESTAMPTZ NOT NULL DEFAULT now());"
            " INSERT INTO longops_schema (version) VALUES (1), (2), (3)"
        )
    finally:
        await conn.close()
