"""Files written whole or not at all: check a target, write a temporary file, rename it last.

:func:`atomic_outputs` gives each target a unique temporary file in the target's own folder,
flushes it to disk and renames it to its final name only when the caller's block ends without an
error, so a reader never sees a half-written file under a final name and concurrent writers never
destroy each other's work; :func:`check_output_path` refuses a target that cannot be written before
any work is done. Every output berg writes (HDF5, GIFTI, NIfTI, metadata) goes through here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from berg_core.errors import InvalidParameterError, describe_value

__all__ = ["PART_SUFFIX", "atomic_outputs", "check_output_path", "fsync_path"]

#: Suffix of the temporary file an output is written to before its rename.
PART_SUFFIX = ".part"
#: Longest part of the target's name kept in a temporary name (file names are <= 255 bytes).
_NAME_IN_PART = 120


def _shown(path: str | os.PathLike[str]) -> str:
    return describe_value(os.fspath(path), limit=300)


def check_output_path(
    path: str | os.PathLike[str], *, force: bool, parameter: str = "output file"
) -> Path:
    """Check that *path* can be created as an output file, before any work is done.

    Parameters
    ----------
    path : path-like
        The file to write.
    force : bool
        Whether an existing file may be replaced.
    parameter : str
        How error messages name *path* (``"--out"`` on the command line).

    Returns
    -------
    Path
        *path* as a :class:`~pathlib.Path`.

    Raises
    ------
    InvalidParameterError
        If *path* is an existing directory, if one of its parents exists but is not a directory,
        if the nearest existing parent is not writable, or if *path* exists and *force* is false.
    """
    path = Path(path)
    if os.path.isdir(path):
        raise InvalidParameterError(
            f"{parameter} {_shown(path)} is a directory; give a file name (for example "
            f"{_shown(path / 'responses.h5')})"
        )
    for parent in path.parents:
        if not os.path.lexists(parent):
            continue
        if not os.path.isdir(parent):
            raise InvalidParameterError(
                f"{parameter} {_shown(path)}: its parent {_shown(parent)} is not a directory; "
                "give a path inside a directory"
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InvalidParameterError(
                f"{parameter} {_shown(path)}: the directory {_shown(parent)} is not writable"
            )
        break
    if os.path.lexists(path) and not force:
        raise InvalidParameterError(f"output file {path} exists; pass --force to overwrite it")
    return path


def _part_prefix(target: Path) -> str:
    return f".{target.name[:_NAME_IN_PART]}.berg-"


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "surrogatepass")).hexdigest()[:6]


def _create_part(target: Path) -> Path:
    """Create an empty, unique temporary file beside *target* (mode 0666 minus the umask)."""
    prefix = f"{_part_prefix(target)}{_host_tag()}-{os.getpid()}-"
    while True:
        part = target.with_name(f"{prefix}{secrets.token_hex(4)}{PART_SUFFIX}")
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
        os.close(fd)
        return part


def _remove_dead_parts(target: Path) -> list[Path]:
    """Delete temporary files of *target* left by writers that were killed (``kill -9``).

    Only files created on this host by a process id that no longer exists are removed; files of
    live writers, of other hosts, or with names berg did not make are left alone.
    """
    prefix = f"{_part_prefix(target)}{_host_tag()}-"
    removed = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(PART_SUFFIX)):
            continue
        pid_text = name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            (target.parent / name).unlink()
            removed.append(target.parent / name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):  # another user's process, or unknown
        return True
    return True


def fsync_path(path: Path) -> None:
    """Flush a file or a folder (a rename in it) to disk; a no-op where the system refuses."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # pragma: no cover - directories cannot be opened on some systems
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - fsync of a directory is refused on some file systems
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _directory_lock(folder: Path) -> Iterator[None]:
    """Serialise the renames of berg writers in *folder* (``flock``; a no-op where unavailable)."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):  # pragma: no cover - Windows, or a folder that cannot be opened
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class _Terminated(SystemExit):
    """SIGTERM received while writing: unwinds like an exception so temporary files are removed."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into an exception while the block runs (main thread, default handler only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (AttributeError, ValueError):  # pragma: no cover - no SIGTERM on this platform
        yield
        return
    if previous is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _claim(part: Path, target: Path, force: bool) -> None:
    """Give *part* the name *target*: replace it with *force*, else fail if it exists."""
    if force:
        os.replace(part, target)
        return
    try:
        os.link(part, target)  # atomic: fails if target appeared since it was checked
    except FileExistsError:
        raise InvalidParameterError(
            f"output file {target} exists; pass --force to overwrite it"
        ) from None
    except OSError:  # hard links unsupported here: check, then rename (a small race remains)
        if os.path.lexists(target):
            raise InvalidParameterError(
                f"output file {target} exists; pass --force to overwrite it"
            ) from None
        os.replace(part, target)


@contextlib.contextmanager
def atomic_outputs(
    targets: Sequence[str | os.PathLike[str]], *, force: bool
) -> Iterator[list[Path]]:
    """Write files whole or not at all: yield temporary paths, rename them to *targets* at the end.

    Each target gets an empty temporary file in its own folder, named
    ``.<name>.berg-<host>-<pid>-<random>.part``. The caller writes the temporary files; when the
    block ends without an exception they are flushed to disk (``fsync``) and renamed to their
    targets in the order given, under an exclusive lock on the folder so that two berg writers
    never interleave their renames. On any exception, ``KeyboardInterrupt`` and (in the main
    thread, when no other handler is installed) ``SIGTERM`` included, the temporary files are
    deleted and no target is touched. A ``kill -9`` can leave a ``.part`` file; the next write
    to the same target deletes those whose process no longer exists on this host.

    Parameters
    ----------
    targets : sequence of path-like
        Final names, renamed in this order (put last the file whose presence means "complete").
    force : bool
        Replace existing targets. Without it a target is claimed with a hard link, which fails
        if the file appeared meanwhile (no other writer's file is ever overwritten); where hard
        links are unsupported the check and the rename are two steps.

    Yields
    ------
    list of Path
        One temporary path per target.

    Raises
    ------
    InvalidParameterError
        A target is not a valid output path (see :func:`check_output_path`), its folder cannot
        be created, or, without *force*, it exists. Targets claimed before the failure are removed.
    """
    paths = [check_output_path(t, force=force) for t in targets]
    parts: list[Path] = []
    try:
        with _sigterm_unwinds():
            for target in paths:
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _remove_dead_parts(target)
                    parts.append(_create_part(target))
                except OSError as exc:
                    raise InvalidParameterError(
                        f"output file {_shown(target)}: cannot create a file there "
                        f"({exc.strerror or exc})"
                    ) from None
            yield list(parts)
            for part in parts:
                fsync_path(part)
            folders = sorted({t.parent for t in paths})
            with contextlib.ExitStack() as stack:
                for folder in folders:
                    stack.enter_context(_directory_lock(folder))
                claimed: list[Path] = []
                try:
                    for part, target in zip(parts, paths, strict=True):
                        _claim(part, target, force)
                        claimed.append(target)
                except BaseException:
                    if not force:  # ours: created by the link above, nobody else could replace it
                        for target in claimed:
                            with contextlib.suppress(OSError):
                                target.unlink()
                    raise
            for folder in folders:
                fsync_path(folder)
    finally:
        for part in parts:
            with contextlib.suppress(OSError):
                part.unlink()
