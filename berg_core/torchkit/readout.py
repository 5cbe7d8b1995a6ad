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

from berg_core.errors import ModelLoadError
from berg_core.safe_npy import read_rows

__all__ = ["PCA_KEYS", "REGRESSION_KEYS", "SCALER_KEYS", "LinearReadout"]

#: Keys the reference toolkit saves for each scikit-learn object (all are required to rebuild
#: the sklearn objects; the readout itself uses ``mean_``, ``scale_``, ``components_``,
#: ``coef_`` and ``intercept_``).
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


def _float32(array: Any, what: str, source: str) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise ModelLoadError(f"{source}: {what} is not a numeric array ({type(array).__name__})")
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


def _require(params: Any, keys: tuple[str, ...], what: str, source: str) -> Mapping[str, Any]:
    if not isinstance(params, Mapping):
        raise ModelLoadError(f"{source}: {what} is a {type(params).__name__}, not a dict")
    missing = [key for key in keys if key not in params]
    if missing:
        raise ModelLoadError(f"{source}: {what} lacks key(s) {', '.join(missing)}")
    return params


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
        source: str = "weights file",
    ) -> LinearReadout:
        """Build the readout from the attribute dicts the reference toolkit saves.

        Parameters
        ----------
        scaler_param : mapping
            ``StandardScaler`` attributes (:data:`SCALER_KEYS`).
        pca_param : mapping
            ``PCA`` attributes (:data:`PCA_KEYS`).
        regressions : mapping of str to (mapping, array or None)
            Output name -> (``LinearRegression`` attributes (:data:`REGRESSION_KEYS`), the rows
            of ``coef_``/``intercept_`` to keep as ascending int indices, or ``None`` for all).
            The order of the mapping is the order of the outputs.
        device : torch.device
            Where the readout computes.
        source : str
            Named in error messages (the file the dicts came from).

        Returns
        -------
        LinearReadout

        Raises
        ------
        ModelLoadError
            If a key is missing or the shapes do not fit together.
        """
        scaler = _require(scaler_param, SCALER_KEYS, "scaler_param", source)
        pca = _require(pca_param, PCA_KEYS, "pca_param", source)
        components = _float32(pca["components_"], "pca_param['components_']", source)
        if components.ndim != 2:
            raise ModelLoadError(
                f"{source}: pca_param['components_'] has shape {components.shape}; expected (k, D)"
            )
        k, dim = components.shape
        vectors = {}
        for what, value in (
            ("scaler_param['mean_']", scaler["mean_"]),
            ("scaler_param['scale_']", scaler["scale_"]),
            ("pca_param['mean_']", pca["mean_"]),
        ):
            array = _float32(value, what, source)
            if array.shape != (dim,):
                raise ModelLoadError(
                    f"{source}: {what} has shape {array.shape}; expected ({dim},) to match "
                    f"pca_param['components_'] {components.shape}"
                )
            vectors[what] = array
        heads = {}
        for name, (params, rows) in regressions.items():
            reg = _require(params, REGRESSION_KEYS, f"regression {name!r}", source)
            coef = reg["coef_"]
            intercept = reg["intercept_"]
            if not (isinstance(coef, np.ndarray) and coef.ndim == 2 and coef.shape[1] == k):
                shape = getattr(coef, "shape", None)
                raise ModelLoadError(
                    f"{source}: coef_ of {name!r} has shape {shape}; expected (n, {k})"
                )
            if not (isinstance(intercept, np.ndarray) and intercept.shape == coef.shape[:1]):
                shape = getattr(intercept, "shape", None)
                raise ModelLoadError(
                    f"{source}: intercept_ of {name!r} has shape {shape}; expected "
                    f"({coef.shape[0]},)"
                )
            if rows is not None:
                rows = np.asarray(rows, dtype=np.int64)
                if rows.size and (rows.min() < 0 or rows.max() >= coef.shape[0]):
                    raise ModelLoadError(
                        f"{source}: selected rows of {name!r} fall outside 0..{coef.shape[0] - 1}"
                    )
                coef = read_rows(coef, rows)  # from a memory-mapped file: only these rows
                intercept = read_rows(intercept, rows)
            heads[name] = (
                _tensor(_float32(coef, f"coef_ of {name!r}", source), device),
                _tensor(_float32(intercept, f"intercept_ of {name!r}", source), device),
            )
        return cls(
            scaler_mean=_tensor(vectors["scaler_param['mean_']"], device),
            scaler_scale=_tensor(vectors["scaler_param['scale_']"], device),
            pca_mean=_tensor(vectors["pca_param['mean_']"], device),
            components=_tensor(components, device),
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
