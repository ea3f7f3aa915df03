"""The blob store: one contract for a local folder and for object stores (a real S3 API,
served by moto), and a deployment whose servers share nothing but a bucket and a database."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from longops import Client
from longops.engine.blobs import (
    BlobNotFound,
    Blobs,
    FsspecBlobs,
    LocalBlobs,
    OffsetMismatch,
    digest,
    open_blobs,
)
from longops.engine.uploads import GRACE_SECONDS, UploadSessions
from longops.types import GenerateVideosConfig
from tests.support.servers import Process, free_port, subprocess_env, wait_healthy

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "longops-test"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on a free port, with one bucket, and credentials for it in the env."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in AWS_ENV.items():
            env.setenv(name, value)
        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir(BUCKET)
        yield endpoint
    server.stop()


@pytest.fixture(params=["local", "s3", "memory"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Blobs:
    prefix = uuid.uuid4().hex
    if request.param == "local":
        return open_blobs(str(tmp_path / "blobs"))
    if request.param == "memory":
        return open_blobs(f"memory://longops-{prefix}")
    endpoint = request.getfixturevalue("s3_endpoint")
    return open_blobs(f"s3://{BUCKET}/{prefix}?endpoint_url={endpoint}")


def test_open_blobs_picks_the_store(tmp_path: Path, s3_endpoint: str) -> None:
    assert isinstance(open_blobs(str(tmp_path)), LocalBlobs)
    local = open_blobs(f"file://{tmp_path}/b")
    assert isinstance(local, LocalBlobs) and local.root == tmp_path / "b"
    remote = open_blobs(f"s3://{BUCKET}/deep/prefix?endpoint_url={s3_endpoint}&anon=false")
    assert isinstance(remote, FsspecBlobs) and remote.root == f"{BUCKET}/deep/prefix"
    with pytest.raises(ValueError, match="file URL"):
        open_blobs("file://elsewhere/b")
    with pytest.raises(ValueError, match="not known"):
        open_blobs("nosuchprotocol://b")


def test_writer_publishes_only_a_complete_blob(blobs: Blobs) -> None:
    with blobs.writer("videos/op/sample_0.mp4") as f:
        f.write(b"first ")
        with pytest.raises(BlobNotFound):  # not visible while being written
            blobs.read("videos/op/sample_0.mp4")
        f.write(b"version")
    assert blobs.read("videos/op/sample_0.mp4") == b"first version"

    with pytest.raises(RuntimeError), blobs.writer("videos/op/sample_0.mp4") as f:
        f.write(b"half of a second")
        raise RuntimeError("encoder crashed")
    assert blobs.read("videos/op/sample_0.mp4") == b"first version"

    with pytest.raises(RuntimeError), blobs.writer("videos/op/sample_1.mp4") as f:
        f.write(b"half")
        raise RuntimeError("encoder crashed")
    with pytest.raises(BlobNotFound):
        blobs.read("videos/op/sample_1.mp4")


def test_read_open_digest_and_delete(blobs: Blobs) -> None:
    data = os.urandom(3 << 20)  # several read chunks
    with blobs.writer("files/big") as f:
        f.write(data)
    blobs.write_bytes("uploads/session.json", b'{"total": 3}')

    assert blobs.read("uploads/session.json") == b'{"total": 3}'
    with blobs.open("files/big") as f:
        assert f.read(10) == data[:10]
        assert f.read() == data[10:]
    with blobs.open("files/big") as f:  # ranged downloads seek
        f.seek(2 << 20)
        assert f.read(5) == data[2 << 20 : (2 << 20) + 5]
    assert digest(blobs, "files/big") == (len(data), hashlib.sha256(data).hexdigest())

    blobs.delete("files/big")
    blobs.delete("files/big")  # deleting what is gone is fine
    for missing in ("files/big", "never/written"):
        with pytest.raises(BlobNotFound):
            blobs.read(missing)
        with pytest.raises(BlobNotFound):
            blobs.open(missing)


def test_append_checks_offsets_and_publish_concatenates(blobs: Blobs) -> None:
    chunks = [os.urandom(1 << 20), os.urandom(700_000), b"tail"]
    key = "uploads/s.part"
    assert blobs.current_size(key) == 0
    offset = 0
    for chunk in chunks:
        with pytest.raises(OffsetMismatch) as wrong:
            blobs.append(key, chunk, offset + 1)
        assert wrong.value.size == offset
        offset = blobs.append(key, chunk, offset)
        assert blobs.current_size(key) == offset
    with pytest.raises(OffsetMismatch):  # a chunk sent again after it landed
        blobs.append(key, chunks[-1], offset - len(chunks[-1]))
    assert blobs.append(key, b"", offset) == offset  # an empty final chunk

    blobs.publish_appended(key, "files/f")
    assert blobs.read("files/f") == b"".join(chunks)
    assert blobs.current_size(key) == 0  # the growing blob is gone

    blobs.publish_appended("uploads/empty.part", "files/empty")
    assert blobs.read("files/empty") == b""


def test_appends_at_one_offset_land_once(blobs: Blobs) -> None:
    """Appends racing at one offset: one lands, each other one raises `OffsetMismatch`
    (both used to pass the size check, and the blob held the data twice, or on an
    object store the last part written replaced the first)."""
    chunks = [os.urandom(1 << 20) for _ in range(6)]
    barrier = threading.Barrier(len(chunks))
    outcomes: list[int | OffsetMismatch] = []

    def append(chunk: bytes) -> None:
        barrier.wait()
        try:
            outcomes.append(blobs.append("uploads/race.part", chunk, 0))
        except OffsetMismatch as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=append, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(o for o in outcomes if isinstance(o, int)) == [1 << 20]
    assert sum(isinstance(o, OffsetMismatch) for o in outcomes) == len(chunks) - 1
    blobs.publish_appended("uploads/race.part", "files/race")
    assert blobs.read("files/race") in chunks


def test_write_new_is_won_once(blobs: Blobs) -> None:
    assert blobs.write_new("uploads/s.claim", b"first") is True
    assert blobs.write_new("uploads/s.claim", b"second") is False
    assert blobs.read("uploads/s.claim") == b"first"


def test_keys_lists_a_folder_and_discard_drops_appended_bytes(blobs: Blobs) -> None:
    assert blobs.keys("uploads") == []
    blobs.write_bytes("uploads/b.json", b"{}")
    blobs.write_bytes("uploads/a.json", b"{}")
    blobs.write_bytes("uploads/deeper/c.json", b"{}")
    blobs.write_bytes("other/d.json", b"{}")
    blobs.append("uploads/a.part", b"abc", 0)
    assert {"uploads/a.json", "uploads/b.json"} <= set(blobs.keys("uploads"))
    assert not {"uploads/deeper/c.json", "other/d.json"} & set(blobs.keys("uploads"))
    assert blobs.keys("uploads") == sorted(blobs.keys("uploads"))

    blobs.discard_appended("uploads/a.part")
    blobs.discard_appended("uploads/a.part")  # discarding what is gone is fine
    assert blobs.current_size("uploads/a.part") == 0
    assert blobs.append("uploads/a.part", b"new", 0) == 3  # starts over from nothing
    assert blobs.read("uploads/a.json") == b"{}"


def test_upload_sessions_expire_then_are_purged_with_their_bytes(blobs: Blobs) -> None:
    uploads = UploadSessions(blobs, ttl_seconds=100.0)
    live = uploads.open({"target": "file"}, now=1000.0)
    abandoned = uploads.open({"target": "file"}, now=1000.0 - 100 - GRACE_SECONDS)
    for session in (live, abandoned):
        blobs.append(uploads.part(session), b"abc", 0)
    assert uploads.settings(live, now=1099.0) == {"target": "file", "expires": 1100.0}
    assert uploads.settings(live, now=1100.0) is None  # expired, not yet purged
    assert uploads.purge_expired(now=1000.0) == [{}]  # no finalize had claimed it
    assert f"uploads/{abandoned}.json" not in blobs.keys("uploads")
    assert blobs.current_size(uploads.part(abandoned)) == 0
    assert blobs.current_size(uploads.part(live)) == 3
    assert uploads.purge_expired(now=1000.0) == []
    assert uploads.purge_expired(now=1100.0 + GRACE_SECONDS) == [{}]
    assert blobs.keys("uploads") == []


def test_a_claim_outlives_its_session_until_the_session_would_have_expired(
    blobs: Blobs,
) -> None:
    """A finalize that read the settings just before the winner ended the session must
    not claim it again (it would publish an empty second file): the claim stays until
    expiry. A session claimed and never ended is returned for its bytes to be settled."""
    uploads = UploadSessions(blobs, ttl_seconds=100.0)
    ended, stuck = (uploads.open({"target": "file", "tenant": "t"}, now=0.0) for _ in "ab")
    target = {"key": "files/k", "fileId": "f"}
    assert uploads.claim(ended, 100.0, target)
    uploads.end(ended)
    assert not uploads.claim(ended, 100.0, target)
    assert uploads.claim(stuck, 100.0, target)
    assert uploads.purge_expired(now=100.0 + GRACE_SECONDS - 1) == []
    assert blobs.keys("uploads") != []
    assert uploads.purge_expired(now=100.0 + GRACE_SECONDS) == [{**target, "tenant": "t"}]
    assert blobs.keys("uploads") == []


def test_keys_cannot_escape_the_store(blobs: Blobs) -> None:
    for key in ("../outside", "a/../../outside", ""):
        with pytest.raises(ValueError, match="invalid blob key"):
            blobs.write_bytes(key, b"x")


def probe(data: bytes) -> tuple[str, int]:
    with av.open(io.BytesIO(data)) as container:
        return container.format.name, sum(1 for _ in container.decode(video=0))


def test_written_by_one_server_served_by_another(s3_endpoint: str, tmp_path: Path) -> None:
    """Two servers with their own working folders, one SQLite file and one bucket: what
    one writes (a video its workers render, an upload) the other serves."""
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    env = subprocess_env({**AWS_ENV, "AWS_ENDPOINT_URL": s3_endpoint})
    servers: list[tuple[Process, str, Path]] = []
    try:
        for name, workers in (("a", ["--workers", "2"]), ("b", ["--no-workers"])):
            port, folder = free_port(), tmp_path / name
            folder.mkdir()
            args = ["serve", "--port", str(port), "--database", database, "--blobs", url]
            process = Process(args + workers, env, tmp_path / f"{name}.log", cwd=folder).start()
            servers.append((process, f"http://127.0.0.1:{port}", folder))
            wait_healthy(servers[-1][1])
        (_, url_a, _), (_, url_b, _) = servers

        with Client(base_url=url_a) as a, Client(base_url=url_b) as b:
            operation = a.models.generate_videos(
                model="veo-2.0-generate-001",
                prompt="a lighthouse at dusk",
                config=GenerateVideosConfig(duration_seconds=5),
            )
            done = b.operations.wait(operation, timeout=60)
            assert done.error is None and done.response is not None
            video = b.files.download(file=done.response.generated_videos[0].video)
            assert probe(video) == ("mov,mp4,m4a,3gp,3g2,mj2", 120)

            payload = os.urandom(9 << 20)  # two chunks of the resumable protocol
            uploaded = b.files.upload(file=payload, config={"mime_type": "video/mp4"})
            assert uploaded.size_bytes == len(payload)
            assert a.files.download(file=uploaded.name) == payload

        # A session started on one server goes on and ends on the other.
        start = httpx.post(
            f"{url_b}/upload/v1beta/files",
            headers={"x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"},
            json={"file": {"mimeType": "text/plain"}},
        )
        session = start.headers["x-goog-upload-url"]
        first = httpx.post(
            session,
            content=b"hello ",
            headers={"x-goog-upload-command": "upload", "x-goog-upload-offset": "0"},
        )
        assert first.headers["x-goog-upload-status"] == "active"
        final = httpx.post(
            session.replace(url_b, url_a),
            content=b"world",
            headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "6"},
        )
        assert final.status_code == 200, final.text
        name = final.json()["file"]["name"]
        served = httpx.get(f"{url_b}/v1beta/{name}:download", params={"alt": "media"})
        assert served.content == b"hello world"
        assert served.headers["content-length"] == "11"

        bucket = s3fs.S3FileSystem(endpoint_url=s3_endpoint, use_listings_cache=False)
        stored = {key.removeprefix(f"{url[5:]}/") for key in bucket.find(url[5:])}
        # No upload session or part left behind: only claims, kept until their session
        # would have expired (so that no late finalize can claim it again).
        assert {key.split("/")[0] for key in stored} == {"files", "uploads", "videos"}
        claim = f"uploads/{httpx.URL(session).params['upload_id']}.claim"
        assert claim in stored
        assert all(key.endswith(".claim") for key in stored if key.startswith("uploads/"))
        bucket.rm(
            f"{url[5:]}/files", recursive=True
        )  # every upload's bytes, under keys of their own
        gone = httpx.get(f"{url_a}/v1beta/{name}:download", params={"alt": "media"})
        assert gone.status_code == 404 and "are gone" in gone.text
    finally:
        for process, _, _ in servers:
            process.close()
    for _, _, folder in servers:  # nothing was kept on either machine's disk
        assert list(folder.iterdir()) == []
