"""torchkit's "base network + readout" helper against an independent numpy computation."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from berg_core import (  # noqa: E402
    BERG,
    Dim,
    ModelCard,
    ModelLoadError,
    Output,
    PluginError,
    hookimpl,
    registry,
)
from berg_core.encoder import LoadRequest  # noqa: E402
from berg_core.safe_npy import load_pickled_npy  # noqa: E402
from berg_core.torchkit import (  # noqa: E402
    ImageTransform,
    LinearReadout,
    MatrixReadout,
    Preprocessor,
    build_readout_model,
    readout_from_arrays,
    torchvision_backbone,
)

TRANSFORM = ImageTransform(size=32, resize=36, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
NODES = ("0", "2")  # the convolution (2 x 7 x 7 = 98 values) and the pooled map (2 x 2 x 2 = 8)
D = 106
CHANNELS = ("O1", "Oz", "O2")
TIMES = (0, 100, 200, 300)
WEIGHTS = "toy/weights_subject-{subject:02d}.npy"

EEG_CARD = ModelCard(
    model_id="toy-eeg",
    modality="EEG",
    training_dataset="Synthetic",
    species="None",
    model_type="tiny CNN + linear map",
    subjects=(1,),
    outputs=(
        Output(
            name="responses",
            dims=(
                Dim(name="channel", size=3, coords=CHANNELS),
                Dim(name="time", size=4, unit="ms", coords=TIMES),
            ),
        ),
    ),
    files=(WEIGHTS,),
)


def backbone() -> torch.nn.Module:
    """The same tiny network in every call (seeded)."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2)
    )
    return net.eval()


def expected_features(images: np.ndarray) -> np.ndarray:
    """Features computed without torchkit: torchvision's functions, then the network by hand."""
    from torchvision.transforms import functional as tvf

    x = tvf.center_crop(tvf.resize(torch.from_numpy(images), [36], antialias=True), [32])
    x = tvf.normalize(x.float() / 255, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    net = backbone()
    with torch.no_grad():
        conv = net[0](x)
        pooled = net[2](net[1](conv))
    return np.hstack([conv.flatten(1).numpy(), pooled.flatten(1).numpy()]).astype(np.float64)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (5, 3, 40, 44), dtype=np.uint8)


def load(request: LoadRequest):
    weights = load_pickled_npy(request.berg_dir / request.card.files_for(request.subject)[0])
    return build_readout_model(
        request, backbone=backbone(), nodes=NODES, preprocessing=TRANSFORM, readout=weights
    )


@pytest.fixture
def berg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BERG:
    rng = np.random.default_rng(0)
    weights = {
        "weight": rng.normal(size=(D, 12)).astype(np.float32),
        "bias": rng.normal(size=12).astype(np.float32),
    }
    path = tmp_path / WEIGHTS.format(subject=1)
    path.parent.mkdir(parents=True)
    np.save(path, weights)
    plugin = types.SimpleNamespace(
        register_models=hookimpl(lambda register: register(EEG_CARD, load))
    )
    monkeypatch.setenv("BERG_LOAD_PLUGINS", "")
    registry.reset({"toy_eeg": plugin})
    yield BERG(berg_dir=tmp_path)
    registry.reset()


def test_multi_dim_output_matches_numpy(berg: BERG, images: np.ndarray) -> None:
    w = load_pickled_npy(berg.berg_dir / WEIGHTS.format(subject=1))
    want = (expected_features(images) @ w["weight"] + w["bias"]).reshape(5, 3, 4)
    with berg.get_encoding_model("toy-eeg", subject=1, batch_size=2) as model:
        assert model.batch_size == 2
        assert model.output_shapes() == ((3, 4),)
        assert model.dims() == {"responses": ("image", "channel", "time")}
        responses = berg.encode(model, images, show_progress=False)
        coords = model.coords()["responses"]
    assert responses.shape == (5, 3, 4) and responses.dtype == np.float32
    np.testing.assert_allclose(responses, want, rtol=1e-4, atol=1e-4)
    assert list(coords["channel"]) == list(CHANNELS)
    assert list(coords["time"]) == list(TIMES)


def test_picks_along_dims_slice_the_full_output(berg: BERG, images: np.ndarray) -> None:
    with berg.get_encoding_model("toy-eeg", subject=1) as model:
        full = berg.encode(model, images, show_progress=False)
    selection = {"channel": ["O2", "O1", "O2"], "time": {"min": 100, "max": 200}}
    with berg.get_encoding_model("toy-eeg", subject=1, selection=selection) as model:
        picked = berg.encode(model, images, show_progress=False)
        assert list(model.coords()["responses"]["channel"]) == ["O2", "O1", "O2"]
        assert list(model.coords()["responses"]["time"]) == [100, 200]
    np.testing.assert_array_equal(picked, full[:, [2, 0, 2]][:, :, [1, 2]])


def _request(card: ModelCard, tmp_path: Path) -> LoadRequest:
    return LoadRequest(model_id=card.model_id, card=card, berg_dir=tmp_path, device="cpu")


def test_reference_layout_two_outputs_with_columns(tmp_path: Path, images: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    k, n = 7, 9
    arrays = {
        "scaler_param": {"mean_": rng.normal(size=D), "scale_": rng.uniform(0.5, 2, size=D)},
        "pca_param": {"components_": rng.normal(size=(k, D)), "mean_": rng.normal(size=D)},
        "lh_reg_param": {"coef_": rng.normal(size=(n, k)), "intercept_": rng.normal(size=n)},
        "rh_reg_param": {"coef_": rng.normal(size=(n, k)), "intercept_": rng.normal(size=n)},
    }
    card = EEG_CARD.model_copy(
        update={
            "model_id": "toy-hemis",
            "outputs": (
                Output(name="lh", dims=(Dim(name="vertex", size=n),)),
                Output(name="rh", dims=(Dim(name="vertex", size=n),)),
            ),
        }
    )
    keep = np.array([8, 0, 3])
    model = build_readout_model(
        _request(card, tmp_path),
        backbone=backbone(),
        nodes=NODES,
        preprocessing=TRANSFORM,
        readout=arrays,
        columns={"lh": keep},
    )
    assert isinstance(model.readout, LinearReadout)
    from berg_core import as_stimulus

    lh, rh = model.encode(as_stimulus(images), show_progress=False)
    x = expected_features(images)
    z = ((x - arrays["scaler_param"]["mean_"]) / arrays["scaler_param"]["scale_"]) - arrays[
        "pca_param"
    ]["mean_"]
    z = z @ arrays["pca_param"]["components_"].T
    for got, reg, cols in ((lh, arrays["lh_reg_param"], keep), (rh, arrays["rh_reg_param"], None)):
        cols = np.arange(n) if cols is None else cols
        want = z @ reg["coef_"][cols].T + reg["intercept_"][cols]
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(model.columns()["lh"], keep)
    np.testing.assert_array_equal(model.columns()["rh"], np.arange(n))


def test_readout_errors_name_the_file_and_key(tmp_path: Path) -> None:
    device = torch.device("cpu")
    with pytest.raises(ModelLoadError, match=r"w\.npy: weights holds no readout.*weight, bias"):
        readout_from_arrays({"coef": np.zeros((3, 2))}, ("responses",), device, source="w.npy")
    with pytest.raises(ModelLoadError, match=r"w\.npy: weights lacks key\(s\) bias"):
        readout_from_arrays({"weight": np.zeros((3, 2))}, ("responses",), device, source="w.npy")
    bad_dim = {"weight": np.zeros((5, 2), np.float32), "bias": np.zeros(2, np.float32)}
    with pytest.raises(ModelLoadError, match=r"weights\['weight'\] is an array of shape \(5, 2\)"):
        readout_from_arrays(bad_dim, ("responses",), device, source="w.npy", feature_dim=D)
    ints = {"lh_weight": np.zeros((D, 2), np.int64), "lh_bias": np.zeros(2), "rh_weight": 0}
    with pytest.raises(ModelLoadError, match=r"lacks key\(s\) rh_bias"):
        readout_from_arrays(ints, ("lh", "rh"), device, source="w.npy")
    ints["rh_bias"] = np.zeros(2)
    with pytest.raises(ModelLoadError, match=r"weights\['lh_weight'\].*floating-point"):
        readout_from_arrays(ints, ("lh", "rh"), device, source="w.npy")
    nan_bias = {"weight": np.zeros((D, 2)), "bias": np.array([0.0, np.nan])}
    with pytest.raises(ModelLoadError, match=r"weights\['bias'\].*finite values"):
        readout_from_arrays(nan_bias, ("responses",), device, source="w.npy")
    readout = readout_from_arrays(
        {"weight": np.ones((D, 4)), "bias": np.arange(4.0)},
        ("responses",),
        device,
        columns={"responses": np.array([3, 1])},
    )
    assert isinstance(readout, MatrixReadout) and readout.output_sizes() == (2,)
    (out,) = readout(torch.ones(1, D))
    np.testing.assert_array_equal(out.numpy(), [[D + 3, D + 1]])


def test_multi_dim_output_needs_sizes(tmp_path: Path) -> None:
    card = EEG_CARD.model_copy(
        update={"outputs": (Output(name="responses", dims=(Dim(name="c"), Dim(name="t"))),)}
    )
    arrays = {"weight": np.zeros((D, 12), np.float32), "bias": np.zeros(12, np.float32)}
    kwargs = dict(backbone=backbone(), nodes=NODES, preprocessing=TRANSFORM, readout=arrays)
    with pytest.raises(PluginError, match=r"'responses' has dims \('c', 't'\) without sizes"):
        build_readout_model(_request(card, tmp_path), **kwargs)
    model = build_readout_model(_request(card, tmp_path), shapes={"responses": (6, 2)}, **kwargs)
    assert model.output_shapes() == ((6, 2),)
    with pytest.raises(PluginError, match="columns= is for one-dim outputs"):
        build_readout_model(_request(EEG_CARD, tmp_path), columns={"responses": [0]}, **kwargs)
    with pytest.raises(
        ModelLoadError, match=r"weights\['weight'\] is an array of shape \(106, 12\)"
    ):
        build_readout_model(_request(card, tmp_path), shapes={"responses": (5, 2)}, **kwargs)


def test_image_transform_equals_the_torchvision_preset() -> None:
    preset = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    images = np.random.default_rng(2).integers(0, 256, (2, 3, 300, 260), dtype=np.uint8)
    device = torch.device("cpu")
    ours = Preprocessor(ImageTransform(), device)(images)
    np.testing.assert_array_equal(ours.numpy(), preset(torch.from_numpy(images)).numpy())
    np.testing.assert_allclose(
        ImageTransform()(torch.from_numpy(images)).numpy(), ours.numpy(), atol=1e-6
    )


def test_bad_parts_are_plugin_errors() -> None:
    with pytest.raises(PluginError, match="need 0 < size <= resize"):
        ImageTransform(size=256, resize=224)
    with pytest.raises(PluginError, match="three values each"):
        ImageTransform(std=(0.2, 0.0, 0.2))
    with pytest.raises(PluginError, match="exactly one; got weights=None, seed=None"):
        torchvision_backbone(torchvision.models.resnet18)
    net = torchvision_backbone(torchvision.models.squeezenet1_1, seed=7)
    again = torchvision_backbone(torchvision.models.squeezenet1_1, seed=7)
    first = next(net.parameters())
    assert not net.training and torch.equal(first, next(again.parameters()))
