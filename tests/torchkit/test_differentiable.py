"""The differentiable path of torchkit models: equal to encode, gradients, errors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from berg_core import (  # noqa: E402
    Dim,
    EncodingModel,
    InvalidParameterError,
    LoadRequest,
    ModelCard,
    NotDifferentiableError,
    Output,
    as_stimulus,
)
from berg_core.torchkit import ImageTransform, build_readout_model  # noqa: E402

U = 2.0**-24  # float32 unit roundoff
SIDE = 32


def _gamma(n: int) -> float:
    """Deterministic bound of the relative error of an n-term float32 sum (Higham, Lemma 3.1)."""
    return n * U / (1 - n * U)


def _card(shape: tuple[int, int]) -> ModelCard:
    return ModelCard(
        model_id="eeg-diff-tiny",
        modality="EEG",
        training_dataset="None",
        species="Human",
        model_type="tiny CNN + linear map",
        outputs=(
            Output(
                name="responses",
                dims=(Dim(name="channel", size=shape[0]), Dim(name="time", size=shape[1])),
            ),
        ),
    )


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1)
    )


@pytest.fixture(params=["matrix", "linear"])
def model(request: pytest.FixtureRequest) -> Iterator[EncodingModel]:
    """A 32 x 32 input CNN (4 features) with a plain or scaler/PCA/regression readout, (2, 3)."""
    rng = np.random.default_rng(0)
    if request.param == "matrix":
        arrays = {"weight": rng.normal(size=(4, 6)), "bias": rng.normal(size=6)}
    else:
        arrays = {
            "scaler_param": {"mean_": rng.normal(size=4), "scale_": rng.uniform(1, 2, size=4)},
            "pca_param": {"components_": rng.normal(size=(3, 4)), "mean_": rng.normal(size=4)},
            "reg_param": {"coef_": rng.normal(size=(6, 3)), "intercept_": rng.normal(size=6)},
        }
    card = _card((2, 3))
    load = LoadRequest(
        model_id=card.model_id,
        card=card,
        berg_dir=".",
        device="cpu",
        dim_picks={"time": {"labels": [2, 0]}},
    )
    built = build_readout_model(
        load,
        backbone=_net(),
        nodes=("2",),
        preprocessing=ImageTransform(size=SIDE, resize=SIDE),
        readout=arrays,
    )
    built.arrays = arrays
    with built:
        yield built


def _exact_and_bound(model: EncodingModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 responses from the float32 network input, and a rigorous float32 error bound.

    The network input ``(x - mean) / std`` is taken as exact: it is the same float32 tensor in
    both paths (for 8-bit images at the preset's size nothing is resized and ``/ 255`` is the same
    division in both; for float images of any size the test asserts it), so only the convolution
    (192-term sums), the average (16 terms) and the readout round differently; each is bounded
    by ``gamma_n`` times the sum of the terms' magnitudes, propagated through the following
    linear steps by their absolute weights.
    """
    with torch.inference_mode():  # the preprocessor's buffer was made in inference mode
        pre = model.preprocessor(images).double()
    conv = model.extractor.module.get_submodule("0")
    w, b = conv.weight.double(), conv.bias.double()
    y = torch.nn.functional.conv2d(pre, w, b, stride=8)
    err = _gamma(193) * torch.nn.functional.conv2d(pre.abs(), w.abs(), b.abs(), stride=8)
    y, err = y.clamp(min=0), err  # ReLU is 1-Lipschitz
    m = y.shape[-1] * y.shape[-2]
    feats = y.mean(dim=(2, 3))
    err = err.mean(dim=(2, 3)) + _gamma(m + 1) * y.abs().mean(dim=(2, 3))
    feats, err = feats.numpy(), err.numpy()
    a = model.arrays
    if "weight" in a:
        out = feats @ a["weight"] + a["bias"]
        bound = err @ np.abs(a["weight"]) + _gamma(5) * (np.abs(feats) @ np.abs(a["weight"]))
        bound += _gamma(5) * np.abs(a["bias"])
    else:
        s, p, r = a["scaler_param"], a["pca_param"], a["reg_param"]
        centred = (feats - s["mean_"]) / s["scale_"] - p["mean_"]
        err_c = err / s["scale_"] + 3 * _gamma(1) * (
            np.abs(feats - s["mean_"]) / s["scale_"] + np.abs(centred) + np.abs(p["mean_"])
        )
        comp = p["components_"]
        z = centred @ comp.T
        err_z = err_c @ np.abs(comp).T + _gamma(4) * (np.abs(centred) @ np.abs(comp).T)
        out = z @ r["coef_"].T + r["intercept_"]
        bound = err_z @ np.abs(r["coef_"]).T
        bound += _gamma(4) * (np.abs(z) @ np.abs(r["coef_"]).T + np.abs(r["intercept_"]))
    shape = (len(images), 2, 3)
    keep = [2, 0]  # the dim pick on "time"
    return out.reshape(shape)[:, :, keep], bound.reshape(shape)[:, :, keep]


def test_differentiable_equals_encode_within_float32_bound(model: EncodingModel) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 3, SIDE, SIDE), dtype=np.uint8)
    encoded = model.encode(as_stimulus(images), show_progress=False)
    module = model.differentiable()
    (got,) = module(torch.from_numpy(images).float() / 255)
    assert got.shape == encoded.shape == (3, 2, 2) and got.dtype == torch.float32
    exact, bound = _exact_and_bound(model, images)
    # each float32 result lies within the bound of the exact one, so they lie within 2 bounds
    assert np.all(np.abs(encoded - exact) <= bound)
    assert np.all(np.abs(got.detach().numpy() - encoded) <= 2 * bound)
    # the bound is tight enough to see a wrong column
    assert np.any(np.abs(got.detach().numpy()[:, :, ::-1] - encoded) > 2 * bound)


@pytest.mark.parametrize("size", [(40, 52), (20, 26)], ids=["down", "up"])
def test_float_stimulus_of_any_size_matches(model: EncodingModel, size: tuple[int, int]) -> None:
    """Float32 images of another size: the same network input, then within the derived bound.

    The comparison is between equal computations. On a float32 stimulus ``encode``'s
    preprocessor and the module's transform call the same torchvision functions (``resize``,
    bilinear and antialiased, shrinking or enlarging; ``center_crop``) on the same float32
    tensor, then compute ``(x - mean) / std``: subtraction and division are correctly rounded
    IEEE operations, so in place (``encode``) or out of place (the module) they give the same
    floats. The network input is therefore the same tensor, bit for bit, whatever the CPU (1); from
    there the two paths differ only by the rounding of the network and the readout, which
    :func:`_exact_and_bound` bounds rigorously (Higham's ``gamma_n``, the deterministic worst
    case) around the float64 responses to that input: each float32 result lies within the bound,
    so the two lie within twice it (2). (An 8-bit stimulus of another size is not comparable so:
    ``encode`` rounds the resized image to 8 bits, up to ``0.5 / 255`` per pixel, which has no
    gradient.) The bound, the worst case, is a few ``1e-4`` of the responses here; a real
    mistake moves them by hundreds of times it: the check (3) gives the module's network swapped
    colour channels and images without the normalisation and asserts both land outside it.
    """
    images = np.random.default_rng(2).uniform(0, 1, (2, 3, *size)).astype(np.float32)
    encoded = model.encode(as_stimulus(images), show_progress=False)
    module = model.differentiable()
    x = torch.from_numpy(images)
    with torch.inference_mode():  # the preprocessor's buffer was made in inference mode
        pre = model.preprocessor(images).clone()
    # (1) the same network input
    assert torch.equal(module.transform(x), pre)
    # (2) each path within the float32 bound of the exact responses to that input
    (got,) = module(x)
    got = got.detach().numpy()
    exact, bound = _exact_and_bound(model, images)
    assert got.shape == encoded.shape == exact.shape == (2, 2, 2)
    assert np.all(np.abs(encoded - exact) <= bound)
    assert np.all(np.abs(got - exact) <= bound)
    assert np.all(np.abs(got - encoded) <= 2 * bound)
    # (3) the bound sees a swapped channel order and a missing normalisation
    right = module.transform
    mean, std = model.preprocessor.mean, model.preprocessor.std
    for wrong in (lambda t: right(t.flip(1)), lambda t: right(t) * std + mean):
        module.transform = wrong
        (bad,) = module(x)
        assert np.any(np.abs(bad.detach().numpy() - encoded) > 2 * bound)


def test_gradients_are_finite_and_reach_every_pixel(model: EncodingModel) -> None:
    images = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    images.requires_grad_(True)
    (out,) = model.differentiable()(images)
    out.sum().backward()
    assert images.grad is not None and images.grad.shape == images.shape
    assert torch.isfinite(images.grad).all()
    assert (images.grad != 0).float().mean() > 0.5
    # the model's own parameters stay frozen
    assert not any(p.requires_grad for p in model.differentiable().parameters())


def test_bad_images_are_named(model: EncodingModel) -> None:
    module = model.differentiable()
    with pytest.raises(InvalidParameterError, match=r"images of dtype torch\.uint8"):
        module(torch.zeros(1, 3, SIDE, SIDE, dtype=torch.uint8))
    with pytest.raises(InvalidParameterError, match=r"images of shape \(1, 1, 32, 32\)"):
        module(torch.zeros(1, 1, SIDE, SIDE))
    with pytest.raises(InvalidParameterError, match=r"expected a torch\.Tensor"):
        module(np.zeros((1, 3, SIDE, SIDE), np.float32))


def test_closed_model_and_models_without_a_path(model: EncodingModel) -> None:
    class Plain(EncodingModel):
        def output_sizes(self) -> tuple[int, ...]:
            return (6,)

        def encode_batches(self, stimulus):  # pragma: no cover - never encoded
            yield (np.zeros((len(stimulus), 6), np.float32),)

    plain = Plain(model.request)
    with pytest.raises(NotDifferentiableError, match="model eeg-diff-tiny has no differentiable"):
        plain.differentiable()
    model.close()
    with pytest.raises(InvalidParameterError, match="was closed"):
        model.differentiable()
