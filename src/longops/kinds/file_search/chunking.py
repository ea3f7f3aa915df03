"""Split extracted text into overlapping chunks of whitespace-separated tokens.

This is Gemini's ``white_space_config``: a token is a run of non-whitespace characters,
each chunk holds at most ``max_tokens_per_chunk`` of them and consecutive chunks share
exactly ``max_overlap_tokens``. Chunks prefer to end at a paragraph break, then at the
end of a sentence, as long as that keeps them at least half of ``max_tokens`` long.

One regex pass over the text and a window of at most ``max_tokens + 1`` word spans:
linear in the text, with memory for the window and the chunks themselves only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Chunk", "TooManyChunks", "chunk_text"]

_WORD = re.compile(r"\S+")
# A sentence-ending mark (also ellipsis and CJK/fullwidth ones), then closing quotes or
# brackets, at the end of a word.
_SENTENCE_END = re.compile("[.!?\u2026\u3002\uff01\uff1f][\"')\\]\u201d\u2019]*\\Z")


class TooManyChunks(ValueError):
    """The chunks would be over a caller's limit. A large overlap makes every chunk
    advance by a word or two, so a small text can make thousands of near-copies of
    itself: chunking stops as soon as a limit is passed, before building them all."""


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    start: int  # character offset in the extracted text
    end: int  # exclusive: text == extracted[start:end]


def _cut(text: str, window: list[tuple[int, int]], shortest: int, longest: int) -> int:
    """How many words of a full window (``longest + 1`` spans) the chunk takes.

    The longest count in ``[shortest, longest]`` that ends at a paragraph break (a blank
    line before the next word), else at a sentence end, else ``longest``.
    """
    for n in range(longest, shortest - 1, -1):
        if text.count("\n", window[n - 1][1], window[n][0]) >= 2:
            return n
    for n in range(longest, shortest - 1, -1):
        end = window[n - 1][1]
        if _SENTENCE_END.search(text, max(window[n - 1][0], end - 8), end):
            return n
    return longest


def chunk_text(
    text: str,
    max_tokens: int = 200,
    overlap_tokens: int = 20,
    *,
    max_chunks: int | None = None,
    max_chars: int | None = None,
) -> list[Chunk]:
    """Chunks of at most `max_tokens` words, consecutive ones sharing `overlap_tokens`.

    Every word of `text` is in at least one chunk; ``chunk.text == text[chunk.start:
    chunk.end]`` (from the first character of its first word to the last of its last).
    Whitespace-only text gives no chunks. Raises ValueError when ``max_tokens < 1``,
    ``overlap_tokens < 0`` or ``overlap_tokens >= max_tokens``, and `TooManyChunks`
    when there would be more than `max_chunks` chunks or more than `max_chars`
    characters in all of them together.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must not be negative, got {overlap_tokens}")
    if overlap_tokens >= max_tokens:
        raise ValueError(
            f"overlap_tokens ({overlap_tokens}) must be smaller than max_tokens ({max_tokens})"
        )
    # Shortest chunk a boundary may produce: half of max_tokens, and always more than the
    # overlap so that every chunk moves forward.
    shortest = max((max_tokens + 1) // 2, overlap_tokens + 1)
    chunks: list[Chunk] = []
    window: list[tuple[int, int]] = []  # spans of the words from the current chunk's start
    chars = 0

    def emit(count: int) -> None:
        nonlocal chars
        start, end = window[0][0], window[count - 1][1]
        chars += end - start
        if max_chunks is not None and len(chunks) >= max_chunks:
            raise TooManyChunks(
                f"the document makes more than {max_chunks} chunks; "
                "use larger chunks (maxTokensPerChunk) or split the file"
            )
        if max_chars is not None and chars > max_chars:
            raise TooManyChunks(
                f"the chunks would hold more than {max_chars} characters in all; "
                "use a smaller overlap (maxOverlapTokens) or split the file"
            )
        chunks.append(Chunk(len(chunks), text[start:end], start, end))

    for match in _WORD.finditer(text):
        window.append(match.span())
        if len(window) > max_tokens:  # full, and a word follows: cut here
            count = _cut(text, window, shortest, max_tokens)
            emit(count)
            del window[: count - overlap_tokens]  # keeps the overlap and the next word
    if window:  # never only the overlap: a cut always leaves the word after it
        emit(len(window))
    return chunks
