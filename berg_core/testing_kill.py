"""Test kit for whole-or-nothing writers: run one in a child process, kill it at a chosen point.

A test hands :func:`start_script` a small Python script that patches the writer so that it
creates a marker file at the moment of interest (half a file written, between two renames, after
the first batch ...) and then sleeps; :func:`wait_for_marker` waits for that file, and
:func:`kill9` ends the writer as ``kill -9`` would. :func:`kill_at_marker` does all three::

    from berg_core.testing_kill import kill_at_marker

    writer = kill_at_marker(WRITER, out, marker, 2, marker=marker)
    assert not out.exists()  # the killed write left nothing under the final name

Standard library only (the test plugins and berg-core's tests share it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["kill9", "kill_at_marker", "start_script", "wait_for_marker", "writer_env"]


def writer_env(**overrides: str) -> dict[str, str]:
    """This process's environment with one BLAS/OpenMP thread (and *overrides*)."""
    return dict(os.environ, OMP_NUM_THREADS="1", **overrides)


def start_script(
    script: str, *args: object, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Run *script* (dedented) with ``sys.argv[1:] == [str(a) for a in args]``.

    Parameters
    ----------
    script : str
        Python source.
    *args : object
        Its arguments.
    env : mapping, optional
        Its environment (default :func:`writer_env`).

    Returns
    -------
    subprocess.Popen
        The child, with its stdout and stderr piped (text).
    """
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        env=dict(env) if env is not None else writer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_marker(marker: Path, process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait until *marker* exists; fail if *process* ends first or *timeout* seconds pass.

    Raises
    ------
    AssertionError
        The process ended before creating the marker (its output in the message), or the time
        ran out.
    """
    deadline = time.monotonic() + timeout
    while not Path(marker).exists():
        if process.poll() is not None:
            raise AssertionError(f"writer ended early: {process.communicate()}")
        if time.monotonic() >= deadline:
            process.kill()
            process.communicate()
            raise AssertionError(f"the writer never reached the marker {marker} in {timeout} s")
        time.sleep(0.02)


def kill9(process: subprocess.Popen[str]) -> None:
    """``kill -9`` *process* and reap it (checks that SIGKILL is what ended it)."""
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, process.returncode


def kill_at_marker(
    script: str,
    *args: object,
    marker: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.Popen[str]:
    """:func:`start_script`, :func:`wait_for_marker` on *marker*, then :func:`kill9`.

    Returns
    -------
    subprocess.Popen
        The killed (and reaped) process, for its ``pid``.
    """
    process = start_script(script, *args, env=env)
    wait_for_marker(marker, process, timeout)
    kill9(process)
    return process
