"""``BERG.fetch`` of a THINGS EEG2 model from a 127.0.0.1 HTTP server in the bucket's layout."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from berg_things_eeg2.fixture import write_model_files
from berg_things_eeg2.plugin import CARDS, FOLDERS, metadata_file, weights_file

UNTRAINED = list(FOLDERS)[2]


class _Handler(BaseHTTPRequestHandler):
    """Serves ``objects`` (key -> bytes) with Content-Length and an MD5 ETag, as S3 does."""

    protocol_version = "HTTP/1.1"
    objects: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        key = unquote(urlsplit(self.path).path).lstrip("/")
        self.requests.append(("HEAD" if head else "GET", key))
        data = self.objects.get(key)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hashlib.md5(data).hexdigest()}"')
        self.end_headers()
        if not head:
            self.wfile.write(data)


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[tuple[str, type[_Handler]]]:
    """A server with subjects 1 and 2 of the untrained model and subject 1 of AlexNet."""
    source = tmp_path / "bucket"
    write_model_files(source, UNTRAINED, 1)
    write_model_files(source, UNTRAINED, 2)
    write_model_files(source, list(FOLDERS)[1], 1, k=2)
    objects = {p.relative_to(source).as_posix(): p.read_bytes() for p in source.rglob("*.npy")}
    handler = type("Handler", (_Handler,), {"objects": objects, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_downloads_exactly_the_cards_files_and_the_model_loads(berg, bucket, images):
    base_url, handler = bucket
    paths = berg.fetch(UNTRAINED, subject=1, base_url=base_url, show_progress=False)
    folder = FOLDERS[UNTRAINED]
    wanted = [weights_file(folder).format(subject=1), metadata_file(folder).format(subject=1)]
    assert wanted == [spec.path.format(subject=1) for spec in CARDS[UNTRAINED].files]
    assert sorted(p.relative_to(berg.berg_dir).as_posix() for p in paths) == sorted(wanted)
    on_disk = sorted(p.relative_to(berg.berg_dir).as_posix() for p in berg.berg_dir.rglob("*"))
    assert [p for p in on_disk if p.endswith(".npy")] == sorted(wanted)
    for key in wanted:
        assert (berg.berg_dir / key).read_bytes() == handler.objects[key]
    assert sorted({key for method, key in handler.requests if method == "GET"}) == sorted(wanted)
    with berg.get_encoding_model(UNTRAINED, subject=1, device="cpu") as model:
        responses = berg.encode(model, images[:1], show_progress=False)
    assert responses.shape == (1, 4, 63, 140) and responses.dtype == np.float32
    assert np.isfinite(responses).all()
    count = len(handler.requests)
    again = berg.fetch(UNTRAINED, subject=1, base_url=base_url, show_progress=False)
    assert sorted(again) == sorted(paths)
    assert [m for m, _ in handler.requests[count:]].count("GET") == 0  # nothing re-downloaded


def test_fetch_of_a_subject_the_bucket_lacks_names_the_file(berg, bucket):
    from berg_core import BergError

    base_url, _ = bucket
    with pytest.raises(BergError, match=r"weights_subject-03\.npy"):
        berg.fetch(UNTRAINED, subject=3, base_url=base_url, show_progress=False, retries=0)
