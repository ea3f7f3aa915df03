"""File search stores, their documents and query hits, as the index returns them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class SearchStoreRecord:
    id: str
    tenant: str
    display_name: str | None
    embedding_model: str | None
    create_time: float
    update_time: float
    active_documents: int = 0
    pending_documents: int = 0
    failed_documents: int = 0
    size_bytes: int = 0
    seq: int = 0


@dataclass(slots=True)
class DocumentRecord:
    id: str
    store_id: str
    source_key: str
    """What was imported (a file name, a URI): importing it again replaces this document."""
    display_name: str | None
    mime_type: str | None
    size_bytes: int
    custom_metadata: list[dict[str, Any]]
    state: str
    create_time: float
    update_time: float
    chunks: int = 0
    seq: int = 0


@dataclass(slots=True, frozen=True)
class ChunkHit:
    document: DocumentRecord
    chunk_index: int
    text: str
    score: float
    """Relevance in 0..1, higher is better."""
