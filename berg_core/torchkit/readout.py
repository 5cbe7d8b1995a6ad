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
    "PCA_KEYS",
    "REGRESSION_KEYS",
    "SCALER_KEYS",
    "USED_KEYS",
    "LinearReadout",
    "MatrixReadout",
]

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
        scaler_at, pca_at = root["scaler_param"], root["pca_param"]
        scaler = require_mapping(scaler_param, scaler_at, USED_KEYS["scaler_param"])
        pca = require_mapping(pca_param, pca_at, USED_KEYS["pca_param"])
        components = require_array(
            pca["components_"], pca_at["components_"], kind="floating", shape=(None, feature_dim)
        )
        k, dim = components.shape
        scaler_mean = _finite_vector(scaler["mean_"], scaler_at["mean_"], dim)
        scaler_scale = _finite_vector(scaler["scale_"], scaler_at["scale_"], dim, nonzero=True)
        pca_mean = _finite_vector(pca["mean_"], pca_at["mean_"], dim)
        heads = {}
        for name, (params, rows) in regressions.items():
            reg_at = root[(reg_keys or {}).get(name, f"{name}_reg_param")]
            reg = require_mapping(params, reg_at, USED_KEYS["reg_param"])
            size = None if n_rows is None else n_rows[name]
            coef = require_array(reg["coef_"], reg_at["coef_"], kind="floating", shape=(size, k))
            intercept = require_array(
                reg["intercept_"], reg_at["intercept_"], kind="floating", shape=coef.shape[:1]
            )
            if rows is not None:
                rows = require_indices(
                    rows, Location("the selection", f"rows of {name!r}"), size=coef.shape[0]
                )
                coef = read_rows(coef, rows)  # from a memory-mapped file: only these rows
                intercept = read_rows(intercept, rows)
            heads[name] = (_tensor(_float32(coef), device), _tensor(_float32(intercept), device))
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
            ``(B, D)`` float32 on the readout's device. It is standardised in place (pass a
            copy to keep it).
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
        x = features.sub_(self.scaler_mean).div_(self.scaler_scale).sub_(self.pca_mean)
        z = x @ self.components.T
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
