"""A model-file bucket on 127.0.0.1 for plugins' ``berg fetch`` tests (standard library only).

:func:`serve_bucket` serves the ``.npy`` files under a folder (their paths relative to it are the
object keys, as in the reference toolkit's S3 bucket) over HTTP the way S3 answers the requests
``berg fetch`` makes: ``HEAD`` and ``GET`` with ``Content-Length`` and an MD5 ``ETag``, ``404`` for
unknown keys. It records every request, so a test can assert what was downloaded::

    from berg_core.testing_bucket import serve_bucket

    write_model_files(tmp_path / "bucket", 1)        # the family's fixture files
    with serve_bucket(tmp_path / "bucket") as bucket:
        paths = berg.fetch(model_id, subject=1, base_url=bucket.url, show_progress=False)
        assert bucket.downloaded() == sorted(spec.path.format(subject=1) for spec in card.files)

:func:`assert_fetches_exactly` makes the checks every family's fetch test makes.

(``tests/test_fetch.py`` tests the client itself against a server that also misbehaves.)
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

__all__ = ["Bucket", "assert_fetches_exactly", "serve_bucket"]


@dataclass
class Bucket:
    """What :func:`serve_bucket` serves and what it was asked.

    Attributes
    ----------
    url : str
        The base URL to give ``berg fetch`` (``http://127.0.0.1:<port>/``).
    objects : dict of str to bytes
        Object key (``/``-separated path under the bucket) -> content.
    requests : list of (str, str)
        ``(method, key)`` of every request, in order.
    """

    url: str
    objects: dict[str, bytes]
    requests: list[tuple[str, str]] = field(default_factory=list)

    def downloaded(self, since: int = 0) -> list[str]:
        """The keys fetched with ``GET`` (from request number *since* on), sorted, once each."""
        return sorted({key for method, key in self.requests[since:] if method == "GET"})


class _Handler(BaseHTTPRequestHandler):
    """Answers ``HEAD``/``GET`` for the objects of :attr:`bucket`, as S3 does."""

    protocol_version = "HTTP/1.1"
    bucket: ClassVar[Bucket]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        key = unquote(urlsplit(self.path).path).lstrip("/")
        self.bucket.requests.append(("HEAD" if head else "GET", key))
        data = self.bucket.objects.get(key)
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


@contextmanager
def serve_bucket(source: str | Path, pattern: str = "*.npy") -> Iterator[Bucket]:
    """Serve the files under *source* matching *pattern* on 127.0.0.1 (an ephemeral port).

    Parameters
    ----------
    source : str or Path
        The folder whose files are the bucket's objects (keys: their paths relative to it).
    pattern : str
        Which files (a :meth:`pathlib.Path.rglob` pattern).

    Yields
    ------
    Bucket
        The server's URL, objects and request log; the server stops when the block ends.
    """
    root = Path(source)
    objects = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob(pattern)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    bucket = Bucket(url=f"http://127.0.0.1:{server.server_address[1]}/", objects=objects)
    server.RequestHandlerClass = type("Handler", (_Handler,), {"bucket": bucket})
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield bucket
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def assert_fetches_exactly(
    berg: Any, model_id: str, subject: Any, bucket: Bucket, keys: Iterable[str]
) -> list[Path]:
    """``berg.fetch`` of *model_id*'s *subject* from *bucket* reads exactly *keys*, once.

    Checks that the fetch downloads the objects *keys* and no other, returns their local paths
    (the keys under ``berg.berg_dir``), leaves no other ``.npy`` file there, writes every
    object's bytes unchanged, and that a second fetch returns the same paths and downloads
    nothing (the files are present and complete).

    Parameters
    ----------
    berg : BERG
        Sees the model's plugin; its ``berg_dir`` holds no ``.npy`` file yet.
    model_id : str
    subject : int or str
    bucket : Bucket
        The running :func:`serve_bucket`.
    keys : iterable of str
        The object keys the fetch must read (the reference's, written out by the test).

    Returns
    -------
    list of Path
        What the first fetch returned.
    """
    wanted = sorted(keys)
    root = Path(berg.berg_dir)
    paths = berg.fetch(model_id, subject=subject, base_url=bucket.url, show_progress=False)
    assert bucket.downloaded() == wanted, (bucket.downloaded(), wanted)
    assert sorted(Path(p).relative_to(root).as_posix() for p in paths) == wanted
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.npy")) == wanted
    for key in wanted:
        assert (root / key).read_bytes() == bucket.objects[key], key
    count = len(bucket.requests)
    again = berg.fetch(model_id, subject=subject, base_url=bucket.url, show_progress=False)
    assert sorted(again) == sorted(paths)
    assert bucket.downloaded(since=count) == []  # present and complete: nothing re-read
    return paths
