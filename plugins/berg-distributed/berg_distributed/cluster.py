"""``--cluster`` values: parse them, and connect a Dask client to the cluster they name.

* ``local`` or ``local:N``: a :class:`distributed.LocalCluster` of N worker processes (default:
  the number of CPUs), one thread each, on this machine;
* ``tcp://HOST:PORT`` (or ``tls://``, ``ws://``, ``wss://``): a running Dask scheduler;
* ``slurm`` or ``slurm:CONFIG``: a :class:`dask_jobqueue.SLURMCluster`, configured by the YAML or
  JSON file CONFIG (default: ``$BERG_SLURM_CONFIG``, else dask's own ``jobqueue.slurm`` config),
  whose keys are ``SLURMCluster`` arguments plus ``jobs`` (how many jobs to start, default 1).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berg_core.errors import BergError, InvalidParameterError, describe_value

__all__ = [
    "DEFAULT_TIMEOUT",
    "SLURM_CONFIG_ENV",
    "TIMEOUT_ENV",
    "ClusterError",
    "ClusterSpec",
    "connect",
    "parse_cluster",
    "read_slurm_config",
    "slurm_cluster",
]

#: Seconds to wait for a scheduler to answer (``tcp://``) before giving up.
DEFAULT_TIMEOUT = 30.0
#: Environment variable overriding :data:`DEFAULT_TIMEOUT` (seconds, a positive number).
TIMEOUT_ENV = "BERG_CLUSTER_TIMEOUT"
#: Environment variable naming the SLURM config file of ``--cluster slurm``.
SLURM_CONFIG_ENV = "BERG_SLURM_CONFIG"

_ALLOWED = (
    "local, local:N (N worker processes), tcp://HOST:PORT (a running Dask scheduler), slurm or "
    "slurm:CONFIG.yaml"
)
_SCHEMES = ("tcp://", "tls://", "ws://", "wss://")


class ClusterError(BergError):
    """The cluster cannot be reached or started (a scheduler that does not answer in time)."""


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed ``--cluster`` value.

    Attributes
    ----------
    kind : {"local", "scheduler", "slurm"}
    workers : int or None
        ``local:N``: N; ``local``: None (one per CPU).
    address : str or None
        The scheduler address of ``tcp://...``.
    config : Path or None
        The config file of ``slurm:CONFIG``.
    """

    kind: str
    workers: int | None = None
    address: str | None = None
    config: Path | None = None


def parse_cluster(value: Any, parameter: str = "--cluster") -> ClusterSpec:
    """Parse a ``--cluster`` value.

    Raises
    ------
    InvalidParameterError
        Anything but the forms in the module docstring; the message names *parameter*, the value
        and the allowed forms.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameterError(
            f"{parameter} must be one of {_ALLOWED}; got {describe_value(value)}"
        )
    text = value.strip()
    kind, sep, rest = text.partition(":")
    if text.startswith(_SCHEMES):
        host = text.split("://", 1)[1]
        if not host or host.startswith(":"):
            raise InvalidParameterError(
                f"{parameter} {text!r}: a scheduler address needs a host, e.g. tcp://node01:8786"
            )
        return ClusterSpec("scheduler", address=text)
    if kind == "local":
        if not sep:
            return ClusterSpec("local")
        if not rest.isascii() or not rest.isdigit() or int(rest) < 1:
            raise InvalidParameterError(
                f"{parameter} {text!r}: local:N needs N, the number of workers, an integer >= 1"
            )
        return ClusterSpec("local", workers=int(rest))
    if kind == "slurm":
        if sep and not rest:
            raise InvalidParameterError(f"{parameter} {text!r}: give slurm or slurm:CONFIG.yaml")
        config = rest or os.environ.get(SLURM_CONFIG_ENV) or None
        return ClusterSpec("slurm", config=Path(config) if config else None)
    raise InvalidParameterError(f"{parameter} must be one of {_ALLOWED}; got {text!r}")


def _timeout(timeout: float | None) -> float:
    if timeout is not None:
        value: Any = timeout
        where = "timeout"
    else:
        value = os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT)
        where = f"${TIMEOUT_ENV}"
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise InvalidParameterError(
            f"{where} must be a positive number of seconds, got {describe_value(value)}"
        )
    return seconds


def read_slurm_config(path: Path) -> dict[str, Any]:
    """The ``SLURMCluster`` arguments (and ``jobs``) of a YAML or JSON config file.

    Raises
    ------
    InvalidParameterError
        A missing or unreadable file, or one that is not a mapping.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidParameterError(
            f"--cluster slurm:{path}: cannot read the config file ({exc.strerror or exc})"
        ) from None
    try:
        if path.suffix.lower() == ".json":
            config = json.loads(text)
        else:
            import yaml  # a dependency of dask

            config = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        raise InvalidParameterError(
            f"--cluster slurm:{path}: not valid YAML/JSON ({exc})"
        ) from None
    if not isinstance(config, dict):
        raise InvalidParameterError(
            f"--cluster slurm:{path}: the config must be a mapping of SLURMCluster arguments "
            f"(cores, memory, queue, walltime, ...) and jobs, got {describe_value(config)}"
        )
    jobs = config.get("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidParameterError(
            f"--cluster slurm:{path}: jobs must be an integer >= 1, got {describe_value(jobs)}"
        )
    return config


def slurm_cluster(config: Path | None) -> tuple[Any, int]:
    """A ``SLURMCluster`` (not yet scaled) and the number of jobs to start."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise InvalidParameterError(
            "--cluster slurm needs dask-jobqueue: pip install berg-distributed[slurm]"
        ) from None
    kwargs = read_slurm_config(config) if config is not None else {}
    jobs = kwargs.pop("jobs", 1)
    try:
        return SLURMCluster(**kwargs), jobs
    except (TypeError, ValueError) as exc:
        where = f"--cluster slurm:{config}" if config else "--cluster slurm (dask config)"
        raise InvalidParameterError(f"{where}: SLURMCluster refused the config ({exc})") from None


@contextlib.contextmanager
def connect(
    cluster: str | ClusterSpec, *, timeout: float | None = None, quiet: bool = False
) -> Iterator[Any]:
    """Start or reach the cluster *cluster* names; yield a :class:`distributed.Client`.

    A cluster started here (``local``, ``slurm``) is shut down when the block ends.

    Parameters
    ----------
    cluster : str or ClusterSpec
        A ``--cluster`` value (module docstring).
    timeout : float, optional
        Seconds to wait for the scheduler; default ``$BERG_CLUSTER_TIMEOUT`` or 30.
    quiet : bool
        Silence dask's logging below warnings.

    Raises
    ------
    InvalidParameterError
        A malformed value, or a bad SLURM config.
    ClusterError
        The scheduler did not answer within *timeout*.
    """
    spec = cluster if isinstance(cluster, ClusterSpec) else parse_cluster(cluster)
    seconds = _timeout(timeout)
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if spec.kind == "local":
            workers = spec.workers or os.cpu_count() or 1
            local = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=40 if quiet else 30,
                )
            )
            client = stack.enter_context(Client(local, timeout=seconds))
        elif spec.kind == "slurm":
            slurm, jobs = slurm_cluster(spec.config)
            stack.enter_context(slurm)
            slurm.scale(jobs=jobs)
            client = stack.enter_context(Client(slurm, timeout=seconds))
        else:
            try:
                client = Client(spec.address, timeout=seconds)
            except (OSError, TimeoutError) as exc:
                raise ClusterError(
                    f"--cluster {spec.address}: no Dask scheduler answered within {seconds:g} s "
                    f"({type(exc).__name__}: {exc}); start one with `dask scheduler` and "
                    f"`dask worker {spec.address}`, or raise ${TIMEOUT_ENV}"
                ) from None
            stack.enter_context(client)
        yield client
