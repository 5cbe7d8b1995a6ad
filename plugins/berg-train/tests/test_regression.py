"""The chunked OLS and ridge-CV solvers against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from berg_train.regression import (
    OLSSolver,
    RidgeCVSolver,
    kfold_assignment,
    make_solver,
)
from sklearn.linear_model import LinearRegression, Ridge


def _problem(n: int, k: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    design = rng.normal(size=(n, k)) * rng.uniform(0.5, 20, k) + rng.normal(size=k)
    targets = design @ rng.normal(size=(k, c)) * 0.1 + rng.normal(size=(n, c)) * 3 + 1
    return design, targets.astype(np.float32)


def test_ols_equals_linear_regression() -> None:
    design, targets = _problem(200, 25, 40)
    fit = OLSSolver(design).fit(targets)
    reference = LinearRegression().fit(design, targets.astype(np.float64))
    np.testing.assert_allclose(fit.coef, reference.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fit.intercept, reference.intercept_, rtol=1e-4, atol=1e-4)
    assert fit.coef.dtype == np.float32 and fit.coef.shape == (40, 25)


def test_ols_chunks_are_independent() -> None:
    design, targets = _problem(150, 10, 30)
    solver = OLSSolver(design)
    whole = solver.fit(targets)
    parts = [solver.fit(targets[:, a:b]) for a, b in ((0, 7), (7, 30))]
    np.testing.assert_allclose(np.vstack([p.coef for p in parts]), whole.coef, rtol=1e-5, atol=1e-7)


def test_ols_rank_deficient_is_minimum_norm() -> None:
    design, targets = _problem(20, 30, 5)  # more components than samples
    fit = OLSSolver(design).fit(targets)
    reference = LinearRegression().fit(design, targets.astype(np.float64))
    np.testing.assert_allclose(
        design @ fit.coef.T + fit.intercept, reference.predict(design), atol=1e-3
    )


@pytest.mark.parametrize(("n", "k"), [(120, 12), (90, 40)])  # k-space path and factor path
def test_ridge_cv_errors_equal_brute_force_kfold(n: int, k: int) -> None:
    design, targets = _problem(n, k, 9, seed=n)
    alphas = (0.01, 1.0, 100.0, 1e4, 1e6)
    folds = kfold_assignment(n, 5)
    errors = RidgeCVSolver(design, alphas, folds).cv_errors(targets)
    expected = np.zeros_like(errors)
    for a, alpha in enumerate(alphas):
        for f in range(5):
            train, held = folds != f, folds == f
            model = Ridge(alpha=alpha).fit(design[train], targets[train].astype(np.float64))
            expected[a] += ((model.predict(design[held]) - targets[held]) ** 2).sum(axis=0)
    np.testing.assert_allclose(errors, expected, rtol=1e-4)
    assert (errors.argmin(axis=0) == expected.argmin(axis=0)).all()


def test_ridge_fit_equals_sklearn_ridge_with_chosen_alphas() -> None:
    design, targets = _problem(150, 20, 12)
    targets[:, :6] += (design @ np.linspace(0, 1, 20))[:, None] * np.linspace(
        0, 3, 6
    )  # SNRs differ
    solver = make_solver("ridge", design, alphas=(0.1, 10.0, 1e3, 1e5), cv_folds=5)
    fit = solver.fit(targets)
    assert fit.alpha is not None and len(set(fit.alpha)) > 1  # penalties differ per target
    reference = Ridge(alpha=fit.alpha).fit(design, targets.astype(np.float64))
    np.testing.assert_allclose(fit.coef, reference.coef_, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(fit.intercept, reference.intercept_, rtol=1e-4, atol=1e-4)


def test_kfold_groups_keep_groups_together() -> None:
    groups = np.repeat(np.arange(6), 10)
    folds = kfold_assignment(60, 3, groups=groups)
    for g in range(6):
        assert len(set(folds[groups == g])) == 1
    assert sorted(np.bincount(folds)) == [20, 20, 20]
    with pytest.raises(ValueError, match="groups"):
        kfold_assignment(60, 7, groups=groups)


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="ols"):
        make_solver("lasso", np.zeros((5, 2)))
