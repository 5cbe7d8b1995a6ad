"""Gradient synthesis through a tiny torchkit encoder: it drives, suppresses, is seeded, writes;
the CLI writes what the API computes and names bad arguments."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

import berg_insilico.plugin  # noqa: E402
from berg_insilico.synthesis import (  # noqa: E402
    COLOUR_SQRT,
    SynthesisResult,
    _gaussian_blur,
    _parameterise,
    synthesise,
)

from berg_core import (  # noqa: E402
    Dim,
    EncodingModel,
    InvalidParameterError,
    LoadRequest,
    ModelCard,
    NotDifferentiableError,
    Output,
    as_stimulus,
    hookimpl,
)
from berg_core.check import isolated_registry  # noqa: E402
from berg_core.cli import main  # noqa: E402
from berg_core.torchkit import ImageTransform, build_readout_model  # noqa: E402

SIDE = 32
CARD = ModelCard(
    model_id="fmri-synth-tiny",
    modality="fMRI",
    training_dataset="None",
    species="Human",
    model_type="tiny CNN + linear map",
    outputs=(Output(name="responses", dims=(Dim(name="unit", size=4),)),),
)


def _tiny(units: list[int] | None = None) -> EncodingModel:
    """A 32 x 32 CNN (8 features) with a random linear map to 4 units; *units* picked."""
    picks = {} if units is None else {"unit": {"labels": units}}
    request = LoadRequest(
        model_id=CARD.model_id, card=CARD, berg_dir=".", device="cpu", dim_picks=picks
    )
    return _load_tiny(request)


def _load_tiny(request: LoadRequest) -> EncodingModel:
    """The tiny model for *request* (the loader the CLI's plugin registers)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1)
    )
    rng = np.random.default_rng(0)
    return build_readout_model(
        request,
        backbone=net,
        nodes=("2",),
        preprocessing=ImageTransform(size=SIDE, resize=SIDE),
        readout={"weight": rng.normal(size=(8, 4)), "bias": np.zeros(4)},
    )


@pytest.fixture(scope="module")
def model() -> Iterator[EncodingModel]:
    with _tiny() as built:
        yield built


def _encoded_mean(model: EncodingModel, images: np.ndarray) -> np.ndarray:
    """The area's response through the public encode path: mean over its columns."""
    return model.encode(as_stimulus(images), show_progress=False).reshape(len(images), -1).mean(1)


def _natural(n: int = 12) -> np.ndarray:
    """Smooth colour gradients and blobs: a small 'natural' set."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    images = np.empty((n, 3, SIDE, SIDE), np.uint8)
    for i in range(n):
        a, b, c = rng.uniform(-3, 3, 3)
        phase = rng.uniform(0, 2 * np.pi, 3)
        for ch in range(3):
            wave = np.sin(a * x * 6 + b * y * 6 + c * x * y * 6 + phase[ch])
            images[i, ch] = np.uint8(np.clip(127.5 + 127.5 * wave, 0, 255))
    return images


def _assert_rises(result: SynthesisResult, sign: float = 1.0) -> None:
    """The objective rises (falls to suppress): each checkpoint at least the previous one minus
    5 % of the total gain, and the final value above the initial one, for every image."""
    score = sign * result.objective
    gain = score[-1] - score[0]
    assert np.all(gain > 0), gain
    assert np.all(np.diff(score, axis=0) >= -0.05 * gain), score


def test_drive_rises_and_beats_the_best_natural_image(model: EncodingModel) -> None:
    natural = _natural()
    best = _encoded_mean(model, natural).max()
    result = synthesise(
        model, size=SIDE, n_images=2, steps=40, lr=0.1, parameterisation="pixel", every=5,
        show_progress=False,
    )  # fmt: skip
    assert result.images.shape == (2, 3, SIDE, SIDE) and result.images.dtype == np.float32
    assert 0 <= result.images.min() and result.images.max() <= 1
    assert list(result.steps) == list(range(0, 41, 5))
    _assert_rises(result)
    # the 8-bit images, through encode, beat every natural image
    synthesised = _encoded_mean(model, result.images_uint8())
    assert synthesised.min() > best
    # the recorded objective is the encoder's response (float path, no 8-bit rounding): the
    # same no-grad evaluation of the final images, times the weight 1
    np.testing.assert_array_equal(result.objective[-1], result.responses[:, 0])
    # ... of the returned images: the model's differentiable path on them, the same float32
    # operations on the same values (that path equals encode within the float32 bound derived
    # in tests/torchkit/test_differentiable.py)
    with torch.no_grad():
        (path,) = model.differentiable()(torch.from_numpy(result.images))
    np.testing.assert_array_equal(result.objective[-1], path.flatten(1).mean(dim=1).double())


#: Unit roundoff of float32.
U = 2.0**-24


def _gamma(n: int) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``: relative error bound of ``n`` float32 roundings."""
    return n * U / (1 - n * U)


def _fourier_round_trip_bound(clipped: np.ndarray) -> np.ndarray:
    """Bound of ``|rendered - clipped|`` for start images rendered by the Fourier parameterisation.

    In exact arithmetic the parameterisation inverts its rendering: the start logits ``l`` (of the
    clipped images) are decorrelated by ``A = inv(C)``, transformed, divided and multiplied by the
    spectrum scale, transformed back and mixed by ``C``, so the sigmoid gives the clipped images
    back. In float32 (deterministic worst case, Higham, *Accuracy and Stability of Numerical
    Algorithms*, 2002), with ``l32`` the float32 logits and the float32 matrices ``C`` and ``A``:

    * the logits round once: ``u |l|``; ``C A`` is not exactly ``I``: ``|C A - I| |l32|``
      (measured from the two float32 matrices);
    * each 3-term colour mix: ``gamma_3`` times its absolute sum (decorrelation, then mixing);
    * each 2-D FFT (``L = log2(H W)`` stages, twiddles within ``u``): normwise relative error
      ``t = L eta / (1 - L eta) + u`` with ``eta = u + gamma_4 (sqrt 2 + u)`` (Theorem 24.2; the
      ``+ u`` is the orthonormal scaling), per image and channel; the half spectrum is part of the
      full one; dividing and multiplying by the scale: ``2.01 u``; the inverse reads the half
      spectrum as a Hermitian one, at most ``sqrt 2`` times its norm; an element is at most the
      norm of the error;
    * the sigmoid is 1/4-Lipschitz, and rounds (``exp``, add, divide) within ``4 u``.
    """
    l = np.log(clipped / (1 - clipped))  # noqa: E741
    l32 = l.astype(np.float32).astype(np.float64)
    # the colour matrix as _parameterise builds it, and its float32 inverse
    colour = torch.as_tensor(COLOUR_SQRT / np.linalg.norm(COLOUR_SQRT, axis=0).max()).float()
    c, a = colour.double().numpy(), torch.linalg.inv(colour).double().numpy()
    mix = lambda m, x: np.einsum("dc,nchw->ndhw", m, x)  # noqa: E731
    decorrelated = mix(a, l32)
    decorrelation_err = _gamma(3) * mix(np.abs(a), np.abs(l32))
    norm = np.sqrt(((np.abs(decorrelated) + decorrelation_err) ** 2).sum(axis=(2, 3)))
    stages = np.log2(clipped.shape[2] * clipped.shape[3])
    eta = U + _gamma(4) * (np.sqrt(2) + U)
    t = stages * eta / (1 - stages * eta) + U
    spectrum_err = t * norm + 2.01 * U * (1 + t) * norm
    hermitian_err = np.sqrt(2) * spectrum_err
    fft_err = (hermitian_err + t * (norm + hermitian_err))[:, :, None, None]
    logits_mag = mix(np.abs(a), np.abs(l32)) * (1 + _gamma(3)) + fft_err
    logit_err = (
        mix(np.abs(c @ a - np.eye(3)), np.abs(l32))
        + U * np.abs(l)
        + mix(np.abs(c), decorrelation_err + fft_err)
        + _gamma(3) * mix(np.abs(c), logits_mag)
    )
    return 0.25 * logit_err + 4 * U


def test_suppress_from_natural_images_with_priors(model: EncodingModel) -> None:
    start = _natural(2)
    result = synthesise(
        model, start=start, direction="suppress", steps=24, lr=0.05, parameterisation="fourier",
        blur=0.5, tv=0.01, l2=0.01, every=4, show_progress=False,
    )  # fmt: skip
    _assert_rises(result, sign=-1.0)
    # the first checkpoint is the objective of the start images as the Fourier parameterisation
    # renders them, blurred: the same float32 operations on the same values, so equal
    param, render = _parameterise("fourier", start / 255.0, 2, (SIDE, SIDE), torch.Generator())
    with torch.no_grad():
        rendered = render(param)
        (path,) = model.differentiable()(_gaussian_blur(rendered, 0.5))
    np.testing.assert_array_equal(result.objective[0], path.flatten(1).mean(dim=1).double())
    # ... and those rendered images are the start images, clipped to [1e-3, 1 - 1e-3] (the logit
    # must be finite), within the float32 rounding of the round trip
    clipped = np.clip(start / 255.0, 1e-3, 1 - 1e-3)
    error = np.abs(rendered.double().numpy() - clipped)
    bound = _fourier_round_trip_bound(clipped)
    assert np.all(error <= bound), (error.max(), bound.min())
    # the bound is far below the pixel differences of the start images (it sees wrong colours)
    assert bound.max() < 0.01 * np.ptp(clipped)


def test_contrast_of_two_areas(model: EncodingModel) -> None:
    with _tiny([0, 1]) as a, _tiny([2, 3]) as b:
        result = synthesise(
            [a, b], weights=[1.0, -1.0], size=SIDE, steps=30, lr=0.1, parameterisation="pixel",
            every=10, show_progress=False,
        )  # fmt: skip
        images = result.images_uint8()
        contrast = _encoded_mean(a, images) - _encoded_mean(b, images)
        start = synthesise(
            [a, b], weights=[1.0, -1.0], size=SIDE, steps=1, lr=1e-6, parameterisation="pixel",
            show_progress=False,
        )  # fmt: skip
    _assert_rises(result)
    assert result.area_names == (CARD.model_id, CARD.model_id)
    # the same means, one float64 subtraction either way
    np.testing.assert_array_equal(result.objective[-1], result.responses @ np.array([1.0, -1.0]))
    assert contrast[0] > start.objective[0, 0]


def test_seeded_runs_repeat_and_seeds_differ(model: EncodingModel) -> None:
    kwargs = dict(size=SIDE, steps=6, jitter=3, parameterisation="fourier", show_progress=False)
    one = synthesise(model, seed=3, **kwargs)
    two = synthesise(model, seed=3, **kwargs)
    other = synthesise(model, seed=4, **kwargs)
    np.testing.assert_array_equal(one.images, two.images)
    np.testing.assert_array_equal(one.objective, two.objective)
    assert not np.array_equal(one.images, other.images)


def test_save_writes_images_grid_hdf5_and_csv(model: EncodingModel, tmp_path) -> None:
    import h5py
    from PIL import Image

    result = synthesise(model, size=SIDE, n_images=2, steps=4, every=2, show_progress=False)
    written = result.save(tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["grid.png", "image_000.png", "image_001.png", "objective.csv", "synthesis.h5"]
    png = np.asarray(Image.open(tmp_path / "out" / "image_001.png")).transpose(2, 0, 1)
    np.testing.assert_array_equal(png, result.images_uint8()[1])
    with h5py.File(tmp_path / "out" / "synthesis.h5") as f:
        np.testing.assert_array_equal(f["objective"][()], result.objective)
        np.testing.assert_array_equal(f["steps"][()], [0, 2, 4])
        assert f.attrs["direction"] == "drive" and f.attrs["steps"] == 4
    with open(tmp_path / "out" / "objective.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2
    assert float(rows[-1]["objective"]) == result.objective[-1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction": "up"}, r"direction='up': expected one of \['drive', 'suppress'\]"),
        ({"steps": 0}, r"steps=0: expected an integer >= 1"),
        ({"lr": -1.0}, r"lr=-1\.0: expected a finite number > 0"),
        ({"blur": float("nan")}, r"blur=nan: expected a finite number >= 0"),
        ({"parameterisation": "wavelet"}, r"parameterisation='wavelet': expected one of"),
        ({"jitter": 40}, r"jitter=40: expected fewer pixels than the image side 32"),
        ({"weights": [1.0, 2.0]}, r"weights=\[1\.0, 2\.0\]: expected 1 finite numbers"),
        ({"start": np.zeros((2, 1, 8, 8))}, r"start=array\(shape=\(2, 1, 8, 8\)"),
        ({"start": np.full((1, 3, 8, 8), 2.0)}, r"expected uint8 values or finite floats"),
        ({"device": "cuda:7"}, r"device='cuda:7': the areas' models are on \['cpu'\]"),
    ],
)
def test_bad_inputs_are_named(model: EncodingModel, kwargs: dict, message: str) -> None:
    kwargs = {"size": SIDE, "steps": 1, "show_progress": False, **kwargs}
    with pytest.raises(InvalidParameterError, match=message):
        synthesise(model, **kwargs)


def test_bad_areas_and_models_without_a_path(model: EncodingModel) -> None:
    with pytest.raises(InvalidParameterError, match=r"areas=\[\]: expected an EncodingModel"):
        synthesise([], show_progress=False)

    class Plain(EncodingModel):
        def output_sizes(self) -> tuple[int, ...]:
            return (4,)

        def encode_batches(self, stimulus):  # pragma: no cover - never encoded
            yield (np.zeros((len(stimulus), 4), np.float32),)

    with pytest.raises(NotDifferentiableError, match="fmri-synth-tiny has no differentiable"):
        synthesise(Plain(model.request), steps=1, show_progress=False)


# -- berg insilico synthesise ----------------------------------------------------------------------
class _TinyPlugin:
    """A berg plugin with the tiny model, so that the CLI loads it by id."""

    @hookimpl
    def register_models(self, register) -> None:
        register(CARD, _load_tiny)


def _cli(tmp_path, *argv: object) -> tuple[int, str, str]:
    """``berg --berg-dir tmp_path insilico synthesise *argv``: exit status, stdout, stderr."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    argv = ["--berg-dir", tmp_path, "insilico", "synthesise", *argv]
    with isolated_registry(modules={"tiny": _TinyPlugin(), "insilico": berg_insilico.plugin}):
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main([str(a) for a in argv])
            except SystemExit as exit:  # argparse's usage errors
                status = exit.code
    return status, out.getvalue(), err.getvalue()


#: A contrast of units 0-1 against units 2-3 of the tiny model, on the CPU.
CONTRAST = [
    "--area", "up", CARD.model_id, "unit=[0, 1]", "--area", "down", CARD.model_id, "unit=[2, 3]",
    "--weights", "1", "-1", "--device", "cpu", "--size", str(SIDE), "--quiet",
]  # fmt: skip


def test_cli_synthesise_writes_what_the_api_computes(tmp_path) -> None:
    """Exit 0; the PNGs, grid, HDF5 and CSV hold the run the Python API computes for the same
    arguments (the same seeded float32 operations, so the same values bit for bit)."""
    import h5py
    from PIL import Image

    out = tmp_path / "out"
    settings = ["--n-images", "2", "--steps", "4", "--every", "2", "--lr", "0.1"]
    settings += ["--parameterisation", "pixel", "--jitter", "2", "--tv", "0.01", "--seed", "3"]
    status, stdout, stderr = _cli(tmp_path, *CONTRAST, *settings, "--out", out)
    assert (status, stderr) == (0, "")
    names = ["image_000.png", "image_001.png", "grid.png", "synthesis.h5", "objective.csv"]
    assert stdout.splitlines() == [str(out / name) for name in names]
    with _tiny([0, 1]) as up, _tiny([2, 3]) as down:
        wanted = synthesise(
            [up, down], weights=[1.0, -1.0], size=SIDE, n_images=2, steps=4, every=2, lr=0.1,
            parameterisation="pixel", jitter=2, tv=0.01, seed=3, show_progress=False,
        )  # fmt: skip
    with h5py.File(out / "synthesis.h5") as f:
        images, objective = f["images"][()], f["objective"][()]
        assert images.dtype == np.float32 and images.shape == (2, 3, SIDE, SIDE)
        np.testing.assert_array_equal(images, wanted.images)
        np.testing.assert_array_equal(f["steps"][()], [0, 2, 4])
        np.testing.assert_array_equal(objective, wanted.objective)
        np.testing.assert_array_equal(f["responses"][()], wanted.responses)
        np.testing.assert_array_equal(f["weights"][()], [1.0, -1.0])
        assert [name.decode() for name in f["area_names"][()]] == ["up", "down"]
        attrs = dict(f.attrs)
        assert {k: attrs[k] for k in ("direction", "steps", "parameterisation", "seed")} == {
            "direction": "drive", "steps": 4, "parameterisation": "pixel", "seed": 3,
        }  # fmt: skip
        assert (attrs["jitter"], attrs["tv"], attrs["device"]) == (2, 0.01, "cpu")
    # J = mean(up) - mean(down) of the final images: one float64 subtraction, as the run does
    np.testing.assert_array_equal(objective[-1], wanted.responses @ [1.0, -1.0])
    for i in range(2):
        png = np.asarray(Image.open(out / f"image_{i:03d}.png"))
        assert png.shape == (SIDE, SIDE, 3) and png.dtype == np.uint8
        np.testing.assert_array_equal(png.transpose(2, 0, 1), np.rint(images[i] * 255))
    with Image.open(out / "grid.png") as grid:  # 2 x max(n, 2) panels of 2.2 x 4.6 in at 100 dpi
        assert (grid.format, grid.size) == ("PNG", (440, 460))
    with open(out / "objective.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["step"]), int(r["image"])) for r in rows] == [
        (step, image) for step in (0, 2, 4) for image in (0, 1)
    ]
    np.testing.assert_array_equal([float(r["objective"]) for r in rows], objective.ravel())


def test_cli_synthesise_from_start_images(tmp_path) -> None:
    """``--start`` files: read as 8-bit RGB, one image each, the run the API makes of them."""
    import h5py
    from PIL import Image

    start = _natural(2)
    paths = [tmp_path / f"start_{i}.png" for i in range(2)]
    for image, path in zip(start, paths, strict=True):
        Image.fromarray(image.transpose(1, 2, 0)).save(path)
    settings = ["--direction", "suppress", "--steps", "2", "--every", "1", "--blur", "0.5"]
    status, _, stderr = _cli(
        tmp_path, *CONTRAST, *settings, "--start", *paths, "--out", tmp_path / "o"
    )
    assert (status, stderr) == (0, "")
    with _tiny([0, 1]) as up, _tiny([2, 3]) as down:
        wanted = synthesise(
            [up, down], weights=[1.0, -1.0], start=start, direction="suppress", steps=2, every=1,
            blur=0.5, show_progress=False,
        )  # fmt: skip
    with h5py.File(tmp_path / "o" / "synthesis.h5") as f:
        np.testing.assert_array_equal(f["objective"][()], wanted.objective)
        np.testing.assert_array_equal(f["images"][()], wanted.images)
        assert f.attrs["start"] == "images" and f.attrs["direction"] == "suppress"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], r"berg: error: steps=0: expected an integer >= 1"),
        (["--lr", "-1"], r"berg: error: lr=-1\.0: expected a finite number > 0"),
        (["--jitter", "40"], r"jitter=40: expected fewer pixels than the image side 32"),
        (["--size", "4"], r"berg: error: size=4: expected an integer >= 8"),
        (["--weights", "1"], r"weights=\[1\.0\]: expected 2 finite numbers \(one per area\)"),
        (["--subjects", "1", "2"], r"--subjects \[1, 2\]: synthesis takes one subject"),
        (["--start", "no/such/x.png"], r"--start 'no/such/x\.png': not a readable image"),
        (["--area", "x"], r"--area 'x': give a name and a model id"),
        (["--direction", "up"], r"argument --direction: invalid choice: 'up'"),
        (["--steps", "many"], r"argument --steps: invalid int value: 'many'"),
        (["--parameterisation", "wavelet"], r"argument --parameterisation: invalid choice"),
    ],
)
def test_cli_synthesise_bad_arguments_exit_2(tmp_path, argv: list[str], message: str) -> None:
    """Each bad argument: exit status 2, a message naming it, nothing written."""
    status, stdout, stderr = _cli(tmp_path, *CONTRAST, *argv, "--out", tmp_path / "out")
    assert status == 2 and stdout == ""
    assert re.search(message, stderr), stderr
    assert not (tmp_path / "out").exists()
