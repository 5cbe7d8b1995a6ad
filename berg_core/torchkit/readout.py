"""The linear readout of the reference encoding models, in float32 torch on the model's device.

The reference toolkit maps backbone features to responses with three scikit-learn objects in a
row: ``StandardScaler`` -> ``PCA`` -> ``astype(float32)`` -> ``LinearRegression`` (one regression
per output, e.g. per hemisphere). :class:`LinearReadout` rebuilds them from the saved attribute
dicts and computes, for a feature matrix ``X`` of shape ``(B, D)``::

    Z = ((X - scaler.mean_) / scaler.scale_ - pca.mean_) @ pca.components_.T     # (B, k)
    Y = Z @ reg.coef_[rows].T + reg.intercept_[rows]                             # (B, n_rows)

with every operation in float32. The scaler is deliberately not folded into the PCA matrix:
``components_ / scale_`` multiplies large and tiny numbers and loses float32 precision. Only the
rows (outputs) a selection keeps are held in memory; with memory-mapped weights only those rows
are read from disk, and on the CPU float32 weights are used in place, not copied.

The readouts are pure: they never write to the features they are given. The standardising is done
on :data:`CHUNK_COLUMNS` feature columns at a time in a small buffer of the readout's own, each
chunk's PCA product accumulated into ``Z`` (the summation order is fixed by the chunking, not by
the batch, so a response does not depend on which images share its batch); with features that
require a gradient, the plain autograd expression is used instead.

:class:`StackedReadout` stacks several scaler -> PCA -> regression readouts that share one scaler
into one output (THINGS EEG2's one PCA and regression per repetition).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from berg_core.checks import Location, require_array, require_indices, require_mapping
from berg_core.safe_npy import read_rows

__all__ = [
    "CHUNK_COLUMNS",
    "PCA_KEYS",
    "REGRESSION_KEYS",
    "SCALER_KEYS",
    "USED_KEYS",
    "LinearReadout",
    "MatrixReadout",
    "StackedReadout",
    "project",
]

#: Feature columns standardised at a time (a ``(B, CHUNK_COLUMNS)`` float32 buffer: 26 MB for
#: 50 images), so that standardising never copies the whole ``(B, D)`` feature matrix. Narrower
#: chunks make the PCA product slow: with 16,384 columns it took 1.1-2.4x the CPU time of one
#: whole-width product on 2 threads (NSD's D = 205,672, k = 250, 50 images; the more, the busier
#: the machine: every chunk synchronises the threads), with 131,072 0.7-1.1x
#: (``benchmarks/readout_chunks.py``).
CHUNK_COLUMNS = 131072

#: Keys the reference toolkit saves for each scikit-learn object (berg-train writes all of them).
#: The readout reads only :data:`USED_KEYS`; the others are accepted and ignored.
SCALER_KEYS = ("scale_", "mean_", "var_", "n_features_in_", "n_samples_seen_")
PCA_KEYS = (
    "components_",
    "explained_variance_",
    "explained_variance_ratio_",
    "singular_values_",
    "mean_",
    "n_components_",
    "n_samples_",
    "noise_variance_",
    "n_features_in_",
)
REGRESSION_KEYS = ("coef_", "intercept_", "n_features_in_")
#: The keys the readout reads from each dict, and therefore requires.
USED_KEYS = {
    "scaler_param": ("mean_", "scale_"),
    "pca_param": ("components_", "mean_"),
    "reg_param": ("coef_", "intercept_"),
}


def _float32(array: np.ndarray) -> np.ndarray:
    """*array* (checked to be floating-point) as contiguous float32, copied only if needed."""
    return np.ascontiguousarray(array, dtype=np.float32)


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``torch.from_numpy(array).to(device)``, sharing read-only arrays instead of copying them.

    Weights files are memory-mapped read-only (:mod:`berg_core.safe_npy`); the readout never
    writes its weights, so on the CPU the tensor simply uses the mapped pages. torch's warning
    about non-writable arrays is kept from users without using up its once-per-process slot.
    """
    if array.flags.writeable:
        return torch.from_numpy(array).to(device)
    warn_always = torch.is_warn_always_enabled()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        torch.set_warn_always(True)  # warn (filtered) now rather than spend the warn-once
        try:
            return torch.from_numpy(array).to(device)
        finally:
            torch.set_warn_always(warn_always)


def _finite_vector(value: Any, where: Location, dim: int, *, nonzero: bool = False) -> np.ndarray:
    """A ``(dim,)`` floating-point vector of finite values (non-zero ones if *nonzero*), float32.

    These vectors are small (one value per feature), so their values are checked: a NaN or a
    zero ``scale_`` would turn every response into NaN or infinity.
    """
    array = require_array(value, where, kind="floating", shape=(dim,))
    bad = ~np.isfinite(array)
    if nonzero:
        bad |= array == 0
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        allowed = "finite non-zero values" if nonzero else "finite values"
        raise where.error(
            f"an array holding {array[position].item()!r} at position {position}", allowed
        )
    return _float32(array)


def _checked_scaler(scaler_param: Any, where: Location, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean_, scale_)`` of a ``StandardScaler`` dict, ``(dim,)`` float32, checked."""
    scaler = require_mapping(scaler_param, where, USED_KEYS["scaler_param"])
    mean = _finite_vector(scaler["mean_"], where["mean_"], dim)
    return mean, _finite_vector(scaler["scale_"], where["scale_"], dim, nonzero=True)


def _checked_pca(
    pca_param: Any, where: Location, feature_dim: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(components_ (k, D), mean_ (D,))`` of a ``PCA`` dict, checked (components unread)."""
    pca = require_mapping(pca_param, where, USED_KEYS["pca_param"])
    components = require_array(
        pca["components_"], where["components_"], kind="floating", shape=(None, feature_dim)
    )
    return components, _finite_vector(pca["mean_"], where["mean_"], components.shape[1])


def _checked_regression(
    params: Any, where: Location, k: int, size: int | None, rows: Any, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(coef_ (n, k), intercept_ (n,))`` of a ``LinearRegression`` dict, the kept *rows* only."""
    reg = require_mapping(params, where, USED_KEYS["reg_param"])
    coef = require_array(reg["coef_"], where["coef_"], kind="floating", shape=(size, k))
    intercept = require_array(
        reg["intercept_"], where["intercept_"], kind="floating", shape=coef.shape[:1]
    )
    if rows is not None:
        rows = require_indices(
            rows, Location("the selection", f"rows of {name!r}"), size=coef.shape[0]
        )
        coef = read_rows(coef, rows)  # from a memory-mapped file: only these rows
        intercept = read_rows(intercept, rows)
    return _float32(coef), _float32(intercept)


def project(
    features: torch.Tensor,
    scaler_mean: torch.Tensor,
    scaler_scale: torch.Tensor,
    pcas: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> list[torch.Tensor]:
    """``((X - scaler_mean) / scaler_scale - pca_mean) @ components.T`` for each PCA, purely.

    *features* ``(B, D)`` is not modified. Without a gradient to track, the standardising runs on
    :data:`CHUNK_COLUMNS` columns at a time in one buffer (shared by the PCAs), each chunk's
    product accumulated into the ``(B, k)`` results; with one, the plain expression (autograd).

    Parameters
    ----------
    features : torch.Tensor
        ``(B, D)`` float32.
    scaler_mean, scaler_scale : torch.Tensor
        ``(D,)`` float32.
    pcas : sequence of (torch.Tensor, torch.Tensor)
        ``(pca_mean (D,), components (k, D))`` per PCA.

    Returns
    -------
    list of torch.Tensor
        One ``(B, k)`` float32 tensor per PCA.
    """
    if features.requires_grad and torch.is_grad_enabled():
        scaled = (features - scaler_mean) / scaler_scale
        return [(scaled - mean) @ components.T for mean, components in pcas]
    n, dim = features.shape
    results = [features.new_zeros((n, int(components.shape[0]))) for _, components in pcas]
    width = min(CHUNK_COLUMNS, dim)
    scaled = features.new_empty((n, width))
    centred = features.new_empty((n, width)) if len(pcas) > 1 else scaled
    for start in range(0, dim, width):
        stop = min(start + width, dim)
        part = slice(start, stop)
        s = scaled[:, : stop - start]
        torch.sub(features[:, part], scaler_mean[part], out=s)
        s.div_(scaler_scale[part])
        for z, (mean, components) in zip(results, pcas, strict=True):
            c = centred[:, : stop - start]
            torch.sub(s, mean[part], out=c)
            z.addmm_(c, components[:, part].T)
    return results


class LinearReadout:
    """Scaler -> PCA -> float32 -> one linear regression per named output, on a torch device.

    Build it with :meth:`from_params`. Calling it on a ``(B, D)`` feature matrix returns one
    ``(B, n_rows)`` float32 tensor per output.

    Parameters
    ----------
    scaler_mean, scaler_scale, pca_mean : torch.Tensor
        ``(D,)`` float32.
    components : torch.Tensor
        ``(k, D)`` float32.
    heads : dict of str to (torch.Tensor, torch.Tensor)
        Output name -> (``coef`` ``(n_rows, k)``, ``intercept`` ``(n_rows,)``), float32.
    """

    def __init__(
        self,
        scaler_mean: torch.Tensor,
        scaler_scale: torch.Tensor,
        pca_mean: torch.Tensor,
        components: torch.Tensor,
        heads: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        self.scaler_mean = scaler_mean
        self.scaler_scale = scaler_scale
        self.pca_mean = pca_mean
        self.components = components
        self.heads = dict(heads)

    @property
    def feature_dim(self) -> int:
        """Number of input features D."""
        return int(self.components.shape[1])

    @property
    def n_components(self) -> int:
        """Number of PCA components k."""
        return int(self.components.shape[0])

    def output_sizes(self) -> tuple[int, ...]:
        """Number of rows kept for each output, in head order."""
        return tuple(int(coef.shape[0]) for coef, _ in self.heads.values())

    @classmethod
    def from_params(
        cls,
        scaler_param: Mapping[str, Any],
        pca_param: Mapping[str, Any],
        regressions: Mapping[str, tuple[Mapping[str, Any], np.ndarray | None]],
        device: torch.device,
        *,
        source: str | Location = "weights file",
        reg_keys: Mapping[str, str] | None = None,
        feature_dim: int | None = None,
        n_rows: Mapping[str, int] | None = None,
    ) -> LinearReadout:
        """Build the readout from the attribute dicts the reference toolkit saves.

        Every array is checked before use (dtype kind, number of dimensions, sizes consistent
        with each other and with *feature_dim* / *n_rows*) without reading the large ones; the
        ``(D,)`` vectors are also checked for finite values and a non-zero ``scale_``. Only the
        keys of :data:`USED_KEYS` are required; others (the rest of what scikit-learn saves) are
        ignored.

        Parameters
        ----------
        scaler_param : mapping
            ``StandardScaler`` attributes: floating-point ``mean_`` and ``scale_``, ``(D,)``.
        pca_param : mapping
            ``PCA`` attributes: floating-point ``components_`` ``(k, D)`` and ``mean_`` ``(D,)``.
        regressions : mapping of str to (mapping, array or None)
            Output name -> (``LinearRegression`` attributes: floating-point ``coef_`` ``(n, k)``
            and ``intercept_`` ``(n,)``; the rows to keep as an integer index array, or ``None``
            for all). The order of the mapping is the order of the outputs.
        device : torch.device
            Where the readout computes.
        source : str or Location
            Where the dicts came from, for error messages: a file (its dicts are then named
            ``weights['scaler_param']``, ...) or the :class:`~berg_core.checks.Location` of the
            dict holding them.
        reg_keys : mapping of str to str, optional
            Key of each output's regression dict in that dict (default ``<name>_reg_param``).
        feature_dim : int, optional
            The number of features D the model's backbone gives (checked against the weights).
        n_rows : mapping of str to int, optional
            The number of rows ``coef_`` must have for each output (the model's output size).

        Returns
        -------
        LinearReadout

        Raises
        ------
        ModelLoadError
            If a dict or key is missing, or an array has the wrong type, dtype or shape; the
            message names the file and the key path.
        """
        root = source if isinstance(source, Location) else Location(source, "weights")
        components, pca_mean = _checked_pca(pca_param, root["pca_param"], feature_dim)
        k, dim = components.shape
        scaler_mean, scaler_scale = _checked_scaler(scaler_param, root["scaler_param"], dim)
        heads = {}
        for name, (params, rows) in regressions.items():
            reg_at = root[(reg_keys or {}).get(name, f"{name}_reg_param")]
            size = None if n_rows is None else n_rows[name]
            coef, intercept = _checked_regression(params, reg_at, k, size, rows, name)
            heads[name] = (_tensor(coef, device), _tensor(intercept, device))
        return cls(
            scaler_mean=_tensor(scaler_mean, device),
            scaler_scale=_tensor(scaler_scale, device),
            pca_mean=_tensor(pca_mean, device),
            components=_tensor(_float32(components), device),
            heads=heads,
        )

    def __call__(
        self, features: torch.Tensor, out: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Responses for a feature matrix.

        Parameters
        ----------
        features : torch.Tensor
            ``(B, D)`` float32 on the readout's device; never modified (:func:`project`).
        out : sequence of torch.Tensor, optional
            One ``(B, n_rows)`` float32 tensor per output, on the readout's device, to write the
            responses into (e.g. views of preallocated result arrays).

        Returns
        -------
        tuple of torch.Tensor
            One ``(B, n_rows)`` float32 tensor per output, in head order (*out* when given).
        """
        if features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"features have {features.shape[-1]} columns; the readout expects "
                f"{self.feature_dim}"
            )
        (z,) = project(
            features, self.scaler_mean, self.scaler_scale, [(self.pca_mean, self.components)]
        )
        heads = self.heads.values()
        if out is None:
            return tuple(torch.addmm(intercept, z, coef.T) for coef, intercept in heads)
        for target, (coef, intercept) in zip(out, heads, strict=True):
            torch.addmm(intercept, z, coef.T, out=target)
        return tuple(out)

    def release(self) -> None:
        """Drop every tensor (after this the readout cannot run)."""
        empty = torch.empty(0)
        self.scaler_mean = self.scaler_scale = self.pca_mean = self.components = empty
        self.heads = {}


class StackedReadout:
    """One output stacked from scaler -> PCA_r -> regression_r readouts sharing one scaler.

    For a ``(B, D)`` feature matrix ``X`` and each part ``r`` (THINGS EEG2: each repetition)::

        S   = (X - scaler.mean_) / scaler.scale_                  # once, shared by the parts
        Z_r = (S - pca_r.mean_) @ pca_r.components_.T             # (B, k_r)
        Y_r = Z_r @ reg_r.coef_[rows].T + reg_r.intercept_[rows]  # (B, n_rows)

    and the output is ``[Y_1, ..., Y_R]`` side by side, ``(B, R * n_rows)``: the C-order
    flattening of ``(R, *shape)``, the stacked dim first. Each part's PCA and regression are its
    own tensors, built from its own dicts, so no part can reuse another's (the reference's
    "stale PCA" bug, docs/compatibility.md); parts given the same PCA dict object share one
    projection. It has the readout interface :class:`~berg_core.torchkit.FeatureReadoutModel`
    runs (``heads``, ``feature_dim``, ``output_sizes()``, call, ``release()``), with one head.
    Build it with :meth:`from_params`.

    Parameters
    ----------
    name : str
        The output's name.
    scaler_mean, scaler_scale : torch.Tensor
        ``(D,)`` float32.
    pcas : sequence of (torch.Tensor, torch.Tensor)
        Distinct PCAs: ``(mean (D,), components (k, D))``.
    parts : sequence of (int, torch.Tensor, torch.Tensor)
        In stacking order: (index into *pcas*, ``coef`` ``(n_rows, k)``, ``intercept``
        ``(n_rows,)``).
    """

    def __init__(
        self,
        name: str,
        scaler_mean: torch.Tensor,
        scaler_scale: torch.Tensor,
        pcas: Sequence[tuple[torch.Tensor, torch.Tensor]],
        parts: Sequence[tuple[int, torch.Tensor, torch.Tensor]],
    ) -> None:
        sizes = {int(coef.shape[0]) for _, coef, _ in parts}
        if len(sizes) != 1:
            raise ValueError(f"the stacked parts keep different numbers of rows: {sorted(sizes)}")
        self.scaler_mean = scaler_mean
        self.scaler_scale = scaler_scale
        self.pcas = list(pcas)
        self.parts = list(parts)
        self.n_rows = sizes.pop()
        self.heads: dict[str, Any] = {name: self.parts}

    @property
    def n_stacked(self) -> int:
        """Number of stacked parts R."""
        return len(self.parts)

    @property
    def feature_dim(self) -> int:
        """Number of input features D."""
        return int(self.scaler_mean.shape[0])

    def output_sizes(self) -> tuple[int, ...]:
        """``(R * n_rows,)``."""
        return (self.n_stacked * self.n_rows,)

    @classmethod
    def from_params(
        cls,
        name: str,
        scaler_param: Mapping[str, Any],
        pcas: Sequence[Mapping[str, Any]],
        regressions: Sequence[Mapping[str, Any]],
        device: torch.device,
        *,
        rows: np.ndarray | None = None,
        source: str | Location = "weights file",
        pca_at: Sequence[Location] | None = None,
        reg_at: Sequence[Location] | None = None,
        feature_dim: int | None = None,
        n_rows: int | None = None,
    ) -> StackedReadout:
        """Build the readout from the reference's attribute dicts, one PCA and regression a part.

        Every array is checked as :meth:`LinearReadout.from_params` checks it.

        Parameters
        ----------
        name : str
            The output's name.
        scaler_param : mapping
            The shared ``StandardScaler`` attributes (``mean_``, ``scale_``).
        pcas, regressions : sequence of mapping
            One ``PCA`` and one ``LinearRegression`` attribute dict per part, in stacking order.
            The same PCA dict object given for several parts is checked and projected once.
        device : torch.device
            Where the readout computes.
        rows : array, optional
            The rows of every regression to keep (integer indices); ``None``: all.
        source : str or Location
            The file, for messages (default locations ``weights['pca_param']``,
            ``weights['reg_param']``).
        pca_at, reg_at : sequence of Location, optional
            For messages: where each part's PCA and regression dicts are in the file.
        feature_dim : int, optional
            Features the backbone gives (checked against the weights).
        n_rows : int, optional
            Rows every regression must have (the output's full size without the stacked dim).

        Returns
        -------
        StackedReadout

        Raises
        ------
        ModelLoadError
            A missing dict or key, or an array of the wrong kind or shape (naming the file and
            the key path).
        """
        if len(pcas) != len(regressions) or not pcas:
            raise ValueError(
                f"StackedReadout needs one PCA per regression; got {len(pcas)} and "
                f"{len(regressions)}"
            )
        root = source if isinstance(source, Location) else Location(source, "weights")
        pca_at = pca_at or [root["pca_param"]] * len(pcas)
        reg_at = reg_at or [root["reg_param"]] * len(regressions)
        distinct: list[tuple[np.ndarray, np.ndarray]] = []
        seen: dict[int, int] = {}
        parts = []
        for pca, pca_where, reg, reg_where in zip(pcas, pca_at, regressions, reg_at, strict=True):
            if id(pca) not in seen:
                components, mean = _checked_pca(pca, pca_where, feature_dim)
                feature_dim = int(components.shape[1])
                seen[id(pca)] = len(distinct)
                distinct.append((mean, components))
            index = seen[id(pca)]
            k = int(distinct[index][1].shape[0])
            coef, intercept = _checked_regression(reg, reg_where, k, n_rows, rows, name)
            parts.append((index, _tensor(coef, device), _tensor(intercept, device)))
        mean, scale = _checked_scaler(scaler_param, root["scaler_param"], int(feature_dim))
        return cls(
            name,
            _tensor(mean, device),
            _tensor(scale, device),
            [(_tensor(m, device), _tensor(_float32(c), device)) for m, c in distinct],
            parts,
        )

    def __call__(
        self, features: torch.Tensor, out: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``(B, R * n_rows)`` float32 responses; *features* ``(B, D)`` is not modified.

        *out*, when given, holds one ``(B, R * n_rows)`` float32 tensor to write into.
        """
        if features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"features have {features.shape[-1]} columns; the readout expects "
                f"{self.feature_dim}"
            )
        if out is None and features.requires_grad and torch.is_grad_enabled():
            return self.differentiable_forward(features)
        z = project(features, self.scaler_mean, self.scaler_scale, self.pcas)
        result = (
            out[0]
            if out is not None
            else features.new_empty((features.shape[0], self.n_stacked * self.n_rows))
        )
        for r, (index, coef, intercept) in enumerate(self.parts):
            part = result[:, r * self.n_rows : (r + 1) * self.n_rows]
            torch.addmm(intercept, z[index], coef.T, out=part)
        return (result,)

    def differentiable_forward(self, features: torch.Tensor) -> tuple[torch.Tensor]:
        """The responses out of place (no in-place op, no ``out=``), for autograd."""
        scaled = (features - self.scaler_mean) / self.scaler_scale
        z = [(scaled - mean) @ components.T for mean, components in self.pcas]
        stacked = [torch.addmm(intercept, z[i], coef.T) for i, coef, intercept in self.parts]
        return (torch.cat(stacked, dim=1),)

    def release(self) -> None:
        """Drop every tensor (after this the readout cannot run)."""
        empty = torch.empty(0)
        self.scaler_mean = self.scaler_scale = empty
        self.pcas, self.parts = [], []
        self.heads = {name: [] for name in self.heads}


class MatrixReadout:
    """One plain linear map per named output: ``Y = X @ weight + bias``, float32 on a device.

    The readout for families that store a ready ``(D, n)`` weight matrix (and an ``(n,)`` bias)
    instead of the reference toolkit's scikit-learn attribute dicts. It has the interface of
    :class:`LinearReadout` (``heads``, ``feature_dim``, ``output_sizes()``, call, ``release()``),
    so :class:`~berg_core.torchkit.FeatureReadoutModel` runs either. Build it with
    :meth:`from_arrays`.

    Parameters
    ----------
    heads : dict of str to (torch.Tensor, torch.Tensor)
        Output name -> (``weight`` ``(D, n)``, ``bias`` ``(n,)``), float32, all with the same D.
    """

    def __init__(self, heads: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.heads = dict(heads)
        dims = {int(weight.shape[0]) for weight, _ in self.heads.values()}
        if len(dims) != 1:
            raise ValueError(f"every head needs the same number of features, got {sorted(dims)}")
        self._feature_dim = dims.pop()

    @property
    def feature_dim(self) -> int:
        """Number of input features D."""
        return self._feature_dim

    def output_sizes(self) -> tuple[int, ...]:
        """Number of columns kept for each output, in head order."""
        return tuple(int(weight.shape[1]) for weight, _ in self.heads.values())

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, tuple[Any, Any]],
        device: torch.device,
        *,
        source: str | Location = "readout arrays",
        feature_dim: int | None = None,
        n_columns: Mapping[str, int | None] | None = None,
        columns: Mapping[str, np.ndarray | None] | None = None,
        keys: Mapping[str, tuple[str, str]] | None = None,
    ) -> MatrixReadout:
        """Build the readout from numpy arrays, checking them first.

        Parameters
        ----------
        arrays : mapping of str to (array, array)
            Output name -> (floating-point ``weight`` ``(D, n)``, floating-point ``bias``
            ``(n,)``), in output order.
        device : torch.device
            Where the readout computes.
        source : str or Location
            Where the arrays came from, for error messages (a file: its arrays are then named
            ``weights['<output>_weight']``, or as *keys* says).
        feature_dim : int, optional
            The number of features D the backbone gives (checked against ``weight``).
        n_columns : mapping of str to int or None, optional
            The number of columns ``weight`` must have for each output.
        columns : mapping of str to array or None, optional
            For each output, the columns to keep (integer indices; ``None``: all).
        keys : mapping of str to (str, str), optional
            For messages: the keys of each output's weight and bias in the source (default
            ``<output>_weight`` and ``<output>_bias``).

        Returns
        -------
        MatrixReadout

        Raises
        ------
        ModelLoadError
            An array that is not floating-point, of the wrong shape, or with non-finite bias
            values; the message names the source and the output.
        """
        root = source if isinstance(source, Location) else Location(source, "weights")
        heads = {}
        for name, (weight, bias) in arrays.items():
            weight_key, bias_key = (keys or {}).get(name, (f"{name}_weight", f"{name}_bias"))
            size = None if n_columns is None else n_columns.get(name)
            weight = require_array(
                weight, root[weight_key], kind="floating", shape=(feature_dim, size)
            )
            bias = _finite_vector(bias, root[bias_key], weight.shape[1])
            keep = None if columns is None else columns.get(name)
            if keep is not None:
                keep = require_indices(
                    keep, Location("the selection", f"columns of {name!r}"), size=weight.shape[1]
                )
                weight, bias = weight[:, keep], bias[keep]
            heads[name] = (_tensor(_float32(weight), device), _tensor(_float32(bias), device))
        return cls(heads)

    def __call__(
        self, features: torch.Tensor, out: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Responses for a ``(B, D)`` float32 feature matrix: one ``(B, n)`` tensor per output.

        *out*, when given, holds one ``(B, n)`` float32 tensor per output to write into.
        """
        if features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"features have {features.shape[-1]} columns; the readout expects "
                f"{self.feature_dim}"
            )
        heads = self.heads.values()
        if out is None:
            return tuple(torch.addmm(bias, features, weight) for weight, bias in heads)
        for target, (weight, bias) in zip(out, heads, strict=True):
            torch.addmm(bias, features, weight, out=target)
        return tuple(out)

    def release(self) -> None:
        """Drop every tensor (after this the readout cannot run)."""
        self.heads = {}
