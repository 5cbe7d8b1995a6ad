"""``berg fetch`` / :mod:`berg_core.fetch` against a real HTTP server on 127.0.0.1.

The server (:class:`Bucket` + :class:`BucketHandler`, a ``ThreadingHTTPServer`` on an ephemeral
port) serves an in-memory bucket the way S3 does: ``ETag`` = quoted MD5 of the object (or a
multipart-style ETag), ``Range`` / ``If-Range`` support with ``206`` + ``Content-Range``, ``HEAD``,
and ``404`` for unknown keys. Each object can be told to misbehave: answer 503 a few times, close
the connection after K bytes, or hold the transfer mid-file until the test releases it. The server
records every request, so the tests can assert what the client actually sent.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from berg_core import BERG, EncodingModel, FileSpec, LoadRequest, ModelCard, hookimpl, registry
from berg_core.cli import main
from berg_core.errors import InvalidParameterError, ModelLoadError
from berg_core.fetch import (
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    fetch_files,
    fetch_model,
    inspect_files,
    resolve_base_url,
    url_for,
)

MODEL_ID = "fmri-fetchtest-linear"
NOFILES_ID = "fmri-fetchtest-nofiles"
ROOT = "encoding_models/modality-fmri/train_dataset-fetchtest/model-linear"
WEIGHTS = ROOT + "/encoding_models_weights/weights_subject-{subject:02d}.npy"
METADATA = ROOT + "/metadata/metadata_subject-{subject:02d}.npy"
FAST = {"retries": 3, "backoff": 0.0, "timeout": 10.0}


# -- the server -------------------------------------------------------------------------------
@dataclass
class Gate:
    """Hold a transfer after *after* bytes until :attr:`release` is set."""

    after: int
    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Bucket:
    """Objects served by the test server, how they misbehave, and the requests received.

    Misbehaviours, per key: ``fail`` (statuses answered first, HEAD and GET alike),
    ``cut_after`` (send K bytes of a full GET, then drop the connection), ``gates``,
    ``close_delimited`` (GET without Content-Length: the body ends when the connection closes),
    ``head_blind`` (HEAD without Content-Length), ``no_head`` (HEAD answered 405), ``no_etag``,
    ``extra`` (bytes sent after the object, counted in Content-Length unless close-delimited),
    ``gzip`` (GET body gzip-compressed with ``Content-Encoding: gzip``, whatever was asked),
    ``headers`` (extra response headers), ``range_lie`` (how a Range request is answered:
    ``"from-zero"`` = 206 with the whole object, ``"wrong-total"`` = 206 claiming another size)
    and ``redirect`` (answer 302 to that URL).
    """

    prefix: str = ""
    objects: dict[str, bytes] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    fail: dict[str, list[int]] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)
    gates: dict[str, Gate] = field(default_factory=dict)
    close_delimited: set[str] = field(default_factory=set)
    head_blind: set[str] = field(default_factory=set)
    no_head: set[str] = field(default_factory=set)
    no_etag: set[str] = field(default_factory=set)
    extra: dict[str, bytes] = field(default_factory=dict)
    gzip: set[str] = field(default_factory=set)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    range_lie: dict[str, str] = field(default_factory=dict)
    redirect: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, key: str, data: bytes, etag: str | None = None) -> None:
        self.objects[key] = data
        self.etags[key] = etag or f'"{hashlib.md5(data).hexdigest()}"'

    def gets(self, key: str) -> list[dict[str, str]]:
        """Headers of the GET requests received for *key*."""
        return [h for method, k, h in self.requests if method == "GET" and k == key]

    def methods(self, key: str) -> list[str]:
        """The methods of all requests received for *key*, in order."""
        return [method for method, k, _ in self.requests if k == key]


class BucketHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bucket: Bucket  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        bucket = self.bucket
        path = unquote(urlsplit(self.path).path).lstrip("/")
        key = path[len(bucket.prefix) :] if path.startswith(bucket.prefix) else None
        with bucket.lock:
            bucket.requests.append(("HEAD" if head else "GET", key or path, dict(self.headers)))
            failures = bucket.fail.get(key or "")
            status = failures.pop(0) if failures else None
        if key in bucket.redirect:
            self.send_response(302)
            self.send_header("Location", bucket.redirect[key])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if key not in bucket.objects:
            self._status(404, head)
            return
        if status is None and head and key in bucket.no_head:
            status = 405
        if status is not None:
            self._status(status, head)
            return
        data, etag = bucket.objects[key], bucket.etags[key]
        start, code = 0, 200
        spec = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        content_range = None
        if spec and not head and (if_range is None or if_range == etag):
            start = int(spec.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            code = 206
            content_range = f"bytes {start}-{len(data) - 1}/{len(data)}"
            lie = bucket.range_lie.get(key)
            if lie == "from-zero":
                start, content_range = 0, f"bytes 0-{len(data) - 1}/{len(data)}"
            elif lie == "wrong-total":
                content_range = f"bytes {start}-{len(data) - 1}/{len(data) + 5}"
        body = data[start:] + (b"" if head else bucket.extra.get(key, b""))
        if key in bucket.gzip and not head:
            body = gzip.compress(body)
        close = key in bucket.close_delimited and not head
        self.send_response(code)
        if not (close or (head and key in bucket.head_blind)):
            self.send_header("Content-Length", str(len(body)))
        if key not in bucket.no_etag:
            self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if content_range is not None:
            self.send_header("Content-Range", content_range)
        if key in bucket.gzip and not head:
            self.send_header("Content-Encoding", "gzip")
        for name, value in bucket.headers.get(key, {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if head:
            return
        cut = bucket.cut_after.pop(key, None) if start == 0 else None
        gate = bucket.gates.get(key)
        if cut is not None:  # send K bytes, then drop the connection
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        if gate is not None:
            self.wfile.write(body[: gate.after])
            self.wfile.flush()
            gate.started.set()
            gate.release.wait(30)
            body = body[gate.after :]
        self.wfile.write(body)

    def _status(self, code: int, head: bool) -> None:
        body = b"" if head else f"<Error><Code>{code}</Code></Error>".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Server:
    bucket: Bucket
    base_url: str


@pytest.fixture
def server() -> Iterator[Server]:
    """A bucket server on 127.0.0.1 with an ephemeral port, stopped after the test."""
    bucket = Bucket(prefix="mirror/")
    handler = type("Handler", (BucketHandler,), {"bucket": bucket})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(bucket, f"http://127.0.0.1:{httpd.server_address[1]}/mirror/")
    finally:
        for gate in bucket.gates.values():
            gate.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BASE_URL_ENV, raising=False)


def payload(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


# -- an in-process model whose card lists files -------------------------------------------------
class FetchTestModel(EncodingModel):
    """Reads the fetched weight file (plain bytes) and answers its mean for every image."""

    def __init__(self, request: LoadRequest) -> None:
        super().__init__(request)
        path = request.berg_dir / request.card.files_for(request.subject)[0]
        if not path.is_file():
            raise ModelLoadError(f"missing {path}")
        self.value = float(np.frombuffer(path.read_bytes(), dtype=np.uint8).mean())

    def output_sizes(self) -> tuple[int, ...]:
        return (2,)

    def encode_batches(self, stimulus: Any) -> Iterator[tuple[np.ndarray, ...]]:
        yield (np.full((len(stimulus), 2), self.value, dtype=np.float32),)


class FetchTestPlugin:
    @hookimpl
    def register_models(self, register: Any) -> None:
        common = {"modality": "fmri", "training_dataset": "fetchtest", "species": "toy"}
        register(
            ModelCard(
                model_id=MODEL_ID,
                model_type="linear",
                subjects=(1, 2),
                files=(WEIGHTS, METADATA),
                **common,
            ),
            FetchTestModel,
        )
        register(ModelCard(model_id=NOFILES_ID, model_type="none", **common), FetchTestModel)


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch, server: Server) -> Iterator[dict[str, bytes]]:
    """Register the test model and put subject 1's and 2's files in the bucket."""
    monkeypatch.setenv("BERG_LOAD_PLUGINS", "")
    registry.reset({"fetchtest": FetchTestPlugin()})
    files = {}
    for subject in (1, 2):
        for number, template in enumerate((WEIGHTS, METADATA)):
            key = template.format(subject=subject)
            files[key] = payload(150_000 + 1000 * number + subject, seed=10 * subject + number)
            server.bucket.put(key, files[key])
    try:
        yield files
    finally:
        registry.reset()
        registry._registry = None


def leftovers(root: Path) -> list[str]:
    """Partial downloads and their state files anywhere under *root*."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.part*"))


# -- base URL and keys -------------------------------------------------------------------------
def test_base_url_default_env_and_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_base_url() == DEFAULT_BASE_URL
    monkeypatch.setenv(BASE_URL_ENV, "http://127.0.0.1:9/m")
    assert resolve_base_url() == "http://127.0.0.1:9/m/"
    assert resolve_base_url("http://127.0.0.1:8/x/") == "http://127.0.0.1:8/x/"
    assert url_for("a b/c.npy", "http://127.0.0.1:8/") == "http://127.0.0.1:8/a%20b/c.npy"
    with pytest.raises(InvalidParameterError, match="ftp://x"):
        resolve_base_url("ftp://x/")


@pytest.mark.parametrize("key", ["../evil.npy", "/etc/passwd", "a//b", "a/./b", "a\\b", "", "C:/x"])
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidParameterError, match=r"relative path|non-empty"):
        fetch_files([key], tmp_path, "http://127.0.0.1:9/", show_progress=False)


# -- downloads ---------------------------------------------------------------------------------
def test_full_fetch_of_a_model(
    tmp_path: Path, server: Server, model: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    berg_dir = tmp_path / "berg"
    with caplog.at_level(logging.DEBUG, logger="berg_core.fetch"):
        paths = fetch_model(
            MODEL_ID, 1, berg_dir, base_url=server.base_url, show_progress=False, **FAST
        )
    assert "retry" not in caplog.text  # the pooled connection is reused cleanly
    assert "matches the ETag" in caplog.text
    keys = [WEIGHTS.format(subject=1), METADATA.format(subject=1)]
    assert paths == [berg_dir / key for key in keys]
    for key in keys:
        assert (berg_dir / key).read_bytes() == model[key]
        assert len(server.bucket.gets(key)) == 1
    assert not (berg_dir / WEIGHTS.format(subject=2)).exists()  # only what subject 1 needs
    assert leftovers(berg_dir) == []
    # the User-Agent says who asks, and no compression is negotiated
    headers = server.bucket.gets(keys[0])[0]
    assert headers["User-Agent"].startswith("berg-core/")
    assert headers["Accept-Encoding"] == "identity"
    # a second fetch finds everything present and does not touch the network
    count = len(server.bucket.requests)
    assert fetch_model(MODEL_ID, 1, berg_dir, base_url=server.base_url, show_progress=False)
    assert len(server.bucket.requests) == count


def test_base_url_from_environment(
    tmp_path: Path, server: Server, model: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BASE_URL_ENV, server.base_url.rstrip("/"))
    key = WEIGHTS.format(subject=2)
    (path,) = fetch_files([key], tmp_path, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]


def test_progress_bar_counts_bytes(
    tmp_path: Path, server: Server, model: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    key = WEIGHTS.format(subject=1)
    fetch_files([key], tmp_path, server.base_url, show_progress=True, **FAST)
    err = capsys.readouterr().err
    assert "weights_subject-01.npy" in err
    assert "[1/1]" in err
    assert "100%" in err and "146k/146k" in err  # 150_001 bytes, in KiB


def test_cut_transfer_is_resumed_with_a_range_request(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = WEIGHTS.format(subject=1)
    server.bucket.cut_after[key] = 40_000
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]
    first, second = server.bucket.gets(key)
    assert "Range" not in first
    assert second["Range"] == "bytes=40000-"
    assert second["If-Range"] == server.bucket.etags[key]
    assert leftovers(tmp_path) == []


def test_interrupted_fetch_keeps_a_partial_and_the_next_call_resumes_it(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = WEIGHTS.format(subject=1)
    target = tmp_path / key
    server.bucket.cut_after[key] = 65_536
    with pytest.raises(ModelLoadError) as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, retries=0, backoff=0)
    message = str(info.value)
    assert key in message and server.base_url + key in message
    assert "65536 bytes are kept" in message
    # nothing under the final name; the partial is beside it
    assert not target.exists()
    part = target.with_name(target.name + ".part")
    assert part.read_bytes() == model[key][:65_536]
    # a later call (a new process would do the same) resumes from the partial
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]
    assert server.bucket.gets(key)[-1]["Range"] == "bytes=65536-"
    assert len(server.bucket.gets(key)) == 2
    assert leftovers(tmp_path) == []


def test_partial_of_a_changed_object_is_restarted(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = WEIGHTS.format(subject=1)
    server.bucket.cut_after[key] = 30_000
    with pytest.raises(ModelLoadError):
        fetch_files([key], tmp_path, server.base_url, show_progress=False, retries=0, backoff=0)
    new = payload(120_000, seed=99)
    server.bucket.put(key, new)  # new ETag: the HEAD request shows the partial is stale
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == new
    assert "Range" not in server.bucket.gets(key)[-1]


def test_partial_of_a_changed_object_is_restarted_without_head(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    """A server that refuses HEAD: If-Range fails and the server sends the whole new object."""
    key = WEIGHTS.format(subject=1)
    server.bucket.no_head.add(key)
    server.bucket.cut_after[key] = 30_000
    with pytest.raises(ModelLoadError):
        fetch_files([key], tmp_path, server.base_url, show_progress=False, retries=0, backoff=0)
    new = payload(120_000, seed=99)
    server.bucket.put(key, new)
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == new
    assert server.bucket.gets(key)[-1]["Range"] == "bytes=30000-"
    assert server.bucket.methods(key) == ["HEAD", "GET", "HEAD", "GET"]


def test_partial_without_saved_validator_is_not_trusted(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = WEIGHTS.format(subject=1)
    part = tmp_path / (key + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes of unknown origin")
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]
    (request,) = server.bucket.gets(key)
    assert "Range" not in request


@pytest.mark.parametrize("head", [True, False])
def test_partial_longer_than_the_object_is_discarded(
    tmp_path: Path, server: Server, model: dict[str, bytes], head: bool
) -> None:
    key = METADATA.format(subject=1)
    if not head:
        server.bucket.no_head.add(key)
    part = tmp_path / (key + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * (len(model[key]) + 10))
    state = tmp_path / (key + ".part.json")
    state.write_text(json.dumps({"etag": server.bucket.etags[key], "size": None}))
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]
    if head:  # the HEAD size shows the partial cannot be a prefix: no range request at all
        (request,) = server.bucket.gets(key)
        assert "Range" not in request
    else:
        first, second = server.bucket.gets(key)
        assert first["Range"] == f"bytes={len(model[key]) + 10}-"  # answered 416
        assert "Range" not in second
    assert leftovers(tmp_path) == []


def test_corrupted_payload_is_rejected(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = METADATA.format(subject=1)
    wrong = hashlib.md5(b"something else").hexdigest()
    server.bucket.etags[key] = f'"{wrong}"'
    with pytest.raises(ModelLoadError, match="does not match the server's checksum") as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert key in str(info.value) and wrong in str(info.value)
    assert not (tmp_path / key).exists()
    assert leftovers(tmp_path) == []
    # the same data is accepted when its ETag is right
    server.bucket.put(key, model[key])
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]


def test_multipart_etag_is_checked_by_size_only(
    tmp_path: Path, server: Server, model: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    key = WEIGHTS.format(subject=2)
    server.bucket.etags[key] = '"0123456789abcdef0123456789abcdef-3"'
    with caplog.at_level(logging.DEBUG, logger="berg_core.fetch"):
        (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]
    assert "not a plain MD5" in caplog.text and "verified size only" in caplog.text


def s3_multipart_etag(data: bytes, part_size: int) -> str:
    """The ETag S3 gives *data* uploaded in parts of *part_size* bytes."""
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def test_multipart_etag_with_the_default_part_size_is_verified(
    tmp_path: Path, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    key = ROOT + "/big.npy"
    data = payload((8 << 20) + 1000, seed=5)  # two parts of 8 MiB (AWS CLI default)
    server.bucket.put(key, data, etag=s3_multipart_etag(data, 8 << 20))
    with caplog.at_level(logging.DEBUG, logger="berg_core.fetch"):
        (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == data
    assert f"parts of {8 << 20} bytes" in caplog.text and "size only" not in caplog.text


def test_one_part_multipart_etag_is_a_checksum(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = METADATA.format(subject=2)
    server.bucket.etags[key] = s3_multipart_etag(b"other bytes", 8 << 20)
    with pytest.raises(ModelLoadError, match="one-part ETag") as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert server.bucket.etags[key] in str(info.value)
    assert not (tmp_path / key).exists() and leftovers(tmp_path) == []
    server.bucket.etags[key] = s3_multipart_etag(model[key], 8 << 20)
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]


def test_missing_key_404_names_key_and_url(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = ROOT + "/encoding_models_weights/weights_subject-09.npy"
    with pytest.raises(ModelLoadError, match="HTTP 404") as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert repr(key) in str(info.value)
    assert server.base_url + key in str(info.value)
    assert server.bucket.methods(key) == ["HEAD"]  # not retried, nothing downloaded
    assert not (tmp_path / key).exists()


def test_forbidden_403_is_not_retried(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = WEIGHTS.format(subject=1)
    server.bucket.fail[key] = [403]
    with pytest.raises(ModelLoadError, match="HTTP 403") as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert server.base_url + key in str(info.value)
    assert server.bucket.methods(key) == ["HEAD"]


def test_server_failing_twice_then_succeeding(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = WEIGHTS.format(subject=1)
    server.bucket.fail[key] = [503, 429]
    start = time.monotonic()
    (path,) = fetch_files(
        [key], tmp_path, server.base_url, show_progress=False, retries=2, backoff=0.05
    )
    assert path.read_bytes() == model[key]
    assert server.bucket.methods(key) == ["HEAD", "HEAD", "HEAD", "GET"]
    assert time.monotonic() - start >= 0.05 + 0.1  # backed off 0.05 s, then 0.1 s


def test_retries_are_exhausted(tmp_path: Path, server: Server, model: dict[str, bytes]) -> None:
    key = WEIGHTS.format(subject=1)
    server.bucket.fail[key] = [503, 503, 503]
    with pytest.raises(ModelLoadError, match="HTTP 503") as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, retries=2, backoff=0)
    assert "3 failed attempt(s)" in str(info.value)
    assert server.bucket.methods(key) == ["HEAD", "HEAD", "HEAD"]
    assert not (tmp_path / key).exists()


def test_offline_error_names_key_and_url(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port on 127.0.0.1 nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}/"
    key = WEIGHTS.format(subject=1)
    with pytest.raises(ModelLoadError, match="Are you offline") as info:
        fetch_files([key], tmp_path, base, show_progress=False, retries=1, backoff=0)
    assert repr(key) in str(info.value) and base + key in str(info.value)
    assert not (tmp_path / key).exists()


def test_two_processes_fetching_the_same_file(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = WEIGHTS.format(subject=1)
    target = tmp_path / key
    gate = server.bucket.gates[key] = Gate(after=50_000)
    script = (
        "import sys\n"
        "from berg_core.fetch import fetch_files\n"
        "fetch_files([sys.argv[1]], sys.argv[2], sys.argv[3], show_progress=True, retries=0)\n"
    )
    command = [sys.executable, "-c", script, key, str(tmp_path), server.base_url]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERG_")}
    with logs[0].open("w") as log0, logs[1].open("w") as log1:
        first = subprocess.Popen(command, stderr=log0, env=env)
        second = None
        try:
            assert gate.started.wait(30), "the first process never started downloading"
            # mid-transfer: the data goes to the partial, nothing is under the final name
            part = target.with_name(target.name + ".part")
            deadline = time.monotonic() + 30
            while not part.exists():
                assert time.monotonic() < deadline, "no partial file appeared"
                time.sleep(0.02)
            assert not target.exists()
            second = subprocess.Popen(command, stderr=log1, env=env)
            deadline = time.monotonic() + 30
            while "waiting for another process" not in logs[1].read_text():
                assert second.poll() is None, logs[1].read_text()
                assert time.monotonic() < deadline, "the second process never waited"
                time.sleep(0.05)
            gate.release.set()
            assert first.wait(30) == 0, logs[0].read_text()
            assert second.wait(30) == 0, logs[1].read_text()
        finally:
            gate.release.set()
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()
    assert target.read_bytes() == model[key]
    assert len(server.bucket.gets(key)) == 1  # the second found it present
    assert leftovers(tmp_path) == []


# -- hostile servers: nothing is installed unless its size and content were verified -----------
def assert_nothing_installed(root: Path, key: str) -> None:
    """Neither the file nor a partial of it is left under *root*."""
    assert not (root / key).exists()
    assert leftovers(root) == []


@pytest.mark.parametrize("cut", [None, 3000], ids=["whole", "closed-early"])
@pytest.mark.parametrize(
    ("etag", "verify_etag"),
    [(None, True), ('"0123456789abcdef0123456789abcdef-4"', True), ("md5", False)],
    ids=["no-etag", "multipart-etag", "checksums-off"],
)
def test_no_size_and_no_checksum_is_refused(
    tmp_path: Path,
    server: Server,
    model: dict[str, bytes],
    cut: int | None,
    etag: str | None,
    verify_etag: bool,
) -> None:
    """The attack of issue 11: no Content-Length anywhere, no MD5 ETag, connection closed early."""
    key = WEIGHTS.format(subject=1)
    bucket = server.bucket
    bucket.close_delimited.add(key)
    bucket.head_blind.add(key)
    if etag is None:
        bucket.no_etag.add(key)
    elif etag != "md5":
        bucket.etags[key] = etag
    if cut is not None:
        bucket.cut_after[key] = cut
    with pytest.raises(ModelLoadError, match="announced no size") as info:
        fetch_files(
            [key], tmp_path, server.base_url, show_progress=False, verify_etag=verify_etag, **FAST
        )
    message = str(info.value)
    assert server.base_url + key in message and "Content-Length" in message
    assert ("verify_etag=False" if not verify_etag else "no MD5 checksum") in message
    assert_nothing_installed(tmp_path, key)
    assert bucket.methods(key) == ["HEAD", "GET"]  # refused at once, not retried


def test_cli_refuses_an_unverifiable_download(
    tmp_path: Path, server: Server, model: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    weights = WEIGHTS.format(subject=1)
    server.bucket.close_delimited.add(weights)
    server.bucket.head_blind.add(weights)
    server.bucket.no_etag.add(weights)
    server.bucket.cut_after[weights] = 3000
    argv = ["fetch", MODEL_ID, "--subject", "1", "--berg-dir", str(tmp_path), "--quiet"]
    assert main([*argv, "--base-url", server.base_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("berg: error: refusing to download") and "Traceback" not in err
    assert_nothing_installed(tmp_path, weights)


@pytest.mark.parametrize("validator", [True, False], ids=["last-modified", "no-validator"])
def test_size_from_head_detects_an_early_close_of_a_close_delimited_body(
    tmp_path: Path, server: Server, model: dict[str, bytes], validator: bool
) -> None:
    """GET without Content-Length (the body ends when the connection closes) and no ETag: the
    HEAD size shows the transfer is short. The partial is resumed when the server gave a
    Last-Modified to guard the range request with, else deleted."""
    key = WEIGHTS.format(subject=1)
    bucket = server.bucket
    bucket.close_delimited.add(key)
    bucket.no_etag.add(key)
    modified = "Wed, 21 Oct 2015 07:28:00 GMT"
    if validator:
        bucket.headers[key] = {"Last-Modified": modified}
        bucket.etags[key] = modified  # the test server compares If-Range with this
    bucket.cut_after[key] = 3000
    with pytest.raises(ModelLoadError, match=f"closed after 3000 of {len(model[key])} bytes") as e:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, retries=0, backoff=0)
    assert not (tmp_path / key).exists()
    part = tmp_path / (key + ".part")
    if validator:
        assert "3000 bytes are kept" in str(e.value)
        assert part.read_bytes() == model[key][:3000]
    else:
        assert "kept" not in str(e.value)
        assert_nothing_installed(tmp_path, key)
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]
    last = bucket.gets(key)[-1]
    if validator:
        assert (last["Range"], last["If-Range"]) == ("bytes=3000-", modified)
    else:
        assert "Range" not in last
    assert leftovers(tmp_path) == []


def test_checksum_alone_verifies_a_body_without_size(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = WEIGHTS.format(subject=2)
    bucket = server.bucket
    bucket.close_delimited.add(key)
    bucket.head_blind.add(key)
    bucket.cut_after[key] = 5000  # the connection closes early: looks like a complete body
    with pytest.raises(ModelLoadError, match="does not match the server's checksum"):
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert_nothing_installed(tmp_path, key)
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]  # the whole body matches its MD5


@pytest.mark.parametrize(
    ("setup", "header"),
    [
        ({"gzip": True}, "Content-Encoding: gzip"),
        ({"headers": {"Content-Encoding": "br"}}, "Content-Encoding: br"),
        ({"headers": {"Transfer-Encoding": "gzip, chunked"}}, "Transfer-Encoding: gzip, chunked"),
    ],
    ids=["gzip-body", "br-label", "gzip-transfer"],
)
def test_encoded_bodies_are_refused(
    tmp_path: Path, server: Server, model: dict[str, bytes], setup: dict[str, Any], header: str
) -> None:
    key = METADATA.format(subject=1)
    if setup.get("gzip"):
        server.bucket.gzip.add(key)
    server.bucket.headers[key] = setup.get("headers", {})
    with pytest.raises(ModelLoadError, match="refusing") as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    message = str(info.value)
    assert header in message and server.base_url + key in message
    assert "Accept-Encoding: identity" in message
    assert all(h["Accept-Encoding"] == "identity" for _, k, h in server.bucket.requests if k == key)
    assert_nothing_installed(tmp_path, key)


def test_corrupt_partial_on_disk_is_caught_by_the_checksum(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    """A partial whose saved state matches the server but whose bytes do not: the MD5 covers the
    resumed prefix too."""
    key = METADATA.format(subject=1)
    data = model[key]
    part = tmp_path / (key + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(bytes(255 - b for b in data[:1000]))
    state = {"etag": server.bucket.etags[key], "size": len(data)}
    (tmp_path / (key + ".part.json")).write_text(json.dumps(state))
    with pytest.raises(ModelLoadError, match="does not match the server's checksum"):
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert server.bucket.gets(key)[0]["Range"] == "bytes=1000-"
    assert_nothing_installed(tmp_path, key)
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == data


@pytest.mark.parametrize("lie", ["from-zero", "wrong-total"])
def test_a_range_the_server_did_not_honour_restarts_from_zero(
    tmp_path: Path, server: Server, model: dict[str, bytes], lie: str
) -> None:
    key = WEIGHTS.format(subject=1)
    server.bucket.cut_after[key] = 40_000
    server.bucket.range_lie[key] = lie
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]
    ranges = [headers.get("Range") for headers in server.bucket.gets(key)]
    assert ranges == [None, "bytes=40000-", None]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("close_delimited", "head", "error"),
    [
        (False, True, "in its GET response but"),  # Content-Length bigger than HEAD's size
        (True, True, "sent more than the"),  # no Content-Length: the body runs past HEAD's size
        (False, False, "does not match the server's checksum"),  # no HEAD: the MD5 catches it
    ],
    ids=["length-above-head", "body-above-head", "no-head"],
)
def test_a_body_longer_than_the_object_is_refused(
    tmp_path: Path,
    server: Server,
    model: dict[str, bytes],
    close_delimited: bool,
    head: bool,
    error: str,
) -> None:
    key = WEIGHTS.format(subject=2)
    server.bucket.extra[key] = b"\0" * 70_000
    if close_delimited:
        server.bucket.close_delimited.add(key)
    if not head:
        server.bucket.no_head.add(key)
    with pytest.raises(ModelLoadError, match=error) as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert server.base_url + key in str(info.value)
    assert len(server.bucket.gets(key)) == 1  # refused, not retried
    assert_nothing_installed(tmp_path, key)


def test_a_size_larger_than_the_free_disk_space_is_refused(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = WEIGHTS.format(subject=1)
    server.bucket.close_delimited.add(key)  # the server's own Content-Length is left out
    server.bucket.head_blind.add(key)
    server.bucket.headers[key] = {"Content-Length": str(1 << 60)}  # an exbibyte, HEAD and GET
    with pytest.raises(ModelLoadError, match=r"needs 1073741824\.0 GiB more but only") as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert str((tmp_path / key).parent) in str(info.value)
    assert server.base_url + key in str(info.value)
    assert_nothing_installed(tmp_path, key)


def test_redirects_stay_on_the_same_server(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key, alias = WEIGHTS.format(subject=1), ROOT + "/alias.npy"
    server.bucket.redirect[alias] = server.base_url + key
    (path,) = fetch_files([alias], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]
    assert server.bucket.methods(alias) == ["HEAD", "GET"]
    # the same server under another name (localhost for 127.0.0.1) is another server
    elsewhere = server.base_url.replace("127.0.0.1", "localhost") + key
    server.bucket.redirect[alias] = elsewhere
    with pytest.raises(ModelLoadError, match="another server") as info:
        fetch_files([alias], tmp_path / "b", server.base_url, show_progress=False, **FAST)
    assert elsewhere in str(info.value) and server.base_url + alias in str(info.value)
    assert server.bucket.methods(key) == ["HEAD", "GET"]  # nothing was asked of "localhost"
    assert_nothing_installed(tmp_path / "b", alias)


@pytest.mark.parametrize(
    ("url", "target", "same"),
    [
        ("http://h:8000/a", "http://h:8000/b", True),
        ("http://H/a", "http://h:80/b", True),
        ("http://h/a", "https://h/b", True),  # upgrade on the default ports
        ("https://h/a", "http://h/b", False),  # downgrade
        ("http://h:8000/a", "https://h:8443/b", False),
        ("http://h:8000/a", "http://h:8001/b", False),
        ("https://h/a", "https://h.evil/b", False),
        ("https://h/a", "https://h:x/b", False),
    ],
)
def test_same_server_rule(url: str, target: str, same: bool) -> None:
    from berg_core.fetch import _same_server

    assert _same_server(url, target) is same


# -- local paths --------------------------------------------------------------------------------
def test_berg_dir_that_is_a_file(
    tmp_path: Path, server: Server, model: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    berg_dir = tmp_path / "berg"
    berg_dir.write_bytes(b"not a folder")
    key = WEIGHTS.format(subject=1)
    with pytest.raises(InvalidParameterError, match="is not a directory") as info:
        fetch_files([key], berg_dir, server.base_url, show_progress=False, **FAST)
    assert repr(str(berg_dir)) in str(info.value)
    argv = ["fetch", MODEL_ID, "--subject", "1", "--berg-dir", str(berg_dir), "--quiet"]
    assert main([*argv, "--base-url", server.base_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("berg: error: ") and str(berg_dir) in err and "Traceback" not in err
    assert server.bucket.requests == []
    assert berg_dir.read_bytes() == b"not a folder"


@pytest.mark.parametrize("blocker", ["target", "folder"])
def test_a_directory_or_file_in_the_way_is_refused(
    tmp_path: Path, server: Server, model: dict[str, bytes], blocker: str
) -> None:
    key = WEIGHTS.format(subject=1)
    if blocker == "target":  # a directory where the file belongs
        in_the_way = tmp_path / key
        in_the_way.mkdir(parents=True)
        expected = "is a directory"
    else:  # a file where one of its folders belongs
        in_the_way = tmp_path / ROOT
        in_the_way.parent.mkdir(parents=True)
        in_the_way.write_bytes(b"")
        expected = "is a file, where a folder belongs"
    with pytest.raises(ModelLoadError, match=expected) as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert str(in_the_way) in str(info.value)
    assert server.bucket.requests == []  # refused before any download


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_unwritable_berg_dir(server: Server, model: dict[str, bytes]) -> None:
    """sysfs refuses new folders even to root."""
    berg_dir = Path("/sys/berg-fetch-test")
    key = WEIGHTS.format(subject=1)
    with pytest.raises(ModelLoadError, match="cannot save") as info:
        fetch_files([key], berg_dir, server.base_url, show_progress=False, **FAST)
    assert repr(str(berg_dir)) in str(info.value)
    assert not berg_dir.exists()


def test_kill_9_mid_download_leaves_no_final_file_and_the_rerun_resumes(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = WEIGHTS.format(subject=1)
    target = tmp_path / key
    part = target.with_name(target.name + ".part")
    gate = server.bucket.gates[key] = Gate(after=65_536)
    script = (  # small reads, so that the partial grows while the server holds the transfer
        "import sys\n"
        "from berg_core import fetch\n"
        "fetch._CHUNK = 4096\n"
        "fetch.fetch_files([sys.argv[1]], sys.argv[2], sys.argv[3], show_progress=False)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERG_")}
    process = subprocess.Popen(
        [sys.executable, "-c", script, key, str(tmp_path), server.base_url], env=env
    )
    try:
        assert gate.started.wait(30), "the process never started downloading"
        deadline = time.monotonic() + 30
        # the writer's buffer may hold the last few KiB: wait for most of what was sent
        while not (part.is_file() and part.stat().st_size >= 32_768):
            assert time.monotonic() < deadline, "the partial never grew"
            time.sleep(0.02)
        process.kill()  # SIGKILL: no handler, no cleanup
        assert process.wait(30) == -9
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        gate.release.set()
    assert not target.exists()
    kept = part.read_bytes()
    assert 32_768 <= len(kept) <= 65_536 and kept == model[key][: len(kept)]
    del server.bucket.gates[key]
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]
    assert server.bucket.gets(key)[-1]["Range"] == f"bytes={len(kept)}-"
    assert leftovers(tmp_path) == []


# -- status, CLI and API -----------------------------------------------------------------------
def test_inspect_files_reports_presence_partials_and_remote_sizes(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    present, partial, missing = (
        WEIGHTS.format(subject=1),
        METADATA.format(subject=1),
        ROOT + "/absent.npy",
    )
    (tmp_path / present).parent.mkdir(parents=True)
    (tmp_path / present).write_bytes(model[present])
    (tmp_path / partial).parent.mkdir(parents=True)
    (tmp_path / (partial + ".part")).write_bytes(b"x" * 10)
    a, b, c = inspect_files(
        [present, partial, missing], tmp_path, server.base_url, remote=True, backoff=0
    )
    assert (a.present, a.local_size, a.remote_size) == (
        True,
        len(model[present]),
        len(model[present]),
    )
    assert a.etag == server.bucket.etags[present]
    assert (b.present, b.partial_size, b.remote_size) == (False, 10, len(model[partial]))
    assert not c.present and c.remote_size is None and "HTTP 404" in (c.error or "")
    assert not any(method == "GET" for method, _, _ in server.bucket.requests)


def test_cli_list(
    tmp_path: Path,
    server: Server,
    model: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    weights, metadata = WEIGHTS.format(subject=2), METADATA.format(subject=2)
    (tmp_path / weights).parent.mkdir(parents=True)
    (tmp_path / weights).write_bytes(model[weights])
    argv = ["fetch", MODEL_ID, "--subject", "2", "--berg-dir", str(tmp_path)]
    assert main([*argv, "--base-url", server.base_url, "--list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"{MODEL_ID}, subject 2: 2 file(s)")
    assert "1 to download" in lines[0]
    assert any(line.split()[0] == "present" and line.endswith(weights) for line in lines)
    assert any(line.split()[0] == "missing" and line.endswith(metadata) for line in lines)
    assert "146.5 KiB" in out  # 150_002 bytes, from the HEAD request
    assert "147.5 KiB" in out  # 151_002 bytes
    assert server.bucket.gets(metadata) == []  # listing downloads nothing
    assert not (tmp_path / metadata).exists()


def test_cli_dry_run_downloads_nothing(
    tmp_path: Path,
    server: Server,
    model: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["fetch", MODEL_ID, "--subject", "1", "--berg-dir", str(tmp_path)]
    assert main([*argv, "--base-url", server.base_url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would download 2 of 2 file(s)" in out
    for key in (WEIGHTS.format(subject=1), METADATA.format(subject=1)):
        assert server.base_url + key in out
        assert str(tmp_path / key) in out
    assert server.bucket.requests == []
    assert not (tmp_path / "encoding_models").exists()


def test_cli_fetch_then_everything_present(
    tmp_path: Path,
    server: Server,
    model: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--berg-dir", str(tmp_path), "fetch", MODEL_ID, "--subject", "1"]
    assert main([*argv, "--base-url", server.base_url, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    for key in (WEIGHTS.format(subject=1), METADATA.format(subject=1)):
        assert (tmp_path / key).read_bytes() == model[key]
    assert main([*argv, "--base-url", server.base_url, "--dry-run"]) == 0
    assert "all 2 file(s) are present" in capsys.readouterr().out


def test_cli_errors(
    tmp_path: Path,
    server: Server,
    model: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["fetch", NOFILES_ID, "--berg-dir", str(tmp_path)]
    assert main(argv) == 0
    assert "lists no files to fetch" in capsys.readouterr().out
    assert main(["fetch", MODEL_ID, "--berg-dir", str(tmp_path)]) == 2
    assert "subject is required" in capsys.readouterr().err
    assert main(["fetch", MODEL_ID, "--subject", "7", "--berg-dir", str(tmp_path)]) == 2
    assert "not a subject" in capsys.readouterr().err
    del server.bucket.objects[METADATA.format(subject=1)]
    argv = ["fetch", MODEL_ID, "--subject", "1", "--berg-dir", str(tmp_path), "--quiet"]
    assert main([*argv, "--base-url", server.base_url]) == 1
    err = capsys.readouterr().err
    assert "HTTP 404" in err and server.base_url + METADATA.format(subject=1) in err
    # the file that exists was kept; the missing one left nothing behind
    assert (tmp_path / WEIGHTS.format(subject=1)).is_file()
    assert leftovers(tmp_path) == []


def test_get_encoding_model_download(
    tmp_path: Path, server: Server, model: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    berg = BERG(tmp_path)
    with pytest.raises(ModelLoadError, match="missing"):
        berg.get_encoding_model(MODEL_ID, subject=2)
    assert server.bucket.requests == []  # download=False never touches the network
    monkeypatch.setenv(BASE_URL_ENV, server.base_url)
    loaded = berg.get_encoding_model(MODEL_ID, subject=2, download=True)
    weights = WEIGHTS.format(subject=2)
    assert (tmp_path / weights).read_bytes() == model[weights]
    expected = np.frombuffer(model[weights], dtype=np.uint8).mean()
    responses = berg.encode(loaded, np.zeros((3, 3, 4, 4), np.uint8), show_progress=False)
    np.testing.assert_allclose(responses, np.full((3, 2), expected, np.float32))
    # BERG.fetch: subject 1, through the same core code
    paths = berg.fetch(MODEL_ID, 1, base_url=server.base_url, show_progress=False)
    assert [p.read_bytes() for p in paths] == [
        model[WEIGHTS.format(subject=1)],
        model[METADATA.format(subject=1)],
    ]
    assert berg.fetch(NOFILES_ID) == []


def test_download_of_the_toy_plugin_through_its_own_loader(
    tmp_path: Path, server: Server, toy_plugin: Any, expected: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test plugin's real files, served by the bucket and read by its real loader."""
    from berg_testplugin.layout import LINEAR_ID, SUBJECTS, write_berg_dir

    source = write_berg_dir(tmp_path / "source")
    for path in source.rglob("*"):
        if path.is_file():
            server.bucket.put(path.relative_to(source).as_posix(), path.read_bytes())
    monkeypatch.setenv(BASE_URL_ENV, server.base_url)
    berg = BERG(tmp_path / "berg")
    subject = SUBJECTS[-1]
    loaded = berg.get_encoding_model(LINEAR_ID, subject=subject, download=True)
    keys = loaded.card.files_for(subject)
    assert keys
    for key in keys:
        assert (berg.berg_dir / key).read_bytes() == (source / key).read_bytes()
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    lh, rh = berg.encode(loaded, images, show_progress=False)
    want = expected(berg.berg_dir, subject, images)
    np.testing.assert_allclose(lh, want["lh"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rh, want["rh"], rtol=1e-5, atol=1e-5)


# -- file manifests: a card's own server, declared size and SHA-256 ----------------------------
OWN = "encoding_models/modality-fmri/train_dataset-fetchtest/model-lab/weights_{subject:02d}.npy"
OWN_ID = "fmri-fetchtest-lab"


def register_manifest(monkeypatch: pytest.MonkeyPatch, spec: FileSpec) -> None:
    """Register a model whose only file is *spec* (the server's bucket serves it)."""
    card = ModelCard(
        model_id=OWN_ID,
        modality="fmri",
        training_dataset="fetchtest",
        species="toy",
        model_type="lab",
        subjects=(1,),
        files=(spec,),
    )

    class Plugin:
        @hookimpl
        def register_models(self, register: Any) -> None:
            register(card, FetchTestModel)

    monkeypatch.setenv("BERG_LOAD_PLUGINS", "")
    registry.reset({"manifest": Plugin()})


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch, server: Server) -> Iterator[tuple[str, bytes]]:
    """A lab's file on the test server: ``(key, data)``; BERG_BASE_URL names a dead mirror."""
    key = OWN.format(subject=1)
    data = payload(120_000, seed=7)
    server.bucket.put(key, data, etag='"lab-v1"')  # an opaque ETag: no MD5 to check against
    monkeypatch.setenv(BASE_URL_ENV, "http://127.0.0.1:9/dead-mirror/")
    try:
        yield key, data
    finally:
        registry.reset()
        registry._registry = None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_card_with_its_own_server_size_and_sha256(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: Server,
    lab: tuple[str, bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    key, data = lab
    spec = FileSpec(path=OWN, base_url=server.base_url, size=len(data), sha256=sha256(data))
    register_manifest(monkeypatch, spec)
    # the environment's mirror stands in for the reference bucket only: the card's server is used
    (path,) = fetch_model(OWN_ID, 1, tmp_path, show_progress=False, **FAST)
    assert path == tmp_path / key and path.read_bytes() == data
    assert len(server.bucket.gets(key)) == 1
    # a mirror named explicitly serves every file (this one lacks it: 404 naming the mirror's URL)
    mirror = server.base_url.replace("/mirror/", "/elsewhere/")
    path.unlink()
    with pytest.raises(ModelLoadError, match="elsewhere/encoding_models"):
        fetch_model(OWN_ID, 1, tmp_path, base_url=mirror, show_progress=False, **FAST)
    # berg fetch --list shows where each file comes from and that a checksum is declared
    argv = ["fetch", OWN_ID, "--subject", "1", "--berg-dir", str(tmp_path), "--list"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"from {server.base_url}" in out and "sha256" in out


def test_a_wrong_sha256_deletes_the_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server, lab: tuple[str, bytes]
) -> None:
    key, data = lab
    wrong = sha256(data + b"x")
    register_manifest(monkeypatch, FileSpec(path=OWN, base_url=server.base_url, sha256=wrong))
    with pytest.raises(ModelLoadError) as info:
        fetch_model(OWN_ID, 1, tmp_path, show_progress=False, **FAST)
    message = str(info.value)
    assert key in message and f"SHA-256 {sha256(data)}" in message and wrong in message
    assert_nothing_installed(tmp_path, key)


def test_a_wrong_size_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server, lab: tuple[str, bytes]
) -> None:
    key, data = lab
    spec = FileSpec(path=OWN, base_url=server.base_url, size=len(data) + 1, sha256=sha256(data))
    register_manifest(monkeypatch, spec)
    with pytest.raises(ModelLoadError) as info:
        fetch_model(OWN_ID, 1, tmp_path, show_progress=False, **FAST)
    message = str(info.value)
    assert key in message and f"declares {len(data) + 1} bytes" in message
    assert f"has {len(data)}" in message
    assert_nothing_installed(tmp_path, key)


@pytest.mark.parametrize("corrupt", [False, True], ids=["clean", "corrupt-partial"])
def test_a_resumed_download_is_verified_by_sha256_over_all_its_bytes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: Server,
    lab: tuple[str, bytes],
    corrupt: bool,
) -> None:
    key, data = lab
    bucket = server.bucket
    bucket.close_delimited.add(key)  # no size from the server, and no MD5: the card's checks
    bucket.head_blind.add(key)
    bucket.cut_after[key] = 50_000
    spec = FileSpec(path=OWN, base_url=server.base_url, size=len(data), sha256=sha256(data))
    register_manifest(monkeypatch, spec)
    with pytest.raises(ModelLoadError, match="50000 bytes are kept"):
        fetch_model(OWN_ID, 1, tmp_path, show_progress=False, retries=0, backoff=0)
    part = tmp_path / (key + ".part")
    assert part.read_bytes() == data[:50_000]
    if corrupt:  # a flipped byte in the kept prefix: only a hash over the prefix can see it
        raw = bytearray(part.read_bytes())
        raw[123] ^= 0xFF
        part.write_bytes(bytes(raw))
        with pytest.raises(ModelLoadError, match=f"declares {sha256(data)}"):
            fetch_model(OWN_ID, 1, tmp_path, show_progress=False, **FAST)
        assert_nothing_installed(tmp_path, key)
    else:
        (path,) = fetch_model(OWN_ID, 1, tmp_path, show_progress=False, **FAST)
        assert path.read_bytes() == data
        assert leftovers(tmp_path) == []
    assert bucket.gets(key)[1]["Range"] == "bytes=50000-"


def test_without_size_or_md5_a_declared_sha256_is_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server, lab: tuple[str, bytes]
) -> None:
    key, data = lab
    server.bucket.close_delimited.add(key)
    server.bucket.head_blind.add(key)
    server.bucket.no_etag.add(key)
    register_manifest(
        monkeypatch, FileSpec(path=OWN, base_url=server.base_url, sha256=sha256(data))
    )
    (path,) = fetch_model(OWN_ID, 1, tmp_path, show_progress=False, **FAST)
    assert path.read_bytes() == data
