"""Readouts are pure (features untouched), chunked, autograd-friendly; StackedReadout; grid_rows.

Values are compared with scikit-learn's float64 pipeline
(:func:`berg_core.testing.reference_readout`) within its float32 rounding bound.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from berg_core import ModelLoadError, PluginError  # noqa: E402
from berg_core.checks import Location  # noqa: E402
from berg_core.testing import assert_within, reference_readout, reference_weights  # noqa: E402
from berg_core.torchkit import LinearReadout, StackedReadout, grid_rows  # noqa: E402
from berg_core.torchkit.readout import CHUNK_COLUMNS  # noqa: E402

CPU = torch.device("cpu")
#: More features than one chunk, and not a multiple of it (a partial last chunk).
D = 2 * CHUNK_COLUMNS + 123


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return np.random.default_rng(1).normal(0, 1, (3, D)).astype(np.float32)


def _linear(weights: dict) -> LinearReadout:
    return LinearReadout.from_params(
        weights["scaler_param"],
        weights["pca_param"],
        {"y": (weights["reg_param"], None)},
        CPU,
        reg_keys={"y": "reg_param"},
    )


def test_linear_readout_leaves_its_features_alone_and_matches_scikit_learn(features):
    weights = reference_weights(D, 5, k=3, seed=2)
    tensor = torch.from_numpy(features.copy())
    (y,) = _linear(weights)(tensor)
    np.testing.assert_array_equal(tensor.numpy(), features)  # not standardised in place
    wanted, bound = reference_readout(weights, features, (5,))
    assert y.dtype == torch.float32 and y.shape == (3, 5)
    assert_within(y.numpy(), wanted, bound)


def test_readouts_follow_gradients_with_the_same_values(features):
    weights = reference_weights(D, 4, k=2, seed=3)
    readout = _linear(weights)
    tensor = torch.from_numpy(features.copy()).requires_grad_(True)
    (y,) = readout(tensor)
    y.sum().backward()
    wanted, bound = reference_readout(weights, features, (4,))
    assert_within(y.detach().numpy(), wanted, bound)
    # d sum(Y) / dX = (coef.sum(0) @ components) / scale, exactly linear
    reg, pca, scaler = weights["reg_param"], weights["pca_param"], weights["scaler_param"]
    grad = (reg["coef_"].astype(np.float64).sum(0) @ pca["components_"]) / scaler["scale_"]
    np.testing.assert_allclose(tensor.grad.numpy()[0], grad, rtol=1e-4, atol=1e-6 * abs(grad).max())


def _single(weights: dict, pca: dict, reg: dict) -> dict:
    return {"scaler_param": weights["scaler_param"], "pca_param": pca, "reg_param": reg}


@pytest.mark.parametrize("shared_pca", [False, True], ids=["pca-per-part", "one-pca"])
def test_stacked_readout_is_each_part_side_by_side(features, shared_pca):
    parts = [reference_weights(D, 6, k=3, seed=10 + r) for r in range(3)]
    pcas = [parts[0]["pca_param"]] * 3 if shared_pca else [p["pca_param"] for p in parts]
    regs = [p["reg_param"] for p in parts]
    rows = np.array([5, 0, 2])
    readout = StackedReadout.from_params(
        "responses", parts[0]["scaler_param"], pcas, regs, CPU, rows=rows, n_rows=6
    )
    assert len(readout.pcas) == (1 if shared_pca else 3)
    tensor = torch.from_numpy(features.copy())
    (y,) = readout(tensor)
    np.testing.assert_array_equal(tensor.numpy(), features)
    assert y.shape == (3, 9) and readout.output_sizes() == (9,)
    (again,) = readout.differentiable_forward(tensor)
    for r in range(3):
        wanted, bound = reference_readout(_single(parts[0], pcas[r], regs[r]), features, (6,))
        assert_within(y.numpy()[:, 3 * r : 3 * r + 3], wanted[:, rows], bound[:, rows])
        assert_within(again.numpy()[:, 3 * r : 3 * r + 3], wanted[:, rows], bound[:, rows])


def test_stacked_readout_names_the_nested_key_of_a_bad_array():
    parts = [reference_weights(40, 6, k=3, seed=r) for r in range(2)]
    parts[1]["reg_param"]["coef_"] = parts[1]["reg_param"]["coef_"][:, :2]
    where = Location("w.npy", "weights")
    with pytest.raises(
        ModelLoadError, match=r"w.npy: weights\['reg_param'\]\['rep-2'\]\['coef_'\]"
    ):
        StackedReadout.from_params(
            "responses",
            parts[0]["scaler_param"],
            [p["pca_param"] for p in parts],
            [p["reg_param"] for p in parts],
            CPU,
            source=where,
            reg_at=[where["reg_param"]["rep-1"], where["reg_param"]["rep-2"]],
        )


def test_grid_rows_are_the_c_order_flat_positions():
    channels, times = np.array([2, 0, 2]), np.array([1, 3])
    want = [c * 5 + t for c in channels for t in times]
    np.testing.assert_array_equal(grid_rows([channels, times], (3, 5)), want)
    with pytest.raises(PluginError, match=r"indices of axis 1 outside 0\.\.4"):
        grid_rows([channels, np.array([5])], (3, 5))
