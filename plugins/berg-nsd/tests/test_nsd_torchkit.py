"""Unit tests of berg_core.torchkit, the torch code shared by the torch plugins."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from error_bounds import LAMBDA, assert_within, feature_sd, readout_bound
from nsd_reference import ALEXNET_NODES, ReferencePipeline
from torchvision.models.feature_extraction import create_feature_extractor

from berg_core import InvalidParameterError, ModelLoadError
from berg_core.torchkit import (
    LinearReadout,
    NodeFeatureExtractor,
    Preprocessor,
    build_seeded,
    checkpoint_path,
    resolve_device,
)

CPU = torch.device("cpu")
WEIGHTS = torchvision.models.AlexNet_Weights.IMAGENET1K_V1


def test_import_berg_core_does_not_import_torchkit() -> None:
    code = (
        "import sys, berg_core\n"
        "assert 'berg_core.torchkit' not in sys.modules\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_resolve_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == CPU
    with pytest.raises(InvalidParameterError, match="not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_checkpoint_path(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert checkpoint_path(WEIGHTS) == tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"


def test_build_seeded_restores_rng() -> None:
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    first = build_seeded(torch.nn.Linear, 3, in_features=4, out_features=2)
    second = build_seeded(torch.nn.Linear, 3, in_features=4, out_features=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first.weight, second.weight)
    assert not first.training


@pytest.mark.parametrize("shape", [(3, 3, 256, 256), (2, 3, 300, 241), (2, 3, 120, 100)])
def test_preprocessor_equals_the_weights_transform(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    transform = WEIGHTS.transforms()
    for channels_last in (False, True):
        preprocessor = Preprocessor.from_weights(WEIGHTS, CPU, channels_last=channels_last)
        out = preprocessor(images)
        assert torch.equal(out, transform(torch.from_numpy(images)))
        assert out.is_contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format
        )
        floats = (images / 255).astype(np.float32)
        assert torch.equal(preprocessor(floats), transform(torch.from_numpy(floats)))
    # read-only arrays (np.load(..., mmap_mode="r")) are fine
    images.setflags(write=False)
    assert torch.equal(preprocessor(images), transform(torch.from_numpy(images.copy())))


def test_preprocessor_lists_and_types() -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (3, h, w), dtype=np.uint8) for h, w in [(256, 300), (224, 230)]]
    transform = WEIGHTS.transforms()
    expected = torch.cat([transform(torch.from_numpy(i)[None]) for i in images])
    assert torch.equal(Preprocessor.from_weights(WEIGHTS, CPU)(images), expected)
    with pytest.raises(TypeError, match="uint8 or float32"):
        Preprocessor.from_weights(WEIGHTS, CPU)(np.zeros((1, 3, 8, 8), dtype=np.int64))
    # any callable transform works too
    generic = Preprocessor(lambda x: transform(x) * 2, CPU)
    assert torch.equal(generic(images), expected * 2)


@pytest.mark.parametrize("channels_last", [False, True])
def test_node_features_equal_hstack_of_feature_extractor(channels_last: bool) -> None:
    model = build_seeded(torchvision.models.alexnet, 20200220, weights=None)
    extractor = NodeFeatureExtractor(model, ALEXNET_NODES, CPU, channels_last=channels_last)
    assert extractor.feature_dim == 205_672
    assert extractor.node_dims[0] == 64 * 27 * 27
    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    reference = create_feature_extractor(model, return_nodes=ALEXNET_NODES).eval()
    with torch.inference_mode():
        expected = torch.hstack([torch.flatten(v, 1) for v in reference(images).values()])
        layout = torch.channels_last if channels_last else torch.contiguous_format
        got = extractor(images.contiguous(memory_format=layout)).clone()
        smaller = extractor(images[:1].contiguous(memory_format=layout)).clone()
    # two float32 computations of the features: within twice the bound of the exact ones
    _, sd = feature_sd(model, images, ALEXNET_NODES)
    tolerance = 2 * LAMBDA * sd
    assert_within(got.numpy(), expected.numpy(), tolerance)
    if not channels_last:
        assert torch.equal(got, expected)
    assert_within(smaller[0].numpy(), got[0].numpy(), tolerance[0])  # the buffer is reused
    extractor.release()
    with pytest.raises(RuntimeError, match="released"), torch.inference_mode():
        extractor(images)


def _params(rng: np.random.Generator, dim: int = 50, k: int = 4, n: int = 30) -> tuple:
    scale = rng.uniform(0.5, 2, dim)
    scaler = {
        "scale_": scale,  # float64, as StandardScaler can store it
        "mean_": rng.standard_normal(dim),
        "var_": scale**2,
        "n_features_in_": dim,
        "n_samples_seen_": 100,
    }
    pca = {
        "components_": rng.standard_normal((k, dim)).astype(np.float32),
        "explained_variance_": np.ones(k, np.float32),
        "explained_variance_ratio_": np.ones(k, np.float32) / k,
        "singular_values_": np.ones(k, np.float32),
        "mean_": rng.standard_normal(dim).astype(np.float32) * 0.1,
        "n_components_": k,
        "n_samples_": 100,
        "noise_variance_": np.float32(0),
        "n_features_in_": dim,
    }
    reg = {
        "coef_": rng.standard_normal((n, k)).astype(np.float32),
        "intercept_": rng.standard_normal(n).astype(np.float32),
        "n_features_in_": k,
    }
    return scaler, pca, reg


def test_linear_readout_equals_sklearn() -> None:
    rng = np.random.default_rng(0)
    scaler, pca, reg = _params(rng)
    rows = np.array([0, 3, 4, 29])
    readout = LinearReadout.from_params(
        scaler, pca, {"a": (reg, None), "b": (reg, rows), "c": (reg, rows[:0])}, CPU
    )
    assert readout.output_sizes() == (30, 4, 0)
    features = rng.standard_normal((6, 50)).astype(np.float32)
    weights = {"scaler_param": scaler, "pca_param": pca, "lh_reg_param": reg, "rh_reg_param": reg}
    expected_all, expected_rows = ReferencePipeline.readout(features, weights, None, rows)
    with torch.inference_mode():
        a, b, c = readout(torch.from_numpy(features.copy()))
        out = (torch.empty(6, 30), torch.empty(6, 4), torch.empty(6, 0))
        written = readout(torch.from_numpy(features.copy()), out=out)
    exact = features.astype(np.float64)
    bounds = readout_bound(exact, np.zeros_like(exact), weights, {"lh": None, "rh": rows})
    assert_within(a.numpy(), expected_all, 2 * bounds["lh"])
    assert_within(b.numpy(), expected_rows, 2 * bounds["rh"])
    assert c.shape == (6, 0)
    assert written[0] is out[0]
    assert torch.equal(written[1], b)


def test_linear_readout_errors() -> None:
    rng = np.random.default_rng(1)
    scaler, pca, reg = _params(rng)
    # keys the readout does not use are not required: the rest of what scikit-learn saves
    used_only = {k: v for k, v in scaler.items() if k in ("mean_", "scale_")}
    LinearReadout.from_params(used_only, pca, {"a": (reg, None)}, CPU, source="w.npy")
    with pytest.raises(
        ModelLoadError, match=r"w\.npy: weights\['scaler_param'\] lacks key\(s\) mean_"
    ):
        no_mean = {k: v for k, v in scaler.items() if k != "mean_"}
        LinearReadout.from_params(no_mean, pca, {"a": (reg, None)}, CPU, source="w.npy")
    with pytest.raises(
        ModelLoadError,
        match=r"w\.npy: weights\['scaler_param'\]\['mean_'\] is an array of shape \(49,\)",
    ):
        bad = {**scaler, "mean_": scaler["mean_"][:-1]}
        LinearReadout.from_params(bad, pca, {"a": (reg, None)}, CPU, source="w.npy")
    with pytest.raises(ModelLoadError, match=r"\['a_reg_param'\]\['coef_'\] is an array of shape"):
        bad_reg = {**reg, "coef_": reg["coef_"][:, :3]}
        LinearReadout.from_params(scaler, pca, {"a": (bad_reg, None)}, CPU)
    with pytest.raises(
        ModelLoadError, match=r"holding 30 at position 0; expected only indices in 0\.\.29"
    ):
        LinearReadout.from_params(scaler, pca, {"a": (reg, np.array([30]))}, CPU)
    readout = LinearReadout.from_params(scaler, pca, {"a": (reg, None)}, CPU)
    with pytest.raises(ValueError, match="expects 50"):
        readout(torch.zeros(2, 49))
