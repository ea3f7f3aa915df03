"""Full-text search, the part of the file search index each database does its own way.

SQLite indexes chunks with FTS5 (`porter unicode61`) and ranks by BM25; PostgreSQL
keeps a generated `tsvector` column under a GIN index, built with a text search
configuration made to tokenise as FTS5 does, and ranks with `ts_rank`. Each keeps its
tables' DDL here too, as steps of the `file_search` component's schema: the first
steps adopt the tables an older longops made in the engine's own schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from longops.engine.store.database import Migration, Row, Session

Filter = tuple[str, str, Any]
"""(key, operator, value): a condition on a document's custom metadata."""


class FullText(Protocol):
    @property
    def migrations(self) -> tuple[Migration, ...]: ...

    def metadata(self, value: list[dict[str, Any]]) -> Any:
        """Custom metadata as the `custom_metadata` parameter."""

    async def add_chunks(
        self, s: Session, document_id: str, store_id: str, chunks: Sequence[str]
    ) -> None: ...

    async def search(
        self,
        s: Session,
        columns: str,
        store: tuple[str, str],
        terms: Sequence[str],
        filters: Sequence[Filter],
        limit: int,
    ) -> list[tuple[Row, int, str, float]]:
        """The best `limit` chunks matching any of `terms` in the store (id, tenant) whose
        documents meet every filter: (the document's `columns`, chunk index, chunk text,
        strength ≥ 0), strongest first."""


_SQLITE_TABLES = """
    CREATE TABLE IF NOT EXISTS search_stores (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        display_name TEXT,
        embedding_model TEXT,
        create_time REAL NOT NULL,
        update_time REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS search_stores_tenant ON search_stores (tenant, seq);
    CREATE TABLE IF NOT EXISTS documents (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        store_id TEXT NOT NULL,
        source_key TEXT NOT NULL,
        display_name TEXT,
        mime_type TEXT,
        size_bytes INTEGER NOT NULL,
        custom_metadata TEXT NOT NULL,
        state TEXT NOT NULL,
        create_time REAL NOT NULL,
        update_time REAL NOT NULL,
        UNIQUE (store_id, source_key)
    );
    CREATE INDEX IF NOT EXISTS documents_store ON documents (store_id, seq);
    CREATE TABLE IF NOT EXISTS chunks (
        id INTEGER PRIMARY KEY,
        document_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        chunk_index INTEGER NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_id);
    CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
        text, content='chunks', content_rowid='id', tokenize='porter unicode61'
    );
    CREATE TRIGGER IF NOT EXISTS chunks_indexed AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER IF NOT EXISTS chunks_unindexed AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
"""

# Documents and chunks an import left for a store deleted under it (possible before
# longops 0.12 locked the store's row) are removed once.
_ORPHANS = """
    DELETE FROM chunks WHERE NOT EXISTS (SELECT 1 FROM search_stores s WHERE s.id = chunks.store_id)
        OR NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = chunks.document_id);
    DELETE FROM documents
        WHERE NOT EXISTS (SELECT 1 FROM search_stores s WHERE s.id = documents.store_id);
"""


class SQLiteText:
    """FTS5 over the chunks table (an external-content index kept by triggers)."""

    migrations = (Migration(_SQLITE_TABLES), Migration(_ORPHANS))

    def metadata(self, value: list[dict[str, Any]]) -> Any:
        # Text, not the operations' BLOB: SQLite 3.45+ reads a BLOB given to json_each
        # as its binary JSONB format.
        return orjson.dumps(value).decode()

    async def add_chunks(
        self, s: Session, document_id: str, store_id: str, chunks: Sequence[str]
    ) -> None:
        await s.executemany(
            "INSERT INTO chunks (document_id, store_id, chunk_index, text) VALUES (?, ?, ?, ?)",
            ((document_id, store_id, i, text) for i, text in enumerate(chunks)),
        )

    async def search(
        self,
        s: Session,
        columns: str,
        store: tuple[str, str],
        terms: Sequence[str],
        filters: Sequence[Filter],
        limit: int,
    ) -> list[tuple[Row, int, str, float]]:
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        where = ["chunks_fts MATCH ?", _IN_STORE, "d.state = 'ACTIVE'"]
        args: list[Any] = [match, *store]
        for key, operator, value in filters:
            field = "numericValue" if isinstance(value, int | float) else "stringValue"
            where.append(
                "EXISTS (SELECT 1 FROM json_each(d.custom_metadata) m"
                " WHERE json_extract(m.value, '$.key') = ?"
                f" AND json_extract(m.value, '$.{field}') {operator} ?)"
            )
            args += [key, value]
        found = await s.fetch(
            f"SELECT {columns}, c.chunk_index, c.text, bm25(chunks_fts)"
            " FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid"
            " JOIN documents d ON d.id = c.document_id"
            f" WHERE {' AND '.join(where)} ORDER BY bm25(chunks_fts) LIMIT ?",
            *args,
            limit,
        )
        # BM25 is negative in FTS5, lower is better.
        return [(row[:-3], row[-3], row[-2], max(-row[-1], 0.0)) for row in found]


_IN_STORE = "c.store_id = (SELECT id FROM search_stores WHERE id = ? AND tenant = ?)"
"""The chunk is in the store, which is the tenant's (computed once, not per chunk)."""

# Chunks tokenised as SQLite's FTS5 `porter unicode61` does, so a query finds the same
# chunks on both databases: stop words kept ("the", "to be"), the same Porter stemmer,
# ASCII punctuation a separator (no email, URL, host, file, number or tag tokens that
# would hide "example" in "bob@example.com" or "14" in "3.14") and, on UTF-8
# databases, unicode61's diacritic folding (its table: a Latin letter with one
# combining mark becomes the bare letter, plus a few case foldings). The dictionary,
# configuration and `longops_fold` live in the store's schema; the generated column
# holds their OIDs, and `search` names them through the same search_path.
_POSTGRES_TOKENISER = """
    CREATE TEXT SEARCH DICTIONARY longops_porter (TEMPLATE = snowball, Language = porter);
    CREATE TEXT SEARCH CONFIGURATION longops (COPY = english);
    ALTER TEXT SEARCH CONFIGURATION longops
        ALTER MAPPING FOR asciiword, word, numword, asciihword, hword, numhword,
            hword_asciipart, hword_part, hword_numpart
        WITH longops_porter;
    DO $migration$
    DECLARE
        -- Identity first (most characters are these), so translate() finds them quickly.
        keep text := ' ' || chr(10) || chr(9) || 'etaoinsrhldcumfpgwybvkxjqz'
            || '0123456789ETAOINSRHLDCUMFPGWYBVKXJQZ';
        punct text := '!"#$%&''()*+,-./:;<=>?@[]^_`{|}~' || chr(92);
        body text;
        guard text;
        latin_from text;
        latin_to text;
        marks text;
        special_from text;
        special_to text;
    BEGIN
        body := format('translate($1, %L, %L)', keep || punct, keep || repeat(' ', length(punct)));
        IF current_setting('server_encoding') = 'UTF8'
                AND current_setting('server_version_num')::int >= 130000 THEN
            SELECT string_agg(chr(c), '' ORDER BY c),
                   string_agg(lower(left(normalize(chr(c), NFD), 1)), '' ORDER BY c),
                   string_agg(DISTINCT right(normalize(chr(c), NFD), 1), '')
              INTO latin_from, latin_to, marks
              FROM (SELECT generate_series(192, 591) UNION ALL SELECT generate_series(7680, 7935))
                   AS s (c)
             WHERE normalize(chr(c), NFD) ~ ('^[A-Za-z][' || chr(768) || '-' || chr(879) || ']$');
            SELECT string_agg(chr(f), '' ORDER BY n), string_agg(chr(t), '' ORDER BY n)
              INTO special_from, special_to
              FROM unnest(
                    ARRAY[181, 383, 962, 976, 977, 981, 982, 1008, 1009, 1013, 7835, 8126, 8491],
                    ARRAY[956, 115, 963, 946, 952, 966, 960, 954, 961, 949, 115, 953, 97]
                   ) WITH ORDINALITY AS u (f, t, n);
            -- Text without any of those characters (most of it) takes the short translate.
            guard := '[' || chr(181) || '-' || chr(591) || chr(768) || '-' || chr(817)
                || chr(962) || '-' || chr(1013) || chr(7680) || '-' || chr(8126)
                || chr(8491) || ']';
            body := format(
                'CASE WHEN $1 ~ %L THEN translate($1, %L, %L) ELSE %s END',
                guard,
                keep || punct || latin_from || special_from || marks,
                keep || repeat(' ', length(punct)) || latin_to || special_to,
                body
            );
        END IF;
        EXECUTE format(
            'CREATE FUNCTION longops_fold(text) RETURNS text'
            ' LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS %L',
            'SELECT ' || body
        );
    END
    $migration$;
    """

_POSTGRES_TABLES = """
    CREATE TABLE IF NOT EXISTS search_stores (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        display_name TEXT,
        embedding_model TEXT,
        create_time DOUBLE PRECISION NOT NULL,
        update_time DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX IF NOT EXISTS search_stores_tenant ON search_stores (tenant, seq);
    CREATE TABLE IF NOT EXISTS documents (
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
    CREATE INDEX IF NOT EXISTS documents_store ON documents (store_id, seq);
    CREATE TABLE IF NOT EXISTS chunks (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        document_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        chunk_index INTEGER NOT NULL,
        text TEXT NOT NULL,
        tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('longops', longops_fold(text))) STORED
    );
    CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_id);
    CREATE INDEX IF NOT EXISTS chunks_store ON chunks (store_id);
    CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING GIN (tsv);
"""


# The first PostgreSQL stores indexed chunks with the `english` configuration.
_RETOKENISE = """
    DROP INDEX chunks_tsv;
    ALTER TABLE chunks DROP COLUMN tsv;
    ALTER TABLE chunks ADD COLUMN tsv TSVECTOR
        GENERATED ALWAYS AS (to_tsvector('longops', longops_fold(text))) STORED;
    CREATE INDEX chunks_tsv ON chunks USING GIN (tsv);
"""
_TOKENISED_OUR_WAY = """
    SELECT pg_get_expr(d.adbin, d.adrelid) LIKE '%longops_fold%'
      FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
     WHERE a.attrelid = to_regclass('chunks') AND a.attname = 'tsv'
"""


class PostgresText:
    """A generated tsvector column under a GIN index, ranked with `ts_rank`."""

    migrations = (
        # Databases an older longops made (in the engine's schema history, versions 3
        # and 4) have the tables, and perhaps the tokeniser and the column made with it.
        Migration(_POSTGRES_TOKENISER, unless="SELECT to_regprocedure('longops_fold(text)')"),
        Migration(_POSTGRES_TABLES),
        Migration(_RETOKENISE, unless=_TOKENISED_OUR_WAY),
        Migration(_ORPHANS),
    )

    def metadata(self, value: list[dict[str, Any]]) -> Any:
        return value  # the connection's codec encodes JSON

    async def add_chunks(
        self, s: Session, document_id: str, store_id: str, chunks: Sequence[str]
    ) -> None:
        await s.execute(
            "INSERT INTO chunks (document_id, store_id, chunk_index, text)"
            " SELECT ?, ?, (x.i - 1)::int, x.t FROM unnest(?::text[]) WITH ORDINALITY AS x(t, i)",
            document_id,
            store_id,
            list(chunks),
        )

    async def search(
        self,
        s: Session,
        columns: str,
        store: tuple[str, str],
        terms: Sequence[str],
        filters: Sequence[Filter],
        limit: int,
    ) -> list[tuple[Row, int, str, float]]:
        # The configuration and fold the tsv column was made with (in this schema), so a
        # term is tokenised exactly as the chunks were.
        query = " || ".join(["phraseto_tsquery('longops', longops_fold(?::text))"] * len(terms))
        where = ["c.tsv @@ q.query", _IN_STORE, "d.state = 'ACTIVE'"]
        args: list[Any] = [*terms, *store]
        for key, operator, value in filters:
            if isinstance(value, int | float):
                args += [key, float(value)]
                test = (
                    "CASE WHEN jsonb_typeof(m.value -> 'numericValue') = 'number'"
                    f" THEN (m.value -> 'numericValue')::double precision {operator} ?"
                    " ELSE FALSE END"
                )
            else:
                args += [key, str(value)]
                test = f"(m.value ->> 'stringValue') COLLATE \"C\" {operator} ?"
            where.append(
                "EXISTS (SELECT 1 FROM jsonb_array_elements(d.custom_metadata) m"
                f" WHERE m.value ->> 'key' = ? AND {test})"
            )
        # Normalisation 1 (rank / (1 + log length)) favours short chunks, as BM25 does on
        # SQLite; ts_rank has no IDF, so rare terms don't outweigh common ones here.
        found = await s.fetch(
            f"SELECT {columns}, c.chunk_index, c.text, ts_rank(c.tsv, q.query, 1) AS rank"
            f" FROM (SELECT {query} AS query) q, chunks c"
            " JOIN documents d ON d.id = c.document_id"
            f" WHERE {' AND '.join(where)} ORDER BY rank DESC, c.id LIMIT ?",
            *args,
            limit,
        )
        return [(tuple(row)[:-3], row[-3], row[-2], max(float(row[-1]), 0.0)) for row in found]


FULL_TEXT: dict[str, FullText] = {"sqlite": SQLiteText(), "postgresql": PostgresText()}
"""The full-text search of each dialect, by `Dialect.name`."""
