"""Linear regression from a small design (PCA scores) onto many targets, one chunk at a time.

Both solvers are set up once from the design ``Z`` (``n`` samples x ``k`` components, ``k`` =
250 by default) and then fitted on any number of target chunks ``Y`` (``n`` x ``c``), so the
targets (327,684 vertices for an NSD subject) never need to be in memory together.

* :class:`OLSSolver` - ordinary least squares with an intercept, as scikit-learn's
  ``LinearRegression`` (the reference recipe): ``W = pinv(Zc) @ Y`` with ``Zc`` the centred
  design; the pseudo-inverse is computed once in float64, so each chunk costs one ``k x n x c``
  product.
* :class:`RidgeCVSolver` - ridge regression with an unpenalised intercept and a penalty chosen
  per target (vertex/voxel) by K-fold cross-validation over a grid. Everything is computed from
  sufficient statistics in the ``k``-dimensional space: per fold the Gram matrix of the design
  (fixed), and per chunk ``Z_f.T @ Y_f``, ``sum(Y_f)`` and ``sum(Y_f**2)``. The held-out error of
  every penalty then costs ``O(k^2 c)`` instead of ``O(n k c)`` (no held-out predictions are
  formed), and the final per-target fit is a rotation into the design's eigenbasis, a per-column
  shrinkage and a rotation back. The result equals scikit-learn's ``Ridge(alpha=per_target)``
  fitted with the chosen penalties, and the choice equals a brute-force K-fold search (both
  checked in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_ALPHAS",
    "ChunkFit",
    "OLSSolver",
    "RidgeCVSolver",
    "kfold_assignment",
    "make_solver",
]

#: Default ridge penalties: 1 to 1e12, one per decade. PCA scores of standardised deep-net
#: features have Gram eigenvalues from ~1e2 to ~1e9, so the grid spans no shrinkage to full.
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(0, 12, 13))


@dataclass
class ChunkFit:
    """The regression of one target chunk.

    Attributes
    ----------
    coef : numpy.ndarray
        ``(c, k)`` float32, as ``LinearRegression.coef_`` rows.
    intercept : numpy.ndarray
        ``(c,)`` float32.
    alpha : numpy.ndarray or None
        ``(c,)`` chosen ridge penalty per target (ridge only).
    """

    coef: np.ndarray
    intercept: np.ndarray
    alpha: np.ndarray | None = None


def _as_f64(design: np.ndarray) -> np.ndarray:
    z = np.asarray(design, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"the design must be 2-D (n, k); got shape {z.shape}")
    return z


class OLSSolver:
    """Ordinary least squares with intercept, solved for many target chunks.

    Parameters
    ----------
    design : numpy.ndarray
        ``(n, k)`` design (PCA scores of the training samples).

    Notes
    -----
    ``coef = pinv(Z - mean(Z)) @ Y`` is the minimum-norm least-squares solution, which is what
    scikit-learn's ``LinearRegression`` (``scipy.linalg.lstsq`` on centred data) returns, also for
    rank-deficient designs. The centred design's column space is orthogonal to the constant
    vector, so the targets need no centring.
    """

    method = "ols"

    def __init__(self, design: np.ndarray) -> None:
        z = _as_f64(design)
        self.n, self.k = z.shape
        self.design_mean = z.mean(axis=0)
        self._pinv = np.linalg.pinv(z - self.design_mean).astype(np.float32)  # (k, n)

    def fit(self, targets: np.ndarray) -> ChunkFit:
        """Fit one chunk of targets.

        Parameters
        ----------
        targets : numpy.ndarray
            ``(n, c)`` float32.

        Returns
        -------
        ChunkFit
        """
        y = np.asarray(targets, dtype=np.float32)
        if y.shape[0] != self.n:
            raise ValueError(f"targets have {y.shape[0]} rows; the design has {self.n}")
        coef = self._pinv @ y  # (k, c)
        intercept = y.mean(axis=0, dtype=np.float64) - self.design_mean @ coef.astype(np.float64)
        return ChunkFit(np.ascontiguousarray(coef.T), intercept.astype(np.float32))


def kfold_assignment(
    n: int, folds: int, *, groups: np.ndarray | None = None, seed: int = 20200220
) -> np.ndarray:
    """Fold number (``0..folds-1``) of each of *n* samples.

    Samples (or, with *groups*, whole groups such as scan sessions) are shuffled with *seed* and
    dealt into *folds* folds of near-equal size.

    Raises
    ------
    ValueError
        Fewer than 2 folds, or fewer samples/groups than folds.
    """
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    rng = np.random.default_rng(seed)
    if groups is None:
        if n < folds:
            raise ValueError(f"{n} samples cannot be split into {folds} folds")
        assignment = np.empty(n, dtype=np.int64)
        assignment[rng.permutation(n)] = np.arange(n) % folds
        return assignment
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups has shape {groups.shape}; expected ({n},)")
    unique, inverse = np.unique(groups, return_inverse=True)
    if unique.size < folds:
        raise ValueError(f"{unique.size} groups cannot be split into {folds} folds")
    group_fold = np.empty(unique.size, dtype=np.int64)
    group_fold[rng.permutation(unique.size)] = np.arange(unique.size) % folds
    return group_fold[inverse]


class RidgeCVSolver:
    """Ridge regression with a per-target penalty chosen by K-fold cross-validation.

    Parameters
    ----------
    design : numpy.ndarray
        ``(n, k)`` design.
    alphas : sequence of float
        Penalties to try (positive).
    folds : numpy.ndarray
        ``(n,)`` fold number of each sample (:func:`kfold_assignment`).

    Notes
    -----
    For a fold ``f`` with held-out rows ``H`` and training rows ``T``, with ``m``/``ybar`` the
    training means, the training fit is ``w = (Zt'Zt + a I)^-1 Zt'Yt`` on centred training data,
    and the held-out squared error is::

        sum_H (y - ybar)^2 - 2 w' sum_H (z - m)(y - ybar) + w' [sum_H (z - m)(z - m)'] w

    In the eigenbasis ``Q`` of ``Zt'Zt`` (eigenvalues ``l``) the weights are
    ``Q'w = Q'Zt'Yt / (l + a)``, so each penalty needs one ``k x k`` product per chunk (or, when
    the fold has fewer than ``k`` rows, the product with its ``n_f x k`` centred, rotated rows).
    The products with the targets run in float32 (sums of squares in float64).
    """

    method = "ridge"

    def __init__(self, design: np.ndarray, alphas: tuple[float, ...], folds: np.ndarray) -> None:
        z = _as_f64(design)
        self.n, self.k = z.shape
        self.alphas = np.asarray(alphas, dtype=np.float64)
        if self.alphas.ndim != 1 or self.alphas.size == 0 or (self.alphas <= 0).any():
            raise ValueError("alphas must be a non-empty list of positive numbers")
        self.folds = np.asarray(folds, dtype=np.int64)
        if self.folds.shape != (self.n,):
            raise ValueError(f"folds has shape {self.folds.shape}; expected ({self.n},)")
        self._rows = [np.flatnonzero(self.folds == f) for f in np.unique(self.folds)]
        if len(self._rows) < 2:
            raise ValueError("ridge cross-validation needs at least 2 folds")
        self._z = z
        gram = z.T @ z
        total = z.sum(axis=0)
        self.design_mean = total / self.n
        centred = gram - self.n * np.outer(self.design_mean, self.design_mean)
        self._lam, self._q = np.linalg.eigh(centred)
        self._q32 = self._q.astype(np.float32)
        self._z32 = z.astype(np.float32)
        self._fold_stats = []
        for rows in self._rows:
            zf = z[rows]
            n_f = rows.size
            n_t = self.n - n_f
            g_f = zf.T @ zf
            s_f = zf.sum(axis=0)
            m_t = (total - s_f) / n_t
            train_centred = (gram - g_f) - n_t * np.outer(m_t, m_t)
            lam, q = np.linalg.eigh(train_centred)
            if n_f < self.k:
                # held-out scatter = F'F with F the held-out rows, centred and rotated: n_f x k
                factor = ((zf - m_t) @ q).astype(np.float32)
                held_rot = None
            else:
                held = g_f - np.outer(s_f, m_t) - np.outer(m_t, s_f) + n_f * np.outer(m_t, m_t)
                factor = None
                held_rot = (q.T @ held @ q).astype(np.float32)
            self._fold_stats.append(
                {
                    "rows": rows,
                    "n_f": n_f,
                    "n_t": n_t,
                    "s_f": s_f,
                    "m_t": m_t,
                    "lam": lam,
                    "q": q,
                    "q32": q.astype(np.float32),
                    "z32": zf.astype(np.float32),
                    "factor": factor,
                    "held_rot": held_rot,
                }
            )

    def cv_errors(self, targets: np.ndarray) -> np.ndarray:
        """Summed held-out squared error of every penalty and target.

        Parameters
        ----------
        targets : numpy.ndarray
            ``(n, c)``.

        Returns
        -------
        numpy.ndarray
            ``(len(alphas), c)`` float64.
        """
        y = np.asarray(targets, dtype=np.float32)
        c = y.shape[1]
        per_fold = []
        for st in self._fold_stats:
            yf = y[st["rows"]]
            per_fold.append(
                (
                    st["z32"].T @ yf,
                    yf.sum(axis=0, dtype=np.float64),
                    np.einsum("ij,ij->j", yf, yf, dtype=np.float64),
                )
            )
        cross_total = sum(p[0] for p in per_fold)
        sum_total = sum(p[1] for p in per_fold)
        errors = np.zeros((self.alphas.size, c))
        for st, (cross_f, sum_f, sq_f) in zip(self._fold_stats, per_fold, strict=True):
            n_f, n_t, m_t = st["n_f"], st["n_t"], st["m_t"]
            ybar = (sum_total - sum_f) / n_t
            m32, ybar32 = m_t.astype(np.float32), ybar.astype(np.float32)
            train_cross = (cross_total - cross_f) - np.float32(n_t) * np.outer(m32, ybar32)
            rotated32 = st["q32"].T @ train_cross
            held_cross = (
                cross_f
                - np.outer(st["s_f"].astype(np.float32), ybar32)
                - np.outer(m32, (sum_f - n_f * ybar).astype(np.float32))
            )
            held32 = st["q32"].T @ held_cross
            base = sq_f - 2.0 * ybar * sum_f + n_f * ybar**2
            # the penalty loop: O(min(n_f, k) k c) per penalty. With d = 1 / (lam + alpha):
            # cross = sum_j d_j rotated_j held_j (one product for all penalties) and
            # quad = |F diag(d) rotated|^2 or rotated' diag(d) H diag(d) rotated.
            inverse = (1.0 / (st["lam"][None, :] + self.alphas[:, None])).astype(np.float32)
            cross = inverse @ (rotated32 * held32)  # (alphas, c)
            errors += base[None, :] - 2.0 * cross.astype(np.float64)
            for a in range(self.alphas.size):
                d = inverse[a]
                if st["factor"] is not None:
                    projected = (st["factor"] * d[None, :]) @ rotated32
                    quad = np.einsum("ij,ij->j", projected, projected)
                else:
                    scaled = (st["held_rot"] * d[None, :]) @ rotated32
                    quad = d @ (rotated32 * scaled)
                errors[a] += quad
        return errors

    def fit_alphas(self, targets: np.ndarray, alphas: np.ndarray) -> ChunkFit:
        """Fit every target on all samples with its own penalty.

        Parameters
        ----------
        targets : numpy.ndarray
            ``(n, c)``.
        alphas : numpy.ndarray
            ``(c,)`` penalty of each target.
        """
        y = np.asarray(targets, dtype=np.float32)
        ybar = y.mean(axis=0, dtype=np.float64)
        cross = self._z32.T @ y - np.outer(
            (self.n * self.design_mean).astype(np.float32), ybar.astype(np.float32)
        )
        rotated = self._q32.T @ cross
        shrink = 1.0 / (self._lam[:, None] + np.asarray(alphas, dtype=np.float64)[None, :])
        rotated *= shrink.astype(np.float32)
        coef = self._q32 @ rotated  # (k, c)
        intercept = ybar - self.design_mean @ coef.astype(np.float64)
        return ChunkFit(
            np.ascontiguousarray(coef.T),
            intercept.astype(np.float32),
            np.asarray(alphas, np.float64),
        )

    def fit(self, targets: np.ndarray) -> ChunkFit:
        """Choose each target's penalty by cross-validation, then fit on all samples.

        Ties go to the larger penalty (the simpler model).
        """
        y = np.asarray(targets, dtype=np.float32)
        if y.shape[0] != self.n:
            raise ValueError(f"targets have {y.shape[0]} rows; the design has {self.n}")
        errors = self.cv_errors(y)
        # argmin over the reversed grid picks the largest penalty among equal errors
        best = self.alphas.size - 1 - np.argmin(errors[::-1], axis=0)
        return self.fit_alphas(y, self.alphas[best])


def make_solver(
    method: str,
    design: np.ndarray,
    *,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
    cv_folds: int = 5,
    groups: np.ndarray | None = None,
    seed: int = 20200220,
) -> OLSSolver | RidgeCVSolver:
    """The solver for *method* (``"ols"`` or ``"ridge"``) on *design*.

    Raises
    ------
    ValueError
        Unknown method.
    """
    if method == "ols":
        return OLSSolver(design)
    if method == "ridge":
        folds = kfold_assignment(len(design), cv_folds, groups=groups, seed=seed)
        return RidgeCVSolver(design, alphas, folds)
    raise ValueError(f"regression must be 'ols' or 'ridge', not {method!r}")
