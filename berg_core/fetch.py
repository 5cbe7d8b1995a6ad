"""Download the files a model needs from the public BERG bucket (or a mirror) into ``berg_dir``.

The reference weights live in the AWS Open Data bucket ``brain-encoding-response-generator``
(region us-west-2, anonymous access), under the same relative paths ("keys") as in ``berg_dir``.
Each model's card lists the keys it reads per subject (:attr:`berg_core.ModelCard.files`), so
berg fetches exactly those, on demand, with plain HTTPS ``GET`` requests::

    berg fetch fmri-nsd_fsaverage-alexnet_untrained --subject 1

or from Python :func:`fetch_model`, :func:`fetch_files`, :meth:`berg_core.BERG.fetch` and
``BERG.get_encoding_model(..., download=True)``.

Where a file comes from
-----------------------
A card's :class:`~berg_core.FileSpec` may name the file's own server (``base_url``), its size and
its SHA-256 (:func:`model_files`). The base URL is, in this order, a mirror named explicitly
(``base_url=`` / ``--base-url``, for every file), the file's own ``base_url``, ``$BERG_BASE_URL``,
the reference bucket (:func:`source_url`): the environment's mirror replaces the reference bucket
only. A declared size must equal the server's; a declared SHA-256 is computed while downloading
(resumed bytes included) and must match, and makes a server without size or MD5 acceptable.

How a file is fetched
---------------------
* Files already present under ``berg_dir`` are left alone (no network access at all).
* Before anything is downloaded, ``berg_dir`` must be a directory (or not exist yet), and no
  target path may be a directory or lie under a regular file: otherwise
  :class:`~berg_core.errors.InvalidParameterError` / :class:`~berg_core.errors.ModelLoadError`
  names the path. Local disk errors (unwritable folder, disk full) are ModelLoadErrors naming
  the path too, and a transfer whose announced size exceeds the free disk space is not started.
* Each attempt first asks ``HEAD`` for the object's size (``Content-Length``) and ``ETag``. The
  ``GET`` response must agree with it: another size is refused, another ETag means the object
  changed (retried). A server that refuses ``HEAD`` (405/501) is judged on its ``GET`` alone.
* A download is installed only if it can be verified: its size must be known (``HEAD`` or
  ``GET``) or its ETag must be a plain MD5. When neither is known, nothing is downloaded and
  :class:`~berg_core.errors.ModelLoadError` says so. A body that goes on past the announced size
  is refused; one that ends short is resumed.
* Data is written to ``<name>.part`` beside the target, with the server's validator (ETag or
  Last-Modified) in ``<name>.part.json``. An interrupted transfer, in this process or an earlier
  one (also one killed with ``kill -9``), is resumed with an HTTP ``Range`` request guarded by
  ``If-Range``, so a partial of an object that changed on the server is never completed with
  bytes of the new version. The answer must be ``206`` with exactly the ``Content-Range``
  ``bytes <offset>-<size-1>/<size>`` asked for; anything else restarts from byte 0. A partial
  without a validator is deleted, not resumed.
* When the transfer is complete, the size is checked and, when the ETag is a plain MD5 (S3
  objects uploaded in one part), the MD5 of the whole file (resumed prefix included). S3
  multipart ETags (``"<hex>-<parts>"``) are the MD5 of the parts' MD5s; the part size is not
  recorded, so the common ones (8 MiB, the AWS CLI's default, then 16 and 5 MiB ...; at most 3
  that give the right number of parts) are tried. When none reproduces the ETag, the file is
  checked by size only, which is logged (INFO). A mismatch deletes the partial and raises
  :class:`~berg_core.errors.ModelLoadError`.
* The body must be the object's bytes: berg asks for ``Accept-Encoding: identity`` and refuses a
  response with any other ``Content-Encoding`` (or a ``Transfer-Encoding`` other than
  ``chunked``).
* Redirects are followed (at most 5) only within the same server: same host and port, or from
  ``http`` to ``https`` on the default ports. A redirect elsewhere is refused, naming both URLs.
* Only a complete, verified file is renamed (atomically, :func:`os.replace`) to its final name, so
  a loader never reads a partial file.
* Connection errors, timeouts, HTTP 429 and 5xx are retried with exponential backoff; an attempt
  that received data does not count against the retries. 404/403 fail at once, naming the key and
  the URL.
* A lock file ``<name>.lock`` (:mod:`filelock`) serialises processes fetching the same file: the
  second one waits, then finds the file present.

The HTTP client is :mod:`urllib3` and the lock :mod:`filelock`; both are imported only when a
download is made, so ``import berg_core`` stays light.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from berg_core.atomic import PART_SUFFIX, fsync_path
from berg_core.cards import ResolvedFile
from berg_core.errors import InvalidParameterError, ModelLoadError
from berg_core.locations import default_berg_dir

if TYPE_CHECKING:
    import urllib3

__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "FileStatus",
    "ServerUnreachableError",
    "fetch_files",
    "fetch_model",
    "format_size",
    "inspect_files",
    "model_files",
    "model_keys",
    "resolve_base_url",
    "source_url",
    "total_size",
    "url_for",
]

#: The public AWS Open Data bucket of the reference toolkit (anonymous HTTPS access).
DEFAULT_BASE_URL = "https://brain-encoding-response-generator.s3.us-west-2.amazonaws.com/"
#: Environment variable naming a mirror to use instead of :data:`DEFAULT_BASE_URL`.
BASE_URL_ENV = "BERG_BASE_URL"

STATE_SUFFIX = PART_SUFFIX + ".json"
LOCK_SUFFIX = ".lock"

_CHUNK = 1 << 18
_MAX_DELAY = 60.0
_MD5_ETAG = re.compile(r"^[0-9a-fA-F]{32}$")
_MULTIPART_ETAG = re.compile(r"^([0-9a-fA-F]{32})-([0-9]{1,5})$")
#: Part sizes (MiB) tried to check an S3 multipart ETag: the AWS CLI's and boto3's default first.
_PART_SIZES_MIB = (8, 16, 5, 15, 10, 32, 50, 64, 100, 128, 256, 512)
_MAX_PART_SIZES_TRIED = 3
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}

log = logging.getLogger(__name__)


class ServerUnreachableError(ModelLoadError):
    """The server could not be reached (offline, DNS failure, connection refused), even after
    the retries."""


# -- keys, URLs, sizes ------------------------------------------------------------------------
def resolve_base_url(base_url: str | None = None, *, source: str = "base_url") -> str:
    """Return the base URL to fetch from, ending with ``/``.

    Parameters
    ----------
    base_url : str, optional
        Explicit mirror; else ``$BERG_BASE_URL``; else :data:`DEFAULT_BASE_URL`.
    source : str
        What *base_url* is, for error messages.

    Raises
    ------
    InvalidParameterError
        The URL is not ``http(s)://host/...``.
    """
    url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    source = source if base_url else BASE_URL_ENV
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidParameterError(
            f"{source} = {url!r} is not valid; expected an http(s) URL such as {DEFAULT_BASE_URL}"
        )
    if parts.query or parts.fragment:
        raise InvalidParameterError(f"{source} = {url!r} must not have a query or fragment")
    return url if url.endswith("/") else url + "/"


def check_key(key: object) -> str:
    """Return *key* if it is a safe relative path under ``berg_dir`` (posix separators)."""
    if not isinstance(key, str) or not key:
        raise InvalidParameterError(f"file key must be a non-empty string, got {key!r}")
    parts = key.split("/")
    if (
        "\\" in key
        or PurePosixPath(key).is_absolute()
        or re.match(r"^[A-Za-z]:", key)
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(ch) < 32 for ch in key)
    ):
        raise InvalidParameterError(
            f"file key {key!r} is not a relative path inside berg_dir "
            f"(no leading '/', '..', '.', empty parts or backslashes)"
        )
    return key


def url_for(key: str, base_url: str | None = None) -> str:
    """The URL of *key* under *base_url* (see :func:`resolve_base_url`)."""
    return resolve_base_url(base_url) + quote(check_key(key), safe="/")


def format_size(size: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; ``None`` -> ``"?"``."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _sibling(target: Path, suffix: str) -> Path:
    return target.with_name(target.name + suffix)


# -- models -----------------------------------------------------------------------------------
def model_keys(model_id: str, subject: int | str | None = None) -> list[str]:
    """The keys (paths under ``berg_dir``) model *model_id* reads for *subject*.

    Raises
    ------
    ModelNotFoundError, InvalidParameterError
        Unknown model, or a subject the model does not have.
    """
    from berg_core.registry import get_registry

    _, card = get_registry().resolve(model_id)
    subject = card.check_subject(subject)
    return [check_key(key) for key in card.files_for(subject)]


def model_files(model_id: str, subject: int | str | None = None) -> list[ResolvedFile]:
    """The files model *model_id* reads for *subject*, with their sources and declared checks.

    Raises
    ------
    ModelNotFoundError, InvalidParameterError
        Unknown model, or a subject the model does not have.
    """
    from berg_core.registry import get_registry

    _, card = get_registry().resolve(model_id)
    files = card.resolved_files(card.check_subject(subject))
    for file in files:
        check_key(file.key)
    return files


def source_url(file: str | ResolvedFile, base_url: str | None = None) -> str:
    """The base URL *file* is downloaded from, ending with ``/``.

    A mirror named explicitly (*base_url*, ``berg fetch --base-url``) serves every file. Otherwise
    a file whose card names its own server (:attr:`FileSpec.base_url`) comes from there, and the
    others from ``$BERG_BASE_URL`` if set, else the reference bucket (:data:`DEFAULT_BASE_URL`):
    the environment's mirror stands in for the reference bucket only.

    Raises
    ------
    InvalidParameterError
        The URL is not ``http(s)://host/...``.
    """
    own = file.base_url if isinstance(file, ResolvedFile) else None
    if base_url is None and own:
        return resolve_base_url(own, source=f"base_url of {file.key!r} in its model card")
    return resolve_base_url(base_url)


def fetch_model(
    model_id: str,
    subject: int | str | None = None,
    berg_dir: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    show_progress: bool = True,
    **options: Any,
) -> list[Path]:
    """Download the files model *model_id* needs for *subject* that are missing from *berg_dir*.

    Parameters
    ----------
    model_id : str
        Id from :meth:`berg_core.BERG.list_models`.
    subject : int or str, optional
        One of the model's subjects (required when it has subjects).
    berg_dir : str or Path, optional
        Destination; defaults to :func:`berg_core.locations.default_berg_dir`.
    base_url : str, optional
        Mirror to download every file from; by default each file comes from its card's own
        server, else ``$BERG_BASE_URL``, else the public bucket (:func:`source_url`).
    show_progress : bool
        Show a progress bar (bytes) per file.
    **options
        ``retries``, ``backoff``, ``timeout``, ``verify_etag``: see :func:`fetch_files`.

    Returns
    -------
    list of Path
        The model's files under *berg_dir*, all present; empty when its card lists none.
    """
    files = model_files(model_id, subject)
    root = Path(berg_dir).expanduser() if berg_dir is not None else default_berg_dir()
    return fetch_files(files, root, base_url=base_url, show_progress=show_progress, **options)


# -- status -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileStatus:
    """What is known about one file of a model, locally and (optionally) on the server.

    Attributes
    ----------
    key : str
        Path relative to ``berg_dir`` and object key on the server.
    url : str
        Where it is downloaded from.
    path : Path
        Where it is stored.
    present : bool
        Whether ``path`` exists.
    local_size : int or None
        Size of ``path`` if present.
    partial_size : int
        Bytes of an interrupted download waiting to be resumed (0 if none).
    remote_size : int or None
        Size reported by the server (``HEAD``), if asked and known.
    etag : str or None
        The server's ETag, if asked and given.
    error : str or None
        Why the server could not be asked, if it could not.
    size : int or None
        The size the model's card declares, if any.
    sha256 : str or None
        The SHA-256 the model's card declares, if any (verified when downloading).
    """

    key: str
    url: str
    path: Path
    present: bool
    local_size: int | None = None
    partial_size: int = 0
    remote_size: int | None = None
    etag: str | None = None
    error: str | None = None
    size: int | None = None
    sha256: str | None = None


def inspect_files(
    keys: Iterable[str | ResolvedFile],
    berg_dir: str | os.PathLike[str],
    base_url: str | None = None,
    *,
    remote: bool = False,
    retries: int = 2,
    backoff: float = 0.5,
    timeout: float = 30.0,
) -> list[FileStatus]:
    """Say which of *keys* are present under *berg_dir* and, with *remote*, their server sizes.

    Parameters
    ----------
    keys : iterable of str or ResolvedFile
        Paths relative to *berg_dir*, or the files of a model (:func:`model_files`).
    berg_dir : str or Path
        Root folder.
    base_url : str, optional
        A mirror for every file; see :func:`source_url`.
    remote : bool
        Send a ``HEAD`` request per file for its size and ETag. Failures are reported in
        :attr:`FileStatus.error`, not raised; once a server is unreachable the remaining
        files on it are not asked.
    retries, backoff, timeout
        See :func:`fetch_files`.

    Returns
    -------
    list of FileStatus
        In the order of *keys*.
    """
    root = Path(berg_dir).expanduser()
    files = [_as_file(item) for item in keys]
    bases = [source_url(file, base_url) for file in files]
    pools: dict[str, Any] = {}  # one per server (the proxy depends on the host)
    unreachable: set[str] = set()  # servers not asked again
    statuses = []
    try:
        for file, base in zip(files, bases, strict=True):
            origin = _origin_text(base)
            if remote and origin not in pools:
                pools[origin] = _pool_manager(base, timeout)
            http = pools.get(origin)
            key = file.key
            url = url_for(key, base)
            path = root / key
            present = path.is_file()
            part = _sibling(path, PART_SUFFIX)
            status: dict[str, Any] = {
                "key": key,
                "url": url,
                "path": path,
                "present": present,
                "local_size": path.stat().st_size if present else None,
                "partial_size": part.stat().st_size if part.is_file() and not present else 0,
                "size": file.size,
                "sha256": file.sha256,
            }
            if http is not None and origin in unreachable:
                status["error"] = "not asked: server unreachable"
            elif http is not None:
                try:
                    response = _with_retries(
                        lambda url=url, key=key, http=http: _send(http, "HEAD", url, key, {}),
                        key,
                        url,
                        retries,
                        backoff,
                    )
                except ServerUnreachableError as exc:
                    unreachable.add(origin)
                    status["error"] = str(exc)
                except ModelLoadError as exc:
                    status["error"] = str(exc)
                else:
                    if response is None:
                        status["error"] = "the server does not answer HEAD requests"
                    else:
                        status["remote_size"] = _int_header(response, "Content-Length")
                        status["etag"] = response.headers.get("ETag")
                        response.drain_conn()  # the connection is reused only once drained
                        response.release_conn()
            statuses.append(FileStatus(**status))
    finally:
        for pool in pools.values():
            pool.clear()
    return statuses


# -- downloading ------------------------------------------------------------------------------
def fetch_files(
    keys: Iterable[str | ResolvedFile],
    berg_dir: str | os.PathLike[str],
    base_url: str | None = None,
    show_progress: bool = True,
    *,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    verify_etag: bool = True,
) -> list[Path]:
    """Download the *keys* missing from *berg_dir*; return the local paths of all of them.

    Parameters
    ----------
    keys : iterable of str or ResolvedFile
        Object keys, which are also the paths relative to *berg_dir* (posix separators), or a
        model's files (:func:`model_files`: key, own server, declared size and SHA-256).
    berg_dir : str or Path
        Destination root; created if needed.
    base_url : str, optional
        Mirror to download every file from. By default a file whose card names its own server
        comes from there, the others from ``$BERG_BASE_URL``, else :data:`DEFAULT_BASE_URL`
        (:func:`source_url`). The URL of a key is ``base + key``.
    show_progress : bool
        Show a progress bar (bytes) per file, and say when waiting for another process.
    retries : int
        How many times a failed attempt is retried (connection errors, timeouts, HTTP 429 and
        5xx) before giving up. An attempt that received data restarts the count.
    backoff : float
        Delay before the first retry, in seconds; it doubles at each retry (at most 60 s, with a
        little jitter; ``Retry-After`` is honoured). 0 retries at once.
    timeout : float
        Connect and read timeout of each request, in seconds.
    verify_etag : bool
        Check the MD5 of each file against the server's ETag when the ETag is a plain MD5. Turn
        off only for a mirror whose 32-hex-digit ETags are not MD5s (e.g. S3 with SSE-KMS).

    Returns
    -------
    list of Path
        ``berg_dir / key`` for each key, in order; every one exists.

    Raises
    ------
    InvalidParameterError
        A key is not a relative path inside *berg_dir*, or the base URL is invalid.
    InvalidParameterError
        *berg_dir* exists and is not a directory.
    ModelLoadError
        A file could not be downloaded (server unreachable, HTTP 404/403, retries exhausted), did
        not match the card's or the server's size or checksum (SHA-256 declared by the card,
        MD5 ETag), could not be verified (no size and no checksum known), came encoded or from
        a redirect to another server, or could not be written (a directory in the way,
        unwritable folder, not enough disk space). The message names the key and the URL or
        path. What was downloaded before a network failure is kept in ``<name>.part`` and
        resumed by the next call, unless it was found corrupt or cannot be resumed safely.
    """
    files = [_as_file(item) for item in keys]
    if retries < 0 or backoff < 0 or timeout <= 0:
        raise InvalidParameterError(
            f"retries >= 0, backoff >= 0 and timeout > 0 are required; got retries={retries}, "
            f"backoff={backoff}, timeout={timeout}"
        )
    root = Path(berg_dir).expanduser()
    bases = [source_url(file, base_url) for file in files]
    _check_berg_dir(root)
    targets = [root / file.key for file in files]
    missing = [
        (file, base, target)
        for file, base, target in zip(files, bases, targets, strict=True)
        if not target.is_file()
    ]
    if not missing:
        log.debug("all %d file(s) present under %s", len(files), root)
        return targets
    for file, _, target in missing:  # before any download: a path berg cannot write is an error
        _check_target(root, file.key, target)
    pools: dict[str, Any] = {}  # one per server (the proxy depends on the host)
    try:
        for number, (file, base, target) in enumerate(missing, 1):
            origin = _origin_text(base)
            if origin not in pools:
                pools[origin] = _pool_manager(base, timeout)
            job = _Job(
                http=pools[origin],
                key=file.key,
                url=url_for(file.key, base),
                target=target,
                label=f"[{number}/{len(missing)}] {target.name}",
                retries=retries,
                backoff=backoff,
                show_progress=show_progress,
                verify_etag=verify_etag,
                size=file.size,
                sha256=file.sha256,
            )
            try:
                _fetch_locked(job)
            except OSError as exc:  # network errors are handled inside: this is the local disk
                raise ModelLoadError(
                    f"cannot save {file.key!r} under berg_dir {str(root)!r}: {_os_reason(exc)}"
                ) from None
    finally:
        for pool in pools.values():
            pool.clear()
    return targets


def _as_file(item: str | ResolvedFile) -> ResolvedFile:
    """*item* as a :class:`ResolvedFile` (a plain key declares nothing), its key checked."""
    if isinstance(item, ResolvedFile):
        check_key(item.key)
        return item
    return ResolvedFile(key=check_key(item))


def _check_berg_dir(root: Path) -> None:
    """Refuse a *root* that exists but is not a directory."""
    if root.exists() and not root.is_dir():
        raise InvalidParameterError(
            f"berg_dir {str(root)!r} is not a directory (it is a file); pass a folder, which is "
            f"created if it does not exist"
        )


def _check_target(root: Path, key: str, target: Path) -> None:
    """Refuse a *target* that is a directory, or whose folders under *root* are files."""
    if target.is_dir():
        raise ModelLoadError(
            f"cannot save {key!r}: {target} is a directory, where the file belongs; remove it or "
            f"use another berg_dir"
        )
    for folder in reversed(target.relative_to(root).parents[:-1]):
        path = root / folder
        if path.exists() and not path.is_dir():
            raise ModelLoadError(
                f"cannot save {key!r}: {path} is a file, where a folder belongs; remove it or use "
                f"another berg_dir"
            )


def _os_reason(exc: OSError) -> str:
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


@dataclass
class _Job:
    http: Any
    key: str
    url: str
    target: Path
    label: str
    retries: int
    backoff: float
    show_progress: bool
    verify_etag: bool
    size: int | None = None  # declared by the card
    sha256: str | None = None  # declared by the card


@dataclass(frozen=True)
class _Remote:
    """What the ``HEAD`` response said about an object; None where it said nothing."""

    size: int | None = None
    etag: str | None = None


class _TransientError(Exception):
    """A failure worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _RangeError(_TransientError):
    """HTTP 416: the partial is not a prefix of the object any more."""


class _ConnectError(_TransientError):
    """The server could not be reached at all (offline, connection refused, DNS failure)."""


class _CorruptDownloadError(ModelLoadError):
    """A download that cannot be trusted: its partial is deleted before this is raised on."""


class _BodyTooLongError(Exception):
    """The body went on past the size the server announced."""


def _is_connect_failure(exc: BaseException) -> bool:
    return isinstance(exc, _ConnectError)


def _fetch_locked(job: _Job) -> None:
    from filelock import FileLock, Timeout

    job.target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(_sibling(job.target, LOCK_SUFFIX)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        message = f"waiting for another process downloading {job.key} ..."
        log.info(message)
        if job.show_progress:
            print(f"berg: {message}", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        if job.target.is_file():  # the other process finished it
            log.debug("%s: downloaded by another process meanwhile", job.key)
            return
        _download(job)
    finally:
        lock.release()


@dataclass
class _Progress:
    """What survives between the attempts of one download: checksum state and progress bar."""

    hasher: Any = None  # running MD5 of the partial's first `hashed` bytes, or None
    hashed: int = 0
    bar: Any = None
    received: int = 0  # bytes the last attempt added to the partial


def _download(job: _Job) -> None:
    """Download *job* into ``<target>.part`` with resume and retries, verify, then rename."""
    part = _sibling(job.target, PART_SUFFIX)
    state_file = _sibling(job.target, STATE_SUFFIX)
    progress = _Progress()
    failures = 0  # failed attempts in a row that received no data
    try:
        while True:
            try:
                size, total, etag = _attempt(job, part, state_file, progress)
                _verify(job, size, total, etag, progress.hasher)
            except _TransientError as exc:
                if isinstance(exc, _RangeError):
                    _discard(part, state_file)
                failures = 1 if progress.received > 0 else failures + 1
                if failures > job.retries:
                    if not _validator(_load_state(state_file)):  # the partial cannot be resumed
                        _discard(part, state_file)
                    error = ServerUnreachableError if _is_connect_failure(exc) else ModelLoadError
                    raise error(_failure_message(job, exc, failures, part)) from None
                delay = _delay(job.backoff, failures, exc.retry_after)
                log.info(
                    "%s: %s; retry %d of %d in %.1f s", job.key, exc, failures, job.retries, delay
                )
                time.sleep(delay)
                continue
            except _CorruptDownloadError:
                _discard(part, state_file)
                raise
            os.replace(part, job.target)
            state_file.unlink(missing_ok=True)
            fsync_path(job.target.parent)
            log.debug("%s: saved %s (%d bytes)", job.key, job.target, size)
            return
    finally:
        if progress.bar is not None:
            progress.bar.close()


def _probe(job: _Job) -> _Remote:
    """``HEAD`` the object for its size and ETag (nothing known if the server refuses HEAD)."""
    response = _send(job.http, "HEAD", job.url, job.key, {})
    if response is None:
        log.debug("%s: the server does not answer HEAD requests", job.key)
        return _Remote()
    try:
        return _Remote(_int_header(response, "Content-Length"), response.headers.get("ETag"))
    finally:
        response.drain_conn()  # the connection is reused only once drained
        response.release_conn()


def _attempt(
    job: _Job, part: Path, state_file: Path, progress: _Progress
) -> tuple[int, int | None, str | None]:
    """One HEAD and one GET, resuming the partial if there is one; return ``(size, total, etag)``.

    Raises :class:`_TransientError` when the transfer should be tried again and
    :class:`_CorruptDownloadError` when what was received cannot be trusted.
    """
    from tqdm.auto import tqdm

    progress.received = 0
    remote = _probe(job)
    offset, state = _resume_state(part, state_file, remote)
    headers = {}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = _validator(state)
    response = _send(job.http, "GET", job.url, job.key, headers)
    consumed = False
    try:
        offset, total, etag = _start_body(job, response, offset, state, remote, part, state_file)
        if progress.hasher is None or progress.hashed != offset:
            progress.hasher = _hash_prefix(part, offset, etag, job.verify_etag, job.sha256)
            progress.hashed = offset
        if progress.bar is None:
            progress.bar = tqdm(
                total=total,
                initial=offset,
                desc=job.label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not job.show_progress,
                file=sys.stderr,
            )
        elif progress.bar.n != offset or progress.bar.total != total:
            progress.bar.reset(total=total)
            progress.bar.update(offset)
        limit = None if total is None else total - offset
        with open(part, "ab") as out:
            try:
                _copy_body(response, out, progress.hasher, progress.bar, limit)
                consumed = True
            except _BodyTooLongError:
                raise _CorruptDownloadError(
                    f"{job.key}: {job.url} sent more than the {total} bytes announced "
                    f"(Content-Length, Content-Range or HEAD); the download was deleted"
                ) from None
            finally:
                out.flush()
                os.fsync(out.fileno())
                size = part.stat().st_size
                progress.received = size - offset
                progress.hashed = size
    finally:
        if not consumed:  # never leave unread data on a connection the pool may reuse
            response.close()
        response.release_conn()
    if total is not None and size < total:
        raise _TransientError(f"connection closed after {size} of {total} bytes")
    return size, total, etag


def _resume_state(part: Path, state_file: Path, remote: _Remote) -> tuple[int, dict[str, Any]]:
    """Size of a resumable partial and its saved validators; ``(0, {})`` after discarding one.

    A partial is discarded when it has no saved validator, or when *remote* (the ``HEAD``
    response) shows it cannot be a prefix of the object: another ETag or size, or not shorter.
    """
    if not part.is_file():
        state_file.unlink(missing_ok=True)
        return 0, {}
    state = _load_state(state_file)
    size = part.stat().st_size
    stale = (
        (remote.etag is not None and state.get("etag") not in (None, remote.etag))
        or (remote.size is not None and state.get("size") not in (None, remote.size))
        or (remote.size is not None and size >= remote.size)
    )
    if size and _validator(state) and not stale:
        return size, state
    # a partial without a validator, or of another version of the object, cannot be resumed
    _discard(part, state_file)
    return 0, {}


def _load_state(state_file: Path) -> dict[str, Any]:
    """The saved state of a partial (``{}`` if missing or unreadable)."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _validator(state: dict[str, Any]) -> str | None:
    """What guards resuming a partial (``If-Range``): its ETag, else its Last-Modified."""
    value = state.get("etag") or state.get("last_modified")
    return value if isinstance(value, str) and value else None


def _start_body(
    job: _Job,
    response: Any,
    offset: int,
    state: dict[str, Any],
    remote: _Remote,
    part: Path,
    state_file: Path,
) -> tuple[int, int | None, str | None]:
    """Check a GET response's status and framing; return ``(offset, total size, etag)``.

    The total size is the ``HEAD`` response's when it gave one, and the GET response must agree
    with it. Truncates the partial when the server sends the whole object again. Refuses (with
    :class:`_CorruptDownloadError`) an object whose size and checksum are both unknown.
    """
    etag = response.headers.get("ETag")
    if remote.etag and etag and etag != remote.etag:
        raise _TransientError(
            f"the object changed on the server during the download (ETag {remote.etag} -> {etag})"
        )
    etag = etag or remote.etag
    length = _int_header(response, "Content-Length")
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.match(content_range.strip())
        announced = None if match is None or match.group(3) == "*" else int(match.group(3))
        total = remote.size if remote.size is not None else announced
        if (
            not offset
            or match is None
            or int(match.group(1)) != offset
            or (announced is not None and announced != total)
            or (total is not None and int(match.group(2)) != total - 1)
            or (length is not None and length != int(match.group(2)) - offset + 1)
        ):
            _discard(part, state_file)
            raise _TransientError(
                f"the server did not honour the range request bytes={offset}- (answered 206 with "
                f"Content-Range {content_range!r}, Content-Length {length}, object size "
                f"{total if total is not None else '?'}); restarting from byte 0"
            )
        saved = state.get("etag")
        if saved and etag and saved != etag:
            _discard(part, state_file)
            raise _TransientError(f"the object changed on the server (ETag {saved} -> {etag})")
        if total is not None and state.get("size") not in (None, total):
            _discard(part, state_file)
            raise _TransientError(
                f"the object changed on the server (size {state['size']} -> {total})"
            )
        etag = etag or saved
        total = _declared_size(job, total)
        _check_verifiable(job, total, etag)
        if total is not None:
            _check_space(job, part, total - offset)
        log.debug("%s: resuming at byte %d of %s", job.key, offset, total)
    else:
        # 200: the whole object (first attempt, or the server ignored Range / If-Range failed)
        if remote.size is not None and length is not None and length != remote.size:
            raise _CorruptDownloadError(
                f"{job.key}: {job.url} announces {length} bytes in its GET response but "
                f"{remote.size} in its HEAD response; refusing a server that contradicts itself"
            )
        total = _declared_size(job, remote.size if remote.size is not None else length)
        _check_verifiable(job, total, etag)
        if total is not None:
            _check_space(job, part, total)
        if offset:
            log.debug("%s: server sent the whole object; restarting from byte 0", job.key)
        offset = 0
        state_file.write_text(
            json.dumps(
                {
                    "url": job.url,
                    "etag": etag,
                    "last_modified": response.headers.get("Last-Modified"),
                    "size": total,
                }
            )
        )
        with open(part, "wb"):
            pass
    return offset, total, etag


def _declared_size(job: _Job, total: int | None) -> int | None:
    """The object's size: the server's, which must match the card's when both are known."""
    if job.size is None:
        return total
    if total is not None and total != job.size:
        raise _CorruptDownloadError(
            f"{job.key}: its model card declares {job.size} bytes but {job.url} has {total}; "
            f"nothing was kept. The card or the server is out of date: tell the model's "
            f"maintainers, or use a mirror with the right file (--base-url)."
        )
    return job.size


def _check_verifiable(job: _Job, total: int | None, etag: str | None) -> None:
    """Refuse a download whose completeness could not be checked: no size and no checksum.

    A SHA-256 declared by the card is a checksum (the server need give neither size nor MD5).
    """
    if job.sha256 is None and total is None and (not job.verify_etag or _md5_of_etag(etag) is None):
        checksum = (
            "checksums are off (verify_etag=False)"
            if not job.verify_etag
            else (f"no MD5 checksum (ETag {etag!r})")
        )
        raise _CorruptDownloadError(
            f"refusing to download {job.key!r} from {job.url}: the server announced no size "
            f"(no Content-Length in its HEAD or GET response) and {checksum}, so a truncated or "
            f"altered transfer could not be detected. Use a server or mirror that sends "
            f"Content-Length (S3 does)."
        )


def _check_space(job: _Job, part: Path, needed: int) -> None:
    """Refuse to start a transfer that cannot fit on the disk holding *part*."""
    import shutil

    free = shutil.disk_usage(part.parent).free
    if needed > free:
        raise ModelLoadError(
            f"cannot download {job.key!r} from {job.url}: it needs {format_size(needed)} more but "
            f"only {format_size(free)} are free in {part.parent}"
        )


def _copy_body(response: Any, out: Any, hasher: Any, bar: Any, limit: int | None) -> int:
    """Stream the body into *out* (at most *limit* bytes, else :class:`_BodyTooLongError`).

    Network errors become :class:`_TransientError`.
    """
    stream = response.stream(_CHUNK, decode_content=False)
    received = 0
    while True:
        try:
            chunk = next(stream, None)
        except _network_errors() as exc:
            raise _TransientError(f"transfer interrupted: {_reason(exc)}") from None
        if not chunk:
            return received
        if limit is not None and received + len(chunk) > limit:
            raise _BodyTooLongError()
        out.write(chunk)
        if hasher is not None:
            hasher.update(chunk)
        received += len(chunk)
        bar.update(len(chunk))


class _Digests:
    """The running checksums of one download: MD5 (a plain-MD5 ETag), SHA-256 (the card's)."""

    def __init__(self, md5: bool, sha256: bool) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.sha256 = hashlib.sha256() if sha256 else None

    def update(self, data: bytes) -> None:
        for hasher in (self.md5, self.sha256):
            if hasher is not None:
                hasher.update(data)


def _hash_prefix(
    part: Path, offset: int, etag: str | None, verify: bool, sha256: str | None = None
) -> _Digests | None:
    """Running checksums primed with the first *offset* bytes of *part*, or None if none needed.

    MD5 when *verify* and the ETag is a plain MD5; SHA-256 when the card declares one (so a
    resumed download is verified over its resumed bytes too).
    """
    md5 = verify and _md5_of_etag(etag) is not None
    if not md5 and not sha256:
        return None
    hasher = _Digests(md5, bool(sha256))
    if offset:
        with open(part, "rb") as source:
            _hash_next(hasher, source, offset)
    return hasher


def _hash_next(hasher: Any, source: Any, count: int) -> int:
    """Feed the next *count* bytes of *source* to *hasher*; return how many it had."""
    remaining = count
    while remaining:
        block = source.read(min(_CHUNK, remaining))
        if not block:
            break
        hasher.update(block)
        remaining -= len(block)
    return count - remaining


def _md5_of_etag(etag: str | None) -> str | None:
    """The MD5 hex digest an S3 single-part ETag stands for; None for weak or multipart ETags."""
    if not etag or etag.startswith("W/"):
        return None
    value = etag.strip().strip('"')
    return value.lower() if _MD5_ETAG.match(value) else None


def _verify(job: _Job, size: int, total: int | None, etag: str | None, hasher: Any) -> None:
    """Check a complete transfer's size and MD5; raise :class:`_CorruptDownloadError` on a mismatch.

    :func:`_check_verifiable` made sure at least one of the two is known. A SHA-256 declared
    by the card is checked first.
    """
    if total is not None and size != total:
        announced = "its model card declares" if job.size is not None else "the server announced"
        raise _CorruptDownloadError(
            f"{job.key}: received {size} bytes from {job.url} but {announced} {total}; "
            f"the download was deleted. Run the fetch again."
        )
    if job.sha256 is not None:
        found = hasher.sha256.hexdigest()
        if found != job.sha256:
            raise _CorruptDownloadError(
                f"{job.key}: the data downloaded from {job.url} has SHA-256 {found}, but its "
                f"model card declares {job.sha256}; the download was deleted. Run the fetch "
                f"again; if this repeats, the server holds another file than the card describes."
            )
        log.debug("%s: SHA-256 %s matches the card", job.key, found)
    expected = _md5_of_etag(etag) if job.verify_etag else None
    if expected is None and job.verify_etag and _MULTIPART_ETAG.match(_etag_value(etag)):
        part_size = _multipart_part_size(job, etag)
        if part_size is not None:
            log.debug("%s: multipart ETag %s matches (parts of %d bytes)", job.key, etag, part_size)
            return
    if expected is None and job.sha256 is not None:
        return
    if expected is None:
        why = (
            "checksums are off (verify_etag=False)"
            if not job.verify_etag
            else f"ETag {etag} is not a plain MD5 (S3 multipart upload, or another server)"
        )
        log.info("%s: %s; verified size only (%d bytes)", job.key, why, size)
        return
    digest = hasher.md5.hexdigest()
    if digest != expected:
        raise _CorruptDownloadError(
            f"{job.key}: the data downloaded from {job.url} does not match the server's "
            f"checksum (MD5 {digest}, ETag {etag}); the download was deleted. Run the fetch "
            f"again; if this repeats, the server or a proxy is serving a corrupt file."
        )
    if total is None:
        log.debug("%s: the server sent no size; the MD5 covers it", job.key)
    log.debug("%s: MD5 %s matches the ETag", job.key, digest)


def _etag_value(etag: str | None) -> str:
    return (etag or "").strip().strip('"')


def _multipart_part_size(job: _Job, etag: str | None) -> int | None:
    """The part size with which the partial reproduces the S3 multipart *etag*, else None.

    An S3 multipart ETag is ``md5(md5(part 1) + md5(part 2) + ...)-<parts>``: the part size is
    not recorded, so at most :data:`_MAX_PART_SIZES_TRIED` of :data:`_PART_SIZES_MIB` that give
    the right number of parts are tried (one file read each). A one-part ETag does not depend on
    the part size: a mismatch there raises :class:`_CorruptDownloadError`.
    """
    match = _MULTIPART_ETAG.match(_etag_value(etag))
    if match is None:
        return None
    digest, parts = match.group(1).lower(), int(match.group(2))
    part = _sibling(job.target, PART_SUFFIX)
    size = part.stat().st_size
    if parts == 1:
        if _multipart_digest(part, max(size, 1)) == digest:
            return size
        raise _CorruptDownloadError(
            f"{job.key}: the data downloaded from {job.url} does not match the server's "
            f"checksum (one-part ETag {etag}); the download was deleted. Run the fetch again."
        )
    candidates = [mib << 20 for mib in _PART_SIZES_MIB if -(-size // (mib << 20)) == parts]
    for part_size in candidates[:_MAX_PART_SIZES_TRIED]:
        if _multipart_digest(part, part_size) == digest:
            return part_size
    return None


def _multipart_digest(path: Path, part_size: int) -> str:
    """The S3 multipart digest of *path* cut into parts of *part_size* bytes (no ``-N``)."""
    outer = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as source:
        while True:
            inner = hashlib.md5(usedforsecurity=False)
            read = _hash_next(inner, source, part_size)
            if read == 0:  # end of file
                break
            outer.update(inner.digest())
            if read < part_size:
                break
    return outer.hexdigest()


def _discard(part: Path, state_file: Path) -> None:
    part.unlink(missing_ok=True)
    state_file.unlink(missing_ok=True)


def _failure_message(job: _Job, exc: _TransientError, failures: int, part: Path) -> str:
    kept = ""
    if part.is_file() and part.stat().st_size:
        kept = f" {part.stat().st_size} bytes are kept in {part} and will be resumed next time."
    hint = ""
    if _is_connect_failure(exc):
        hint = (
            f" Are you offline? Check the connection, or download from a mirror with --base-url "
            f"or ${BASE_URL_ENV}."
        )
    return (
        f"could not download {job.key!r} from {job.url} ({failures} failed attempt(s) in a row): "
        f"{exc}.{hint}{kept}"
    )


# -- HTTP -------------------------------------------------------------------------------------
def _network_errors() -> tuple[type[BaseException], ...]:
    import http.client

    import urllib3

    return (urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError, TimeoutError)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        exc = reason
    text = str(exc)
    # urllib3 prefixes connection errors with an object repr; keep the useful tail
    text = re.sub(r"^<[^>]*>:\s*", "", text)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _headers() -> dict[str, str]:
    from berg_core import __version__

    # identity: the bytes on disk must be the object's bytes, which the ETag and size describe
    return {"User-Agent": f"berg-core/{__version__}", "Accept-Encoding": "identity"}


def _pool_manager(base_url: str, timeout: float) -> urllib3.PoolManager:
    """A urllib3 pool for *base_url*, through the environment's proxy if it names one."""
    import urllib.request

    import urllib3

    options: dict[str, Any] = {
        "timeout": urllib3.Timeout(connect=min(timeout, 30.0), read=timeout),
        # no automatic retries (ours know about partial downloads); _send follows redirects
        "retries": urllib3.Retry(
            total=None, connect=0, read=0, status=0, other=0, redirect=0, raise_on_status=False
        ),
        "maxsize": 2,
    }
    parts = urlsplit(base_url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    host = parts.hostname or ""
    if proxy and host not in _LOOPBACK and not urllib.request.proxy_bypass(host):
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


def _send(http: Any, method: str, url: str, key: str, headers: dict[str, str]) -> Any:
    """Send one request and return the response if its status is 200 or 206.

    Redirects are followed (at most :data:`_MAX_REDIRECTS`) only to the same server (same host
    and port, or ``http`` to ``https`` on the default ports); a ``HEAD`` refused with 405 or 501
    returns None. A response whose body is encoded (``Content-Encoding`` other than identity) is
    refused. Raises :class:`_TransientError` for failures worth retrying and
    :class:`ModelLoadError` for the rest, naming *key* and *url*.
    """
    location = url
    for _ in range(_MAX_REDIRECTS + 1):
        response = _request(http, method, location, key, headers)
        if response.status not in _REDIRECTS:
            break
        target = response.headers.get("Location")
        response.drain_conn()
        response.release_conn()
        if not target:
            raise ModelLoadError(
                f"could not download {key!r}: HTTP {response.status} redirect without a Location "
                f"from {location}"
            )
        target = urljoin(location, target)
        if not _same_server(url, target):
            raise ModelLoadError(
                f"could not download {key!r}: {location} redirects to {target}, another server; "
                f"berg follows redirects only within {_origin_text(url)}. If that server is a "
                f"mirror you trust, pass it as --base-url / base_url."
            )
        log.debug("%s: redirected to %s", key, target)
        location = target
    else:
        raise ModelLoadError(
            f"could not download {key!r} from {url}: more than {_MAX_REDIRECTS} redirects"
        )
    status = response.status
    if status in (200, 206):
        _check_encoding(response, key, location)
        return response
    retry_after = _retry_after(response)
    response.drain_conn()
    response.release_conn()
    if method == "HEAD" and status in (405, 501):
        return None
    if status == 429 or status >= 500:
        raise _TransientError(f"HTTP {status} {response.reason or ''}".rstrip(), retry_after)
    if status == 416:
        raise _RangeError("HTTP 416: the partial download is not part of the file")
    if status == 404:
        raise ModelLoadError(
            f"{key!r} is not on the server: HTTP 404 Not Found for {url}. Either the model's card "
            f"names a file the bucket does not have, or the mirror is incomplete."
        )
    if status == 403:
        raise ModelLoadError(
            f"access to {key!r} was refused: HTTP 403 Forbidden for {url}. S3 answers 403 for "
            f"keys that do not exist when listing is not allowed: check the key and the base URL."
        )
    raise ModelLoadError(f"could not download {key!r}: HTTP {status} for {url}")


def _request(http: Any, method: str, url: str, key: str, headers: dict[str, str]) -> Any:
    """One request, redirects not followed; connection failures become exceptions of ours."""
    import urllib3

    errors = urllib3.exceptions
    try:
        return http.request(
            method,
            url,
            headers={**_headers(), **headers},
            preload_content=False,
            decode_content=False,
            redirect=False,
        )
    except errors.MaxRetryError as exc:
        reason = exc.reason
        if isinstance(reason, errors.SSLError):
            raise ModelLoadError(
                f"could not download {key!r} from {url}: TLS/SSL error: {_reason(reason)}"
            ) from None
        if isinstance(reason, (errors.ConnectTimeoutError, errors.ProxyError)):
            raise _ConnectError(f"cannot connect: {_reason(exc)}") from None
        raise _TransientError(f"request failed: {_reason(exc)}") from None
    except errors.LocationValueError as exc:
        raise ModelLoadError(f"invalid URL {url} for {key!r}: {exc}") from None
    except _network_errors() as exc:
        raise _TransientError(f"request failed: {_reason(exc)}") from None


def _check_encoding(response: Any, key: str, url: str) -> None:
    """Refuse a body the server transformed: the file must be the object's bytes."""
    for header, allowed in (
        ("Content-Encoding", ("", "identity")),
        ("Transfer-Encoding", ("", "identity", "chunked")),
    ):
        value = (response.headers.get(header) or "").strip().lower()
        if value not in allowed:
            response.close()
            response.release_conn()
            raise ModelLoadError(
                f"refusing {key!r} from {url}: the server sent it with {header}: {value} although "
                f"berg asks for the bytes as stored (Accept-Encoding: identity), which the size "
                f"and checksum describe. Use a server or mirror (or proxy) that does not compress."
            )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number
        port = -1
    return parts.scheme, (parts.hostname or "").lower(), port


def _origin_text(url: str) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def _same_server(url: str, target: str) -> bool:
    """Whether a redirect from *url* to *target* stays on the same server."""
    scheme, host, port = _origin(url)
    new_scheme, new_host, new_port = _origin(target)
    if not host or new_host != host:
        return False
    if new_scheme == scheme:
        return new_port == port
    return (scheme, new_scheme, port, new_port) == ("http", "https", 80, 443)


def _with_retries(call: Any, key: str, url: str, retries: int, backoff: float) -> Any:
    failures = 0
    while True:
        try:
            return call()
        except _TransientError as exc:
            failures += 1
            if failures > retries:
                error = ServerUnreachableError if _is_connect_failure(exc) else ModelLoadError
                raise error(f"could not reach {url} (key {key!r}): {exc}") from None
            delay = _delay(backoff, failures, exc.retry_after)
            log.info("%s: %s; retry %d of %d in %.1f s", key, exc, failures, retries, delay)
            time.sleep(delay)


def _delay(backoff: float, failures: int, retry_after: float | None) -> float:
    if backoff <= 0:
        return 0.0
    delay = backoff * 2 ** (failures - 1) * random.uniform(1.0, 1.25)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, _MAX_DELAY)


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: use our own backoff


def _int_header(response: Any, name: str) -> int | None:
    """The header *name* as a non-negative integer; None if absent or not one."""
    value = (response.headers.get(name) or "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def total_size(sizes: Iterable[int | None]) -> int | None:
    """Sum of *sizes*, or None if any is unknown."""
    total = 0
    for size in sizes:
        if size is None:
            return None
        total += size
    return total
