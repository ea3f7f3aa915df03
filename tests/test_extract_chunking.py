"""Text extraction and white-space chunking for file search stores, on real files."""

from __future__ import annotations

import io
import itertools
import json
import random
import re
import struct
import zipfile
import zlib

import pytest
from pypdf import PdfWriter

from longops.kinds.file_search.chunking import Chunk, chunk_text
from longops.kinds.file_search.extract import (
    SUPPORTED_TYPES,
    Extracted,
    ExtractionError,
    detect_type,
    extract_text,
)
from tests.support.pdf import assemble_pdf

# ----------------------------------------------------------------------------- files


def make_pdf(pages: list[str | None]) -> bytes:
    """A minimal valid PDF, one Helvetica text stream per page (None: a page with no text)."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, text in enumerate(pages):
        if text is None:  # a "scanned" page: graphics only
            ops = ["0.5 g", "72 72 468 648 re", "f"]
        else:
            ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
            for line in text.split("\n"):
                escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
                ops.append(f"({escaped}) Tj T*")
            ops.append("ET")
        stream = "\n".join(ops).encode("cp1252")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    return assemble_pdf(objects)


def encrypt(pdf: bytes, user: str, owner: str | None = None, algorithm: str | None = None) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    writer.encrypt(user, owner, algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\xff\x00\x00" * 2 + b"\x00" + b"\x00\xff\x00" * 2)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PAGES = [
    "Quarterly report (draft).\nRevenue grew in the northern region.",
    "Page two discusses zebras and giraffes.",
    "The third page mentions a café in Zürich.",
]


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return make_pdf(list(PAGES))


# ------------------------------------------------------------------------------- PDF


def test_multi_page_pdf(pdf: bytes) -> None:
    result = extract_text(pdf, "report.pdf", "application/pdf")
    assert result == Extracted("application/pdf", result.text, 3)
    paragraphs = result.text.split("\n\n")
    assert paragraphs == [
        "Quarterly report (draft).\nRevenue grew in the northern region.",
        "Page two discusses zebras and giraffes.",
        "The third page mentions a café in Zürich.",
    ]
    # The content decides, whatever the name and declared type say.
    assert detect_type(pdf, "photo.png", "image/png") == "application/pdf"
    assert extract_text(pdf, "notes.txt", "text/plain").pages == 3


def test_encrypted_pdf(pdf: bytes) -> None:
    locked = encrypt(pdf, "secret")
    assert detect_type(locked) == "application/pdf"
    with pytest.raises(ExtractionError, match="encrypted"):
        extract_text(locked, "locked.pdf")


def test_pdf_encrypted_with_empty_user_password_is_read(pdf: bytes) -> None:
    opened = extract_text(encrypt(pdf, "", "owner-only"), "owner.pdf")
    assert opened.pages == 3
    assert "zebras" in opened.text


def test_corrupt_pdf(pdf: bytes) -> None:
    rng = random.Random(7)
    garbled = pdf[:9] + bytes(rng.randrange(256) for _ in range(len(pdf) - 9))
    assert detect_type(garbled) == "application/pdf"
    with pytest.raises(ExtractionError, match="corrupt"):
        extract_text(garbled, "broken.pdf")
    with pytest.raises(ExtractionError, match="corrupt"):
        extract_text(pdf[:150], "truncated.pdf")


def test_pdf_without_text_layer() -> None:
    scanned = make_pdf([None, None])
    with pytest.raises(ExtractionError, match="no text layer"):
        extract_text(scanned, "scan.pdf")


def test_pdf_with_some_blank_pages() -> None:
    result = extract_text(make_pdf(["first words", None, "last words"]))
    assert (result.text, result.pages) == ("first words\n\nlast words", 3)


# ------------------------------------------------------------------------------ text


def test_html_visible_text_only() -> None:
    html = b"""<!-- generated -->
<!DOCTYPE html>
<html><head><title>Trip notes</title>
<style>body { color: red } .hidden { display: none }</style>
<script>var apiKey = "do-not-index"; if (a < b) { alert("x") }</script>
</head><body>
<h1>Day&nbsp;one</h1>
<p>We walked   to the
   harbour &amp; ate fish.</p>
<p>Then<br>we slept.</p>
<ul><li>tickets</li><li>maps</li></ul>
<table><tr><th>city</th><th>nights</th></tr><tr><td>Oslo</td><td>2</td></tr></table>
<noscript>enable javascript</noscript>
</body></html>"""
    result = extract_text(html, "trip.txt", "text/plain")
    assert result.mime_type == "text/html"
    assert result.pages is None
    assert result.text == (
        "Trip notes\n\nDay one\n\nWe walked to the harbour & ate fish.\n\nThen\nwe slept."
        "\n\ntickets\nmaps\n\ncity nights\nOslo 2"
    )
    for hidden in ("apiKey", "do-not-index", "color", "javascript", "generated"):
        assert hidden not in result.text


def test_html_fragment_detected_by_structure() -> None:
    assert detect_type(b"<p>one</p>\n<p>two</p>") == "text/html"
    assert extract_text(b"<p>one</p>\n<p>two</p>").text == "one\n\ntwo"
    assert detect_type(b"Intro line\n<body><div>x</div></body>") == "text/html"
    # Markdown that opens with inline HTML stays Markdown.
    readme = b'<div align="center">logo</div>\n\n# Title\n\nText.\n'
    assert detect_type(readme, "README.md") == "text/markdown"
    # A declared HTML type is not trusted for text without any markup.
    assert detect_type(b"no tags at all", "page.html", "text/html") == "text/plain"


def test_json_flattened() -> None:
    doc = {
        "title": "Handbook",
        "author": {"name": "Ada", "email": None},
        "tags": ["ops", "search"],
        "chapters": [{"n": 1, "heading": "Setup"}, {"n": 2, "heading": "Use"}],
        "draft": False,
        "empty": {},
    }
    result = extract_text(json.dumps(doc).encode(), "handbook.txt")
    assert result.mime_type == "application/json"
    assert result.text.splitlines() == [
        "title: Handbook",
        "author.name: Ada",
        "author.email: null",
        "tags[0]: ops",
        "tags[1]: search",
        "chapters[0].n: 1",
        "chapters[0].heading: Setup",
        "chapters[1].n: 2",
        "chapters[1].heading: Use",
        "draft: false",
        "empty: {}",
    ]
    assert extract_text(b'[{"a": 1}, [true]]').text == "[0].a: 1\n[1][0]: true"
    # Deep nesting needs no recursion.
    deep = ("[" * 5000 + "]" * 5000).encode()
    assert detect_type(deep) in {"application/json", "text/plain"}
    # A bare JSON scalar, or JSON-looking text that does not parse, is plain text.
    assert detect_type(b'"just a string"', "x.json") == "text/plain"
    assert detect_type(b"[1] first reference\n[2] second", "refs.json") == "text/plain"


def test_csv_rows_with_headers() -> None:
    data = b'name,age,city\r\nAda,36,London\r\nBob,,"Paris, France"\r\n\r\nCy,41,Rome\r\n'
    result = extract_text(data)
    assert result.mime_type == "text/csv"
    assert result.text.splitlines() == [
        "name: Ada, age: 36, city: London",
        "name: Bob, city: Paris, France",
        "name: Cy, age: 41, city: Rome",
    ]
    semicolons = b"product;price\nTea;3\nCoffee;4\n"
    assert extract_text(semicolons).text == "product: Tea, price: 3\nproduct: Coffee, price: 4"
    tabs = b"k\tv\nalpha\t1\nbeta\t2\n"
    assert extract_text(tabs).text == "k: alpha, v: 1\nk: beta, v: 2"
    # A name or declared type settles short tables the content alone would not.
    assert extract_text(b"a,b\n1,2\n", "t.csv").text == "a: 1, b: 2"
    assert extract_text(b"a,b\n1,2\n", None, "text/csv").text == "a: 1, b: 2"
    assert detect_type(b"a,b\n1,2\n") == "text/plain"
    # Prose with commas is not a table.
    prose = b"Hello, world.\nI am, here.\nYou are, there.\nWe are, everywhere.\n"
    assert detect_type(prose) == "text/plain"
    # ...and a CSV name does not beat JSON content.
    assert detect_type(b'{"a": 1}', "data.csv", "text/csv") == "application/json"


def test_markdown_and_plain_text() -> None:
    markdown = b"# Title\r\n\r\nSome *text* with a [link](https://example.com).\r\n"
    by_name = extract_text(markdown, "notes.md")
    assert by_name == Extracted(
        "text/markdown", "# Title\n\nSome *text* with a [link](https://example.com).\n", None
    )
    assert detect_type(b"plain words", None, "text/markdown; charset=utf-8") == "text/markdown"
    assert detect_type(b"plain words", "NOTES.MARKDOWN") == "text/markdown"
    assert detect_type(markdown) == "text/markdown"  # content heuristic
    assert detect_type(markdown, "files/abc123") == "text/markdown"
    assert detect_type(markdown, "notes.txt") == "text/plain"  # ...but a .txt is plain
    script = b"# build\n# then test\nmake && make test\n"
    assert detect_type(script, "run.sh", "application/x-sh") == "text/plain"
    assert extract_text(b"line one\rline two\r\n", "a.txt") == Extracted(
        "text/plain", "line one\nline two\n", None
    )


def test_text_named_pdf_is_text() -> None:
    result = extract_text(b"This is not really a PDF.\n", "x.pdf", "application/pdf")
    assert result == Extracted("text/plain", "This is not really a PDF.\n", None)


@pytest.mark.parametrize(
    "data",
    [
        "Grüße aus Köln, 東京\n".encode("utf-16"),
        "Grüße aus Köln, 東京\n".encode("utf-16-be").join([b"\xfe\xff", b""]),
        b"\xef\xbb\xbf" + "Grüße aus Köln, 東京\n".encode(),
        "Grüße aus Köln, 東京\n".encode("utf-16-le"),  # no BOM
    ],
    ids=["utf16-bom", "utf16be-bom", "utf8-bom", "utf16le-no-bom"],
)
def test_unicode_encodings(data: bytes) -> None:
    assert extract_text(data, "greeting.txt") == Extracted(
        "text/plain", "Grüße aus Köln, 東京\n", None
    )


# ------------------------------------------------------------------------- refusals


def test_png_is_unsupported() -> None:
    png = make_png()
    assert detect_type(png, "photo.txt", "text/plain") == "image/png"
    with pytest.raises(ExtractionError, match="PNG image"):
        extract_text(png, "photo.txt", "text/plain")


def test_other_binary_is_unsupported() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    assert detect_type(buffer.getvalue(), "report.docx") == "application/zip"
    with pytest.raises(ExtractionError, match="ZIP archive"):
        extract_text(buffer.getvalue(), "report.docx")
    with pytest.raises(ExtractionError, match="binary data"):
        extract_text(bytes(range(256)) * 4)
    with pytest.raises(ExtractionError, match="encoding"):
        extract_text("café au lait, crème brûlée\n".encode("latin-1"))


@pytest.mark.parametrize(
    "data", [b"", b"  \n\t \r\n", b"\xef\xbb\xbf", b"<html><script>x()</script></html>", b"{}"]
)
def test_empty_documents(data: bytes) -> None:
    with pytest.raises(ExtractionError, match="empty"):
        extract_text(data, "empty.txt")


def test_errors_are_value_errors() -> None:
    assert issubclass(ExtractionError, ValueError)
    assert {"application/pdf", "text/plain", "text/csv"} <= SUPPORTED_TYPES


# ------------------------------------------------------------------------- chunking


def word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def sample_text(words: int, seed: int = 3) -> str:
    rng = random.Random(seed)
    vocabulary = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "η", "theta-9", "iota"]
    parts: list[str] = []
    for i in range(words):
        word = rng.choice(vocabulary) + str(i)
        roll = rng.random()
        separator = "\n\n" if roll < 0.01 else ". " if roll < 0.08 else "\t" if roll < 0.1 else " "
        parts.append(word + separator)
    return "  \n" + "".join(parts)


def check_chunks(text: str, chunks: list[Chunk], max_tokens: int, overlap: int) -> None:
    """Limits, exact overlap, exact offsets and full coverage, in word positions."""
    spans = word_spans(text)
    starts = {start: i for i, (start, _) in enumerate(spans)}
    ends = {end: i for i, (_, end) in enumerate(spans)}
    ranges = []
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert chunk.text == text[chunk.start : chunk.end]
        first, last = starts[chunk.start], ends[chunk.end]
        assert 1 <= last - first + 1 <= max_tokens
        assert len(chunk.text.split()) == last - first + 1
        ranges.append((first, last + 1))
    assert ranges[0][0] == 0
    assert ranges[-1][1] == len(spans)
    for (_, previous_end), (next_start, next_end) in itertools.pairwise(ranges):
        assert previous_end - next_start == overlap
        assert next_end > previous_end


@pytest.mark.parametrize(
    ("max_tokens", "overlap"), [(200, 20), (50, 0), (10, 9), (7, 3), (1, 0), (2, 1), (64, 40)]
)
def test_chunk_limits_overlap_and_offsets(max_tokens: int, overlap: int) -> None:
    text = sample_text(1500)
    chunks = chunk_text(text, max_tokens, overlap)
    check_chunks(text, chunks, max_tokens, overlap)


def test_chunks_without_boundaries_are_full() -> None:
    text = " ".join(f"w{i}" for i in range(1000))
    chunks = chunk_text(text, max_tokens=100, overlap_tokens=10)
    check_chunks(text, chunks, 100, 10)
    assert [len(c.text.split()) for c in chunks] == [100] * 11
    assert chunks[1].text.split()[:10] == chunks[0].text.split()[-10:]


def test_chunks_prefer_paragraphs_then_sentences() -> None:
    words = [f"w{i}" for i in range(300)]
    paragraph = " ".join(words[:80]) + ".\n\n" + " ".join(words[80:])
    assert len(chunk_text(paragraph, 100, 0)[0].text.split()) == 80
    sentence = " ".join(words[:70]) + ". " + " ".join(words[70:])
    assert len(chunk_text(sentence, 100, 0)[0].text.split()) == 70
    both = " ".join(words[:60]) + "\n\n" + " ".join(words[60:90]) + ". " + " ".join(words[90:])
    assert len(chunk_text(both, 100, 0)[0].text.split()) == 60  # paragraph wins
    # ...but never below half of max_tokens.
    early = " ".join(words[:30]) + ".\n\n" + " ".join(words[30:])
    assert len(chunk_text(early, 100, 0)[0].text.split()) == 100
    for text in (paragraph, sentence, both, early):
        check_chunks(text, chunk_text(text, 100, 0), 100, 0)
        check_chunks(text, chunk_text(text, 100, 60), 100, 60)


def test_short_and_empty_texts() -> None:
    assert chunk_text("") == []
    assert chunk_text(" \n\t ") == []
    assert chunk_text("  one two three  ", 200, 20) == [Chunk(0, "one two three", 2, 15)]
    assert chunk_text("a b c d", 4, 3) == [Chunk(0, "a b c d", 0, 7)]
    assert [c.text for c in chunk_text("a b c d e", 4, 3)] == ["a b c d", "b c d e"]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (-5, 0), (10, 10), (10, 11), (5, -1)])
def test_bad_chunking_config(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk_text("some words here", max_tokens, overlap)


def test_five_megabytes_of_text() -> None:
    paragraph = "The quick brown fox jumps over the lazy dog. " * 20 + "\n\n"
    text = paragraph * (5_000_000 // len(paragraph) + 1)
    chunks = chunk_text(text, 200, 20)
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text.rstrip())
    assert all(len(c.text.split()) <= 200 for c in chunks[:: len(chunks) // 50])
    words = len(text.split())
    assert len(chunks) >= words // 180


def test_extracted_pdf_chunks_map_back(pdf: bytes) -> None:
    extracted = extract_text(pdf)
    chunks = chunk_text(extracted.text, 8, 2)
    check_chunks(extracted.text, chunks, 8, 2)
    assert "zebras" in " ".join(c.text for c in chunks)
