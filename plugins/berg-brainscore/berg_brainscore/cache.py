"""The fitted regression of one model x region, stored as plain arrays under ``berg_dir``.

The reference toolkit pickles Brain-Score's ``XarrayRegression`` object, which runs code when
loaded and breaks when Brain-Score's classes change. berg stores what prediction needs, as plain
arrays in an ``.npz`` file read with ``allow_pickle=False``:

* ``x_mean`` (features,), ``coef`` (neuroids, features) and ``intercept`` (neuroids,): the fitted
  ``sklearn.cross_decomposition.PLSRegression``'s ``_x_mean``, ``coef_`` and ``intercept_``;
* ``neuroid_id`` and ``neuroid_region`` (neuroids,): which neuroid each column is;
* ``time_bins`` (bins, 2): the benchmark's time bins, in ms;
* ``info``: a JSON string with the cache key (:data:`KEY_FIELDS`: model, region, benchmark,
  layer, versions) and provenance.

:func:`predict` is ``PLSRegression.predict`` of scikit-learn 1.5 written out: centre ``X`` by
``x_mean`` in ``X``'s own float dtype, then ``X @ coef.T + intercept``. (With ``scale=False``,
``x_std`` is 1 and ``coef_`` already includes it, so it is not stored.) The result equals
Brain-Score's ``XarrayRegression.predict`` bit for bit; the tests check it.

Writes are atomic (a temporary file in the same folder, then :func:`os.replace`), and
:func:`load_or_fit` holds a file lock while fitting, so two processes asking for the same
regression fit it once and both read one intact file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT",
    "KEY_FIELDS",
    "CacheMismatchError",
    "Regression",
    "cache_path",
    "load_or_fit",
    "predict",
    "read",
    "write",
]

_logger = logging.getLogger("berg_brainscore")

#: Version of the file layout; a file of another version is refitted.
FORMAT = 1
#: ``info`` entries that must equal the current ones for a cached file to be used.
KEY_FIELDS = (
    "format",
    "model_identifier",
    "model_revision",
    "region",
    "layer",
    "benchmark",
    "n_components",
    "scale",
    "brainscore_vision",
    "brainscore_core",
    "scikit_learn",
)
_ARRAYS = ("x_mean", "coef", "intercept", "neuroid_id", "neuroid_region", "time_bins")


class CacheMismatchError(Exception):
    """A cached regression cannot be used (missing, unreadable, or fitted under another key)."""


@dataclass
class Regression:
    """A fitted PLS regression from one model layer to one region's neuroids.

    Attributes
    ----------
    x_mean : numpy.ndarray
        ``float64`` (features,): mean of the training activations.
    coef : numpy.ndarray
        ``float64`` (neuroids, features).
    intercept : numpy.ndarray
        ``float64`` (neuroids,).
    neuroid_id : numpy.ndarray
        ``str`` (neuroids,): the benchmark's ``neuroid_id`` of each output column.
    neuroid_region : numpy.ndarray
        ``str`` (neuroids,): the region of each neuroid.
    time_bins : numpy.ndarray
        ``int64`` (bins, 2): start and end (ms) of each time bin recorded.
    info : dict
        JSON-serialisable key and provenance (see :data:`KEY_FIELDS`).
    """

    x_mean: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    neuroid_id: np.ndarray
    neuroid_region: np.ndarray
    time_bins: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check()

    @property
    def n_features(self) -> int:
        """Width of the layer's activations."""
        return int(self.x_mean.shape[0])

    @property
    def n_neuroids(self) -> int:
        """Number of output columns."""
        return int(self.coef.shape[0])

    def time_bin_list(self) -> list[tuple[int, int]]:
        """The time bins as Brain-Score takes them: a list of ``(start, end)`` tuples."""
        return [(int(start), int(end)) for start, end in self.time_bins]

    def check(self) -> None:
        """Raise :class:`ValueError` unless the arrays have consistent shapes and dtypes."""
        n, f = self.coef.shape if self.coef.ndim == 2 else (-1, -1)
        problems = []
        if self.coef.ndim != 2:
            problems.append(f"coef has shape {self.coef.shape}, expected (neuroids, features)")
        if self.x_mean.shape != (f,):
            problems.append(f"x_mean has shape {self.x_mean.shape}, expected ({f},)")
        for name in ("intercept", "neuroid_id", "neuroid_region"):
            if getattr(self, name).shape != (n,):
                problems.append(f"{name} has shape {getattr(self, name).shape}, expected ({n},)")
        if self.time_bins.ndim != 2 or self.time_bins.shape[1] != 2 or not len(self.time_bins):
            problems.append(f"time_bins has shape {self.time_bins.shape}, expected (bins, 2)")
        for name in ("x_mean", "coef", "intercept"):
            if getattr(self, name).dtype.kind != "f":
                problems.append(f"{name} has dtype {getattr(self, name).dtype}, expected floats")
        if problems:
            raise ValueError("; ".join(problems))


def cache_path(berg_dir: Path, identifier: str, roi: str) -> Path:
    """Where the regression of model *identifier* for *roi* is stored under *berg_dir*."""
    return (
        Path(berg_dir)
        / "encoding_models"
        / "modality-ephys"
        / "train_dataset-brainscore_vision"
        / f"model-{identifier}"
        / "encoding_models_weights"
        / f"{identifier}_{roi}_regression.npz"
    )


def predict(regression: Regression, activations: np.ndarray) -> np.ndarray:
    """Predict neuroid responses, exactly as scikit-learn 1.5's ``PLSRegression.predict`` does.

    Parameters
    ----------
    regression : Regression
        The fitted regression.
    activations : numpy.ndarray
        (stimuli, features) activations of the committed layer, in the feature order of the fit.

    Returns
    -------
    numpy.ndarray
        ``float64`` (stimuli, neuroids).
    """
    float_dtypes = (np.float64, np.float32, np.float16)
    dtype = activations.dtype if activations.dtype in float_dtypes else np.float64
    x = np.array(activations, dtype=dtype, copy=True)  # sklearn: check_array(copy=True)
    if x.ndim != 2 or x.shape[1] != regression.n_features:
        raise ValueError(
            f"activations have shape {x.shape}; the regression expects (stimuli, "
            f"{regression.n_features})"
        )
    x -= regression.x_mean  # in x's dtype, as sklearn's in-place centring
    return x @ regression.coef.T + regression.intercept


def write(path: Path, regression: Regression) -> None:
    """Write *regression* to *path* atomically (the old file, if any, is replaced whole)."""
    regression.check()
    path.parent.mkdir(parents=True, exist_ok=True)
    # the arrays' memory layout is kept (np.save records Fortran order): sklearn's coef_ is
    # Fortran-ordered, and the BLAS product of a reordered copy can differ in the last bit
    arrays = {name: np.asarray(getattr(regression, name)) for name in _ARRAYS}
    for name in ("neuroid_id", "neuroid_region"):
        arrays[name] = arrays[name].astype(str)  # fixed-width unicode: no pickle needed
    arrays["info"] = np.array(json.dumps(regression.info, sort_keys=True))
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read(path: Path, expected: Mapping[str, Any] | None = None) -> Regression:
    """Read a regression written by :func:`write`.

    Parameters
    ----------
    path : Path
        The ``.npz`` file.
    expected : mapping, optional
        The current key; every :data:`KEY_FIELDS` entry in it must match the file's.

    Raises
    ------
    CacheMismatchError
        The file is missing, unreadable, malformed, or was fitted under another key. The
        message says which.
    """
    if not path.is_file():
        raise CacheMismatchError(f"no cached regression at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in (*_ARRAYS, "info") if name not in data.files]
            if missing:
                raise CacheMismatchError(f"{path} lacks {', '.join(missing)}")
            arrays = {name: data[name] for name in _ARRAYS}
            info = json.loads(str(data["info"][()]))
        if not isinstance(info, dict):
            raise CacheMismatchError(f"{path}: info is a {type(info).__name__}, not a dict")
        regression = Regression(**arrays, info=info)
    except CacheMismatchError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise CacheMismatchError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from None
    for name in KEY_FIELDS if expected is not None else ():
        if name in expected and info.get(name) != expected[name]:
            raise CacheMismatchError(
                f"{path} was fitted with {name} = {info.get(name)!r}, now {expected[name]!r}"
            )
    return regression


def load_or_fit(
    path: Path,
    key: Mapping[str, Any],
    fit: Callable[[], Regression],
    *,
    lock_timeout: float = -1,
) -> tuple[Regression, bool]:
    """Return the cached regression at *path* if it matches *key*, else fit, store and return it.

    A stale, mismatching or unreadable cache is refitted (with a :class:`RuntimeWarning` saying
    why), never trusted. Fitting holds ``<path>.lock``: a second process asking for the same
    regression waits, then reads the file the first one wrote.

    Parameters
    ----------
    path : Path
        The cache file (:func:`cache_path`).
    key : mapping
        The current values of :data:`KEY_FIELDS`; stored in the file's ``info``.
    fit : callable
        Fits the regression (slow); its ``info`` is updated with *key* before writing.
    lock_timeout : float
        Seconds to wait for another process's fit (-1: as long as it takes).

    Returns
    -------
    (Regression, bool)
        The regression, and whether it was fitted by this call.
    """
    from filelock import FileLock

    try:
        return read(path, key), False
    except CacheMismatchError as first_reason:
        reason = first_reason
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=lock_timeout):
        try:  # another process may have written it while we waited for the lock
            return read(path, key), False
        except CacheMismatchError as exc:
            reason = exc
        if path.exists():
            warnings.warn(f"berg-brainscore: refitting, because {reason}", RuntimeWarning, 2)
        _logger.info("fitting %s (%s)", path.name, reason)
        regression = fit()
        regression.info = {**regression.info, **dict(key)}
        write(path, regression)
    return regression, True
