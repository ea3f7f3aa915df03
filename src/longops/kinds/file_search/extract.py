"""Detect what a document is and pull its searchable text out.

Pure and synchronous: meant to run in a worker thread. The type is decided by the
bytes first; a file name or a declared MIME type only breaks ties between text formats
(Markdown vs. plain text, CSV vs. plain text) and never overrides what the content is.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

__all__ = [
    "SUPPORTED_TYPES",
    "Extracted",
    "ExtractionError",
    "TextTooLong",
    "detect_type",
    "extract_text",
]

PDF = "application/pdf"
PLAIN = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
JSON = "application/json"
CSV = "text/csv"
OCTET_STREAM = "application/octet-stream"

SUPPORTED_TYPES: frozenset[str] = frozenset({PDF, PLAIN, MARKDOWN, HTML, JSON, CSV})
"""The types `extract_text` can read; `detect_type` may also answer others (binary)."""

_SAMPLE = 64 * 1024  # how much of a text the heuristics look at


class ExtractionError(ValueError):
    """Unsupported, empty, encrypted or corrupt input; message is safe to show users."""


class TextTooLong(ExtractionError):
    """The document holds more text than the caller allows. Raised as soon as the text
    being built passes the limit, so a small file that expands (a CSV repeating long
    headers, deep JSON paths) never builds its whole text first."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the document has more than {limit} characters of text; split it into smaller files"
        )


class _Budget:
    """Characters of text still allowed; `take` raises `TextTooLong` past the limit."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.left = limit if limit is not None else -1

    def take(self, count: int) -> None:
        if self.limit is None:
            return
        self.left -= count
        if self.left < 0:
            raise TextTooLong(self.limit)


@dataclass(frozen=True, slots=True)
class Extracted:
    """A document's searchable text and what it was detected to be."""

    mime_type: str  # detected type, e.g. "application/pdf", "text/plain", "text/csv"
    text: str
    pages: int | None  # PDFs: page count


# --------------------------------------------------------------------------- detection

# (magic, offset, MIME type, what users are told). Only consulted for data already
# judged binary, so a text that happens to start with "BM" or "GIF8" stays text.
_MAGIC: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "PNG image"),
    (b"\xff\xd8\xff", 0, "image/jpeg", "JPEG image"),
    (b"GIF87a", 0, "image/gif", "GIF image"),
    (b"GIF89a", 0, "image/gif", "GIF image"),
    (b"WEBP", 8, "image/webp", "WebP image"),
    (b"WAVE", 8, "audio/wav", "WAV audio"),
    (b"AVI ", 8, "video/x-msvideo", "AVI video"),
    (b"II*\x00", 0, "image/tiff", "TIFF image"),
    (b"MM\x00*", 0, "image/tiff", "TIFF image"),
    (b"BM", 0, "image/bmp", "BMP image"),
    (b"\x00\x00\x01\x00", 0, "image/x-icon", "icon image"),
    (b"ftyp", 4, "video/mp4", "MP4/QuickTime media"),
    (b"\x1aE\xdf\xa3", 0, "video/webm", "Matroska/WebM media"),
    (b"OggS", 0, "audio/ogg", "Ogg media"),
    (b"ID3", 0, "audio/mpeg", "MP3 audio"),
    (b"fLaC", 0, "audio/flac", "FLAC audio"),
    (b"PK\x03\x04", 0, "application/zip", "ZIP archive (Office documents are ZIP archives)"),
    (b"PK\x05\x06", 0, "application/zip", "ZIP archive"),
    (b"\x1f\x8b", 0, "application/gzip", "gzip archive"),
    (b"BZh", 0, "application/x-bzip2", "bzip2 archive"),
    (b"\xfd7zXZ\x00", 0, "application/x-xz", "xz archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "application/x-7z-compressed", "7-Zip archive"),
    (b"Rar!\x1a\x07", 0, "application/vnd.rar", "RAR archive"),
    (b"(\xb5/\xfd", 0, "application/zstd", "Zstandard archive"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        0,
        "application/x-ole-storage",
        "legacy Microsoft Office document",
    ),
    (b"{\\rtf", 0, "application/rtf", "RTF document"),
    (b"SQLite format 3\x00", 0, "application/vnd.sqlite3", "SQLite database"),
    (b"\x7fELF", 0, "application/x-executable", "executable program"),
    (b"MZ", 0, "application/x-msdownload", "Windows executable"),
    (b"\xca\xfe\xba\xbe", 0, "application/java-vm", "Java class file"),
    (b"wOFF", 0, "font/woff", "WOFF font"),
    (b"wOF2", 0, "font/woff2", "WOFF2 font"),
    (b"%!PS", 0, "application/postscript", "PostScript document"),
)

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: same first two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_MD_TYPES = frozenset({"text/markdown", "text/x-markdown"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_JSON_TYPES = frozenset({"application/json", "text/json"})
_CSV_TYPES = frozenset(
    {
        "text/csv",
        "application/csv",
        "text/x-csv",
        "text/comma-separated-values",
        "text/tab-separated-values",
    }
)
_EXT_HINTS = {
    ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown", ".mkd": "markdown",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".json": "json",
    ".csv": "csv", ".tsv": "csv", ".tab": "csv",
    ".txt": "plain", ".text": "plain",
    ".pdf": "pdf",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Sniffed:
    mime_type: str
    text: str | None = None  # decoded text for text types
    binary_kind: str | None = None  # what users are told for unsupported binary data
    json_value: Any = None  # parsed once, reused by extraction
    delimiter: str = ","  # CSV


def _hints(name: str | None, declared: str | None) -> set[str]:
    hints: set[str] = set()
    if declared:
        mime = declared.split(";", 1)[0].strip().lower()
        if mime in _MD_TYPES:
            hints.add("markdown")
        elif mime in _HTML_TYPES:
            hints.add("html")
        elif mime in _JSON_TYPES or mime.endswith("+json"):
            hints.add("json")
        elif mime in _CSV_TYPES:
            hints.add("csv" if mime != "text/tab-separated-values" else "tsv")
        elif mime == "text/plain":
            hints.add("plain")
    if name:
        base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
        ext = os.path.splitext(base)[1]
        hint = _EXT_HINTS.get(ext)
        if hint is not None:
            hints.add("tsv" if ext in (".tsv", ".tab") else hint)
    return hints


def _decode(data: bytes) -> str | None:
    """The text `data` holds, or None when it is binary."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding)
            except UnicodeDecodeError:
                return None
            return text if _looks_textual(text) else None
    if b"\x00" in data:
        text16 = _bomless_utf16(data)
        return text16 if text16 is not None and _looks_textual(text16) else None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if _looks_textual(text) else None


def _bomless_utf16(data: bytes) -> str | None:
    """UTF-16 without a BOM: mostly Latin text has NUL high bytes, and only those."""
    head = data[:4096]
    if len(data) % 2 or len(head) < 4:
        return None
    even, odd = head[0::2], head[1::2]
    if odd.count(0) * 2 >= len(odd) and even.count(0) == 0:
        encoding = "utf-16-le"
    elif even.count(0) * 2 >= len(even) and odd.count(0) == 0:
        encoding = "utf-16-be"
    else:
        return None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")


def _looks_textual(text: str) -> bool:
    """Valid UTF text can still be binary: too many control characters (or any NUL)."""
    head = text[:8192]
    if not head:
        return True
    controls = len(_CONTROL.findall(head))
    return "\x00" not in head and controls * 20 <= len(head)


def _binary_kind(data: bytes) -> tuple[str, str]:
    for magic, offset, mime, label in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            if magic == b"ftyp" and data[:4] == b"\x00\x00\x00\x0c":
                return "image/jp2", "JPEG 2000 image"
            if offset == 8 and data[:4] != b"RIFF":
                continue
            return mime, label
    head = data[:8192]
    if b"\x00" not in head and _looks_textual(head.decode("latin-1")):
        return OCTET_STREAM, "text in an unsupported encoding (save it as UTF-8)"
    return OCTET_STREAM, "binary data"


def _is_pdf(data: bytes) -> bool:
    start = 3 if data.startswith(codecs.BOM_UTF8) else 0
    return data[start : start + 1024].lstrip(b" \t\r\n\f\x00").startswith(b"%PDF-")


_LEAD = re.compile(
    r"(?:\s+|<\?xml[^>]*>|<!--.*?-->|<!doctype\s+(?!html)[^>]*>)*", re.DOTALL | re.IGNORECASE
)
_STRONG_HTML_START = re.compile(r"<(?:!doctype\s+html|html|head|body)[\s>/]", re.IGNORECASE)
_WEAK_HTML_START = re.compile(
    r"<(?:p|div|h[1-6]|table|ul|ol|section|article|main|header|footer|nav|title|meta|link"
    r"|script|style|form|blockquote|pre|span|a|img|br|hr)[\s>/]",
    re.IGNORECASE,
)
_BODY_TAG = re.compile(r"<body[\s>]", re.IGNORECASE)
_ANY_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(?:\s[^<>]*)?/?>")


def _html_kind(head: str, hints: set[str]) -> bool:
    lead = _LEAD.match(head)
    rest = head[lead.end() if lead else 0 :]
    if _STRONG_HTML_START.match(rest) or _BODY_TAG.search(head):
        return True
    if "html" in hints:
        return _ANY_TAG.search(head) is not None
    if "markdown" in hints:  # READMEs often open with <div align="center"> or <p>
        return False
    return _WEAK_HTML_START.match(rest) is not None


def _json_value(text: str) -> Any:
    stripped = text.lstrip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict | list) else None


def _csv_sample_rows(text: str, delimiter: str) -> list[list[str]] | None:
    sample = text[:_SAMPLE]
    cut = len(sample) < len(text)
    if cut:
        sample = sample[: sample.rfind("\n") + 1]
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(sample), delimiter=delimiter):
            if any(cell.strip() for cell in row):
                rows.append(row)
            if len(rows) > 20:
                break
    except csv.Error:
        return None
    if cut and len(rows) <= 20 and rows:
        rows.pop()  # may have been cut mid-row
    return rows[:20]


def _consistent_delimiter(text: str, candidates: str, min_rows: int, strict: bool) -> str | None:
    best: tuple[int, str] | None = None
    for delimiter in candidates:
        rows = _csv_sample_rows(text, delimiter)
        if not rows or len(rows) < min_rows:
            continue
        width = len(rows[0])
        if width < 2 or any(len(row) != width for row in rows):
            continue
        if strict:
            header = [cell.strip() for cell in rows[0]]
            if (
                not all(header)
                or len(set(header)) != width
                or max(map(len, header)) > 64
                or any(cell.endswith((".", "!", "?", ":")) for cell in header)  # prose
            ):
                continue
        if best is None or width > best[0]:
            best = (width, delimiter)
    return best[1] if best else None


def _csv_delimiter(text: str, hints: set[str]) -> str | None:
    """The delimiter when `text` is CSV, or None."""
    hinted = bool(hints & {"csv", "tsv"})
    if hinted:
        found = _consistent_delimiter(text, ",\t;|", min_rows=1, strict=False)
        if found:
            return found
        try:
            sample = text[:8192]  # the sniffer is slow on long samples
            return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
        except csv.Error:
            return "\t" if "tsv" in hints else ","
    return _consistent_delimiter(text, ",\t;", min_rows=3, strict=True)


_MD_HEADING = re.compile(r"^#{1,6}[ \t]+\S", re.MULTILINE)
_MD_SIGNALS = (
    re.compile(r"^[ \t]*(?:```|~~~)", re.MULTILINE),
    re.compile(r"\[[^\]\n]+\]\([^)\s]+\)"),
    re.compile(r"^[ \t]*(?:[-*+]|\d+\.)[ \t]+\S", re.MULTILINE),
    re.compile(r"(\*\*|__)[^*_\n]+\1"),
)


def _looks_markdown(head: str) -> bool:
    """A heading plus another heading or any other Markdown construct."""
    headings = _MD_HEADING.findall(head)
    return bool(headings) and (len(headings) > 1 or any(s.search(head) for s in _MD_SIGNALS))


def _untyped(name: str | None, declared: str | None) -> bool:
    """Neither a file extension nor a specific declared type: content heuristics decide.

    (A ``.py`` or ``.sh`` file full of ``#`` comments is not Markdown.)
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    generic = {"", "application/octet-stream", "binary/octet-stream"}
    return "." not in base.lstrip(".") and (declared or "").split(";")[0].strip().lower() in generic


def _sniff(data: bytes, name: str | None, declared: str | None) -> _Sniffed:
    if not data:
        return _Sniffed(OCTET_STREAM)
    if _is_pdf(data):
        return _Sniffed(PDF)
    text = _decode(data)
    if text is None:
        if b"%PDF-" in data[:1024]:  # junk before the header, as Acrobat tolerates
            return _Sniffed(PDF)
        mime, label = _binary_kind(data)
        return _Sniffed(mime, binary_kind=label)
    text = text.removeprefix("\ufeff")
    hints = _hints(name, declared)
    head = text[:_SAMPLE]
    value = _json_value(text)
    if value is not None:
        return _Sniffed(JSON, text, json_value=value)
    if _html_kind(head, hints):
        return _Sniffed(HTML, text)
    if hints & {"csv", "tsv"}:
        return _Sniffed(CSV, text, delimiter=_csv_delimiter(text, hints) or ",")
    if "markdown" in hints:
        return _Sniffed(MARKDOWN, text)
    delimiter = _csv_delimiter(text, hints)
    if delimiter is not None:
        return _Sniffed(CSV, text, delimiter=delimiter)
    if _untyped(name, declared) and _looks_markdown(head):
        return _Sniffed(MARKDOWN, text)
    return _Sniffed(PLAIN, text)


def detect_type(data: bytes, name: str | None = None, declared: str | None = None) -> str:
    """The MIME type of `data`, judged by its content; `name`/`declared` only break ties.

    Never raises: binary data gets its own type (``image/png``, ``application/zip``,
    ``application/octet-stream``...), which `extract_text` then refuses. Empty input is
    ``application/octet-stream``.
    """
    return _sniff(data, name, declared).mime_type


# -------------------------------------------------------------------------- extraction


def _normalise_newlines(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def extract_text(
    data: bytes,
    name: str | None = None,
    declared: str | None = None,
    max_chars: int | None = None,
) -> Extracted:
    """The searchable text of a document; raises `ExtractionError` when there is none,
    and `TextTooLong` when it would be over `max_chars` characters."""
    if not data:
        raise ExtractionError("the file is empty")
    sniffed = _sniff(data, name, declared)
    budget = _Budget(max_chars)
    if sniffed.mime_type == PDF:
        text, pages = _pdf_text(data, budget)
        return Extracted(PDF, text, pages)
    if sniffed.text is None:
        raise ExtractionError(
            f"unsupported file type: {sniffed.binary_kind or 'binary data'}; "
            "only PDF and text documents (plain text, Markdown, HTML, JSON, CSV) can be indexed"
        )
    text = _normalise_newlines(sniffed.text)
    if sniffed.mime_type == JSON:
        text = _flatten_json(sniffed.json_value, budget)
    elif sniffed.mime_type == HTML:
        text = _html_text(text)  # never longer than the HTML
    elif sniffed.mime_type == CSV:
        text = _csv_text(text, sniffed.delimiter, budget)
    if sniffed.mime_type != JSON and sniffed.mime_type != CSV:
        budget.take(len(text))
    if not text.strip():
        raise ExtractionError("the document is empty: it has no text to index")
    return Extracted(sniffed.mime_type, text, None)


# PDF


def _pdf_text(data: bytes, budget: _Budget) -> tuple[str, int]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    corrupt = "the PDF is corrupt or unreadable"
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                decrypted = reader.decrypt("")
            except (DependencyError, NotImplementedError) as exc:
                raise ExtractionError(
                    "the PDF is encrypted with an unsupported method; remove the protection "
                    "and upload it again"
                ) from exc
            if not decrypted:
                raise ExtractionError(
                    "the PDF is encrypted (password protected); remove the password and "
                    "upload it again"
                )
        pages = len(reader.pages)
        if pages == 0:
            raise ExtractionError(f"{corrupt}: it has no pages")
        texts: list[str] = []
        for page in reader.pages:
            page_text = _normalise_newlines(page.extract_text()).replace("\x00", "").strip()
            if page_text:
                budget.take(len(page_text) + 2)
                texts.append(page_text)
    except ExtractionError:
        raise
    except FileNotDecryptedError as exc:
        raise ExtractionError(
            "the PDF is encrypted (password protected); remove the password and upload it again"
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # pypdf raises all sorts on damaged files
        raise ExtractionError(corrupt) from exc
    if not texts:
        raise ExtractionError(
            "the PDF has no text layer (it looks scanned or image-only); "
            "run OCR on it and upload it again"
        )
    return "\n\n".join(texts), pages


# HTML

_SKIP_TAGS = frozenset({"script", "style", "template", "noscript", "svg", "math", "iframe"})
_PARAGRAPH_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "blockquote", "pre",
     "section", "article", "header", "footer", "nav", "main", "aside", "figure", "form",
     "fieldset", "address", "title", "hr", "details", "body"}
)  # fmt: skip
_LINE_TAGS = frozenset(
    {"br", "div", "li", "tr", "dt", "dd", "figcaption", "caption", "option", "summary",
     "legend", "label", "textarea", "select"}
)  # fmt: skip
_CELL_TAGS = frozenset({"td", "th"})
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
     "track", "wbr"}
)  # fmt: skip
_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(r"[ \t\f\v\r\u00a0]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


class _TextParser(HTMLParser):
    """Visible text; block elements become line or paragraph breaks, never piled up."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip: list[str] = []  # open skipped elements
        self._pre = 0
        self._pending = 0  # newlines owed before the next text: 0, 1 (line) or 2 (paragraph)

    def _break(self, tag: str) -> None:
        if tag == "br":
            self._pending = min(self._pending + 1, 2)
        elif tag in _PARAGRAPH_TAGS:
            self._pending = 2
        elif tag in _LINE_TAGS:
            self._pending = max(self._pending, 1)
        elif tag in _CELL_TAGS and not self._pending:
            self.parts.append(" ")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip:
            if tag == self._skip[-1] and tag not in _VOID_TAGS:
                self._skip.append(tag)
            return
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self._skip.append(tag)
            return
        if tag == "pre":
            self._pre += 1
        self._break(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip or tag in _SKIP_TAGS:
            return
        self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.pop()
            return
        if tag == "pre" and self._pre:
            self._pre -= 1
        if tag not in _VOID_TAGS:
            self._break(tag)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre:
            data = _WHITESPACE.sub(" ", data)
            if data == " " and self._pending:
                return
        if self._pending:
            self.parts.append("\n" * self._pending)
            self._pending = 0
        self.parts.append(data)  # in <pre>, with its line breaks


def _html_text(html: str) -> str:
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parser.parts).split("\n"))
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


# JSON


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return repr(value)  # int or float, all json.loads makes besides the above


def _members(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        prefix = f"{path}." if path else ""
        return ((f"{prefix}{key}", item) for key, item in value.items())
    return ((f"{path}[{i}]", item) for i, item in enumerate(value))


def _flatten_json(root: Any, budget: _Budget) -> str:
    """``key.sub: value`` lines, arrays as ``key[0]``; iterative, so depth costs no stack.

    Paths repeat for every leaf, so the text can be far longer than the JSON: `budget`
    is charged line by line, and containers are walked lazily (a stack of iterators, not
    of every member's path), so a long array costs no more than the lines it makes."""
    lines: list[str] = []
    stack: list[Iterator[tuple[str, Any]]] = [iter([("", root)])]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path, value = entry
        if isinstance(value, dict | list) and value:
            stack.append(_members(path, value))
        elif path:  # an empty root holds nothing to index
            line = f"{path}: {_scalar(value)}"
            budget.take(len(line) + 1)
            lines.append(line)
    return "\n".join(lines)


# CSV


def _csv_text(text: str, delimiter: str, budget: _Budget) -> str:
    """``header: cell`` pairs, a line per row; the header repeats on every row, so
    `budget` is charged row by row."""
    lines: list[str] = []
    header: list[str] | None = None
    try:
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if header is None:
                header = [cell or f"column {i + 1}" for i, cell in enumerate(cells)]
                continue
            if len(cells) > len(header):
                header.extend(f"column {i + 1}" for i in range(len(header), len(cells)))
            line = ", ".join(f"{h}: {c}" for h, c in zip(header, cells, strict=False) if c)
            budget.take(len(line) + 1)
            lines.append(line)
    except csv.Error:  # e.g. a field over csv.field_size_limit(): index it as plain text
        _Budget(budget.limit).take(len(text))  # the rows charged so far are not in it
        return text
    if header is not None and not lines:  # only a header row
        return ", ".join(header)
    return "\n".join(lines)
