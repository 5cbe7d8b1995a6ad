"""``berg fetch`` / :mod:`berg_core.fetch` against a real HTTP server on 127.0.0.1.

The server (:class:`Bucket` + :class:`BucketHandler`, a ``ThreadingHTTPServer`` on an ephemeral
port) serves an in-memory bucket the way S3 does: ``ETag`` = quoted MD5 of the object (or a
multipart-style ETag), ``Range`` / ``If-Range`` support with ``206`` + ``Content-Range``, ``HEAD``,
and ``404`` for unknown keys. Each object can be told to misbehave: answer 503 a few times, close
the connection after K bytes, or hold the transfer mid-file until the test releases it. The server
records every request, so the tests can assert what the client actually sent.
"""

from __future__ import annotations

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

from berg_core import BERG, EncodingModel, LoadRequest, ModelCard, hookimpl, registry
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
    """Objects served by the test server, how they misbehave, and the requests received."""

    prefix: str = ""
    objects: dict[str, bytes] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    fail: dict[str, list[int]] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)
    gates: dict[str, Gate] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, key: str, data: bytes, etag: str | None = None) -> None:
        self.objects[key] = data
        self.etags[key] = etag or f'"{hashlib.md5(data).hexdigest()}"'

    def gets(self, key: str) -> list[dict[str, str]]:
        """Headers of the GET requests received for *key*."""
        return [h for method, k, h in self.requests if method == "GET" and k == key]


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
        if key not in bucket.objects:
            self._status(404, head)
            return
        if status is not None:
            self._status(status, head)
            return
        data, etag = bucket.objects[key], bucket.etags[key]
        start, code = 0, 200
        spec = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if spec and (if_range is None or if_range == etag):
            start = int(spec.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            code = 206
        body = data[start:]
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
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
    server.bucket.put(key, new)  # new ETag: If-Range fails, the server sends the whole object
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == new
    assert server.bucket.gets(key)[-1]["Range"] == "bytes=30000-"


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


def test_partial_longer_than_the_object_is_discarded(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = METADATA.format(subject=1)
    part = tmp_path / (key + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * (len(model[key]) + 10))
    state = tmp_path / (key + ".part.json")
    state.write_text(json.dumps({"etag": server.bucket.etags[key], "size": None}))
    (path,) = fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert path.read_bytes() == model[key]
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


def test_missing_key_404_names_key_and_url(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = ROOT + "/encoding_models_weights/weights_subject-09.npy"
    with pytest.raises(ModelLoadError, match="HTTP 404") as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert repr(key) in str(info.value)
    assert server.base_url + key in str(info.value)
    assert len(server.bucket.gets(key)) == 1  # not retried
    assert not (tmp_path / key).exists()


def test_forbidden_403_is_not_retried(
    tmp_path: Path, server: Server, model: dict[str, bytes]
) -> None:
    key = WEIGHTS.format(subject=1)
    server.bucket.fail[key] = [403]
    with pytest.raises(ModelLoadError, match="HTTP 403") as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, **FAST)
    assert server.base_url + key in str(info.value)
    assert len(server.bucket.gets(key)) == 1


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
    assert len(server.bucket.gets(key)) == 3
    assert time.monotonic() - start >= 0.05 + 0.1  # backed off 0.05 s, then 0.1 s


def test_retries_are_exhausted(tmp_path: Path, server: Server, model: dict[str, bytes]) -> None:
    key = WEIGHTS.format(subject=1)
    server.bucket.fail[key] = [503, 503, 503]
    with pytest.raises(ModelLoadError, match="HTTP 503") as info:
        fetch_files([key], tmp_path, server.base_url, show_progress=False, retries=2, backoff=0)
    assert "3 failed attempt(s)" in str(info.value)
    assert len(server.bucket.gets(key)) == 3
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
    assert main(["fetch", MODEL_ID, "--berg-dir", str(tmp_path)]) == 1
    assert "subject is required" in capsys.readouterr().err
    assert main(["fetch", MODEL_ID, "--subject", "7", "--berg-dir", str(tmp_path)]) == 1
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
