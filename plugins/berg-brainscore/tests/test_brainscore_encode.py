"""Fitting and encoding end to end, offline: a seeded random AlexNet and small benchmark data.

The data (see ``bs_fixtures``) are written in Brain-Score's own on-disk format and read by the real
benchmarks; each neuroid's response is a known linear readout of the region's committed layer plus
noise, so a correct pipeline predicts held-out images well and a misaligned one does not.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("brainscore_vision")

import bs_fixtures
from berg_brainscore import cache
from berg_brainscore import model as bs_model
from berg_brainscore.benchmarks import BENCHMARKS

from berg_core import BERG, InvalidParameterError, ModelLoadError

MODEL = "brainscore_vision-" + bs_fixtures.MODEL_ID
DATASET = {"V1": "FreemanZiemba2013", "V2": "FreemanZiemba2013", "V4": "MajajHong2015"}
DATASET["IT"] = "MajajHong2015"


def held_out_images(n: int = 36, seed: int = 77) -> np.ndarray:
    images, _ = bs_fixtures.make_images(seed, n, size=72)  # new images, another size
    return images


def median_r(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.median([np.corrcoef(predicted[:, j], truth[:, j])[0, 1] for j in range(truth.shape[1])])
    )


@pytest.fixture(scope="session")
def loaded(world: dict[str, Any], shared_berg_dir: Path) -> dict[str, Any]:
    """Each ROI's model, fitted once into the shared berg_dir."""
    berg = BERG(shared_berg_dir)
    return {
        roi: berg.get_encoding_model(MODEL, selection={"roi": roi}, device="cpu")
        for roi in ("V1", "V2", "V4", "IT")
    }


@pytest.mark.parametrize("roi", ["V1", "V2", "V4", "IT"])
def test_held_out_prediction(roi: str, world: dict[str, Any], loaded: dict[str, Any]) -> None:
    model = loaded[roi]
    assert model.fitted
    dataset = world[DATASET[roi]]
    images = held_out_images()
    responses = BERG(model.request.berg_dir).encode(model, images, show_progress=False)
    assert responses.dtype == np.float32
    assert responses.shape == (len(images), bs_fixtures.NEUROIDS[roi])
    truth = dataset.readouts[roi](images)
    r = median_r(responses, truth)
    assert r > 0.6, f"{roi}: held-out median r = {r:.3f}"


def test_metadata(world: dict[str, Any], loaded: dict[str, Any]) -> None:
    import brainscore_vision

    model = loaded["IT"]
    _, metadata = BERG(model.request.berg_dir).encode(
        model, held_out_images(4), return_metadata=True, show_progress=False
    )
    info = metadata["brainscore"]
    benchmark = brainscore_vision.load_benchmark("MajajHong2015public.IT-pls")
    assembly = benchmark._assembly.transpose("presentation", "neuroid")
    np.testing.assert_array_equal(info["neuroid_id"], assembly["neuroid_id"].values.astype(str))
    assert set(info["neuroid_region"]) == {"IT"}
    assert info["region"] == "IT"
    assert info["layer"] == "features.12"
    assert info["benchmark"] == "MajajHong2015public.IT-pls"
    assert info["benchmark_identifier"] == "MajajHong2015.IT.public-pls"
    np.testing.assert_array_equal(info["time_bins"], [[70, 170]])
    assert info["versions"]["brainscore_vision"] == version("brainscore-vision")
    assert info["versions"]["scikit_learn"] == version("scikit-learn")
    assert info["versions"]["model_revision"] == "in-process:" + bs_fixtures.MODEL_ID
    assert info["regression"]["n_components"] == 25 and info["regression"]["scale"] is False
    assert info["regression"]["n_stimuli"] == bs_fixtures.N_HVM
    assert metadata["output"]["model_id"] == MODEL
    assert metadata["output"]["selection"] == {"roi": "IT"}
    np.testing.assert_array_equal(
        metadata["output"]["columns"]["responses"], np.arange(bs_fixtures.NEUROIDS["IT"])
    )
    # the labelled output: one dim, neuroid, whose coordinates are the benchmark's neuroid ids
    assert metadata["output"]["dims"] == {"responses": ["image", "neuroid"]}
    np.testing.assert_array_equal(
        metadata["output"]["coords"]["responses"]["neuroid"], info["neuroid_id"]
    )
    v1 = loaded["V1"].response_metadata()["brainscore"]
    np.testing.assert_array_equal(v1["time_bins"], [[50, 200]])
    assert v1["benchmark_identifier"] == "FreemanZiemba2013.V1.public-pls"


def test_pick_neuroids_by_id(loaded: dict[str, Any]) -> None:
    """selection['neuroid'] keeps the named neuroids, in the order given (the core's dim pick)."""
    full_model = loaded["V4"]
    berg = BERG(full_model.request.berg_dir)
    ids = full_model.coords()["responses"]["neuroid"]
    picked = [str(ids[5]), str(ids[0]), str(ids[5])]
    model = berg.get_encoding_model(MODEL, selection={"roi": "V4", "neuroid": picked}, device="cpu")
    assert not model.fitted  # the cached regression
    images = held_out_images(6)
    full = berg.encode(full_model, images, show_progress=False)
    responses, metadata = berg.encode(model, images, return_metadata=True, show_progress=False)
    np.testing.assert_array_equal(responses, full[:, [5, 0, 5]])
    assert metadata["output"]["coords"]["responses"]["neuroid"].tolist() == picked
    np.testing.assert_array_equal(metadata["output"]["columns"]["responses"], [5, 0, 5])
    assert metadata["output"]["selection"] == {"roi": "V4", "neuroid": picked}
    with pytest.raises(InvalidParameterError, match=r"\['nope'\] not among the 10 neuroid co"):
        berg.get_encoding_model(MODEL, selection={"roi": "V4", "neuroid": ["nope"]}, device="cpu")


@pytest.mark.parametrize("roi", ["V4", "V1"])
def test_equals_brainscores_own_regression_bit_for_bit(
    roi: str, world: dict[str, Any], loaded: dict[str, Any]
) -> None:
    """Brain-Score's pls_regression, fitted independently on the same data, predicts the same."""
    import brainscore_vision
    from berg_brainscore.stimuli import stimulus_set
    from brainscore_vision.metrics.regression_correlation.metric import pls_regression

    model = loaded[roi]
    commitment = bs_fixtures.make_commitment()
    benchmark = brainscore_vision.load_benchmark(BENCHMARKS[roi].benchmark)
    commitment.start_recording(roi, time_bins=model.regression.time_bin_list())
    activations = bs_model._static(commitment.look_at(benchmark._assembly.stimulus_set))
    regression = pls_regression()
    regression.fit(activations, benchmark._assembly)
    pls = regression._regression
    cached = cache.read(model.cache_file)  # the file, not the object in memory
    np.testing.assert_array_equal(cached.x_mean, pls._x_mean)
    np.testing.assert_array_equal(cached.coef, pls.coef_)
    np.testing.assert_array_equal(cached.intercept, pls.intercept_)
    images = held_out_images(20)
    with stimulus_set(f"reference-{roi}", images=list(images)) as frame:  # Brain-Score
        new = bs_model._static(commitment.look_at(frame))
        expected = regression.predict(new).values.astype(np.float32)
    got = BERG(model.request.berg_dir).encode(model, images, show_progress=False)
    np.testing.assert_array_equal(got, expected)


def test_cache_is_used_on_the_second_load(
    world: dict[str, Any], loaded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("refitted although the cache matches")

    monkeypatch.setattr(bs_model, "fit_regression", no_fit)
    berg = BERG(loaded["IT"].request.berg_dir)
    images = held_out_images(10)
    first = berg.encode(loaded["IT"], images, show_progress=False)
    with berg.get_encoding_model(MODEL, selection={"roi": "IT"}) as again:
        assert not again.fitted
        assert again.response_metadata()["brainscore"]["regression"]["fitted_on_load"] is False
        np.testing.assert_array_equal(berg.encode(again, images, show_progress=False), first)
    with pytest.raises(InvalidParameterError, match="closed"):
        berg.encode(again, images, show_progress=False)


def test_output_follows_input_order(loaded: dict[str, Any]) -> None:
    model = loaded["V4"]
    berg = BERG(model.request.berg_dir)
    images = held_out_images(12)
    order = np.random.default_rng(3).permutation(len(images))
    forward = berg.encode(model, images, show_progress=False)
    shuffled = berg.encode(model, images[order], show_progress=False)
    np.testing.assert_array_equal(shuffled, forward[order])
    assert len({row.tobytes() for row in forward}) == len(images)  # rows really differ
    model.batch_size = 5  # chunks of 5 images, each its own stimulus set
    try:
        np.testing.assert_array_equal(berg.encode(model, images, show_progress=False), forward)
    finally:
        model.batch_size = type(model).batch_size


def test_the_stimulus_forms_agree(loaded: dict[str, Any], tmp_path: Path) -> None:
    from PIL import Image

    model = loaded["V2"]
    berg = BERG(model.request.berg_dir)
    images = held_out_images(9)
    paths = bs_fixtures.write_pngs(images, tmp_path / "folder")
    from_array = berg.encode(model, images, show_progress=False)
    from_folder = berg.encode(model, tmp_path / "folder", show_progress=False)
    from_list = berg.encode(model, [str(p) for p in paths], show_progress=False)
    np.testing.assert_array_equal(from_folder, from_array)
    np.testing.assert_array_equal(from_list, from_array)
    # int64 0-255, floats in [0, 1] (exact multiples of 1/255) and PIL images: the same pixels
    np.testing.assert_array_equal(
        berg.encode(model, images.astype(np.int64), show_progress=False), from_array
    )
    np.testing.assert_array_equal(
        berg.encode(model, images.astype(np.float32) / 255, show_progress=False), from_array
    )
    pil = [Image.open(p) for p in paths]
    np.testing.assert_array_equal(berg.encode(model, pil, show_progress=False), from_array)
    # a list with a repeated file keeps one row per entry, in order
    repeated = berg.encode(
        model, [str(paths[2]), str(paths[0]), str(paths[2])], show_progress=False
    )
    np.testing.assert_array_equal(repeated, from_array[[2, 0, 2]])


def test_activation_cache_is_keyed_by_content(loaded: dict[str, Any], tmp_path: Path) -> None:
    """Same name, other pixels: Brain-Score's activation cache must not serve the old ones."""
    model = loaded["IT"]
    berg = BERG(model.request.berg_dir)
    folder = tmp_path / "same-name"
    images = held_out_images(6, seed=1)
    bs_fixtures.write_pngs(images, folder)
    first = berg.encode(model, folder, show_progress=False)
    bs_fixtures.write_pngs(images[::-1].copy(), folder)  # same file names, other content
    second = berg.encode(model, folder, show_progress=False)
    np.testing.assert_array_equal(second, first[::-1])
    stored = glob.glob(os.path.join(os.environ["RESULTCACHING_HOME"], "*", "*berg-stimuli-IT-*"))
    assert len(stored) >= 2  # Brain-Score did cache them, under different names


def test_temporary_images_are_removed_even_on_error(
    loaded: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = loaded["IT"]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[Path] = []

    def broken_look_at(stimuli: Any, *args: object, **kwargs: object) -> None:
        path = Path(stimuli.get_stimulus(stimuli["stimulus_id"].iloc[0]))
        assert path.is_file() and path.suffix == ".png"
        assert oct(path.parents[2].stat().st_mode & 0o777) == "0o700"  # private
        seen.append(path)
        raise RuntimeError("the model broke")

    monkeypatch.setattr(model.brain_model, "look_at", broken_look_at)
    with pytest.raises(RuntimeError, match="the model broke"):
        BERG(model.request.berg_dir).encode(model, held_out_images(3), show_progress=False)
    assert seen and not seen[0].exists()
    assert not list(tmp_path.glob("berg-brainscore-*"))


def test_shuffled_responses_give_no_prediction(world: dict[str, Any], tmp_path: Path) -> None:
    """The control: responses attached to the wrong images. Fitted the same way, r is ~0."""
    home = Path(os.environ["BRAINIO_HOME"])
    shuffled = bs_fixtures.write_majajhong(home, shuffle=True)
    bs_fixtures.register_data(shuffled, world["FreemanZiemba2013"])
    try:
        model = BERG(tmp_path).get_encoding_model(MODEL, selection={"roi": "IT"})
        assert model.fitted
        images = held_out_images()
        responses = BERG(tmp_path).encode(model, images, show_progress=False)
    finally:
        bs_fixtures.register_data(world["MajajHong2015"], world["FreemanZiemba2013"])
    r = median_r(responses, world["MajajHong2015"].readouts["IT"](images))
    assert abs(r) < 0.3, f"shuffled control: median r = {r:.3f}"


def test_a_stale_cache_is_refitted(world: dict[str, Any], tmp_path: Path) -> None:
    berg = BERG(tmp_path)
    first = berg.get_encoding_model(MODEL, selection={"roi": "V4"})
    path = first.cache_file
    stale = cache.read(path)
    stale.info["brainscore_vision"] = "2.3.0"
    stale.coef = stale.coef * 0  # a stale file must not be used: its predictions would be flat
    cache.write(path, stale)
    with pytest.warns(RuntimeWarning, match="brainscore_vision = '2.3.0'"):
        second = berg.get_encoding_model(MODEL, selection={"roi": "V4"})
    assert second.fitted
    np.testing.assert_array_equal(cache.read(path).coef, first.regression.coef)


def test_missing_benchmark_data_names_the_files(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brainscore_core.supported_data_standards.brainio import fetch

    empty = tmp_path / "brainio"
    empty.mkdir()
    monkeypatch.setattr(fetch, "_local_data_path", str(empty))
    bs_fixtures.restore_real_data()  # the real registrations, with the real sha1s
    try:
        with pytest.raises(ModelLoadError) as info:
            BERG(tmp_path / "berg").get_encoding_model(MODEL, selection={"roi": "IT"})
    finally:
        bs_fixtures.register_data(world["MajajHong2015"], world["FreemanZiemba2013"])
    message = str(info.value)
    for data_file in BENCHMARKS["IT"].files:
        assert str(empty / data_file.sha1 / data_file.filename) in message
        assert data_file.url in message
    assert "$BRAINIO_HOME" in message and "load_dataset('MajajHong2015.public')" in message
    assert not list(empty.iterdir())  # the empty folders of the failed download are gone
    assert not (tmp_path / "berg").exists() or not list((tmp_path / "berg").rglob("*.npz"))


def test_the_real_registry_path_offline(world: dict[str, Any], tmp_path: Path) -> None:
    """brainscore_vision-alexnet through load_model('alexnet'), its own layer map and weights file.

    Without the weights file (and without network) the error says where to put it; with a file
    of random AlexNet weights in $TORCH_HOME the real plugin loads and is fitted.
    """
    import torch
    import torchvision

    checkpoint = Path(os.environ["TORCH_HOME"]) / "hub/checkpoints/alexnet-owt-7be5be79.pth"
    checkpoint.unlink(missing_ok=True)
    berg = BERG(tmp_path)
    with pytest.raises(ModelLoadError, match=r"\$TORCH_HOME/hub/checkpoints/"):
        berg.get_encoding_model("brainscore_vision-alexnet", selection={"roi": "IT"})
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), checkpoint)
    with berg.get_encoding_model("brainscore_vision-alexnet", selection={"roi": "IT"}) as model:
        info = model.response_metadata()["brainscore"]
        assert info["layer"] == "features.12"  # from the plugin's region_layer_map/alexnet.json
        assert info["versions"]["model_revision"].startswith("sha256:")
        responses = berg.encode(model, held_out_images(5), show_progress=False)
    assert responses.shape == (5, bs_fixtures.NEUROIDS["IT"])
    assert np.isfinite(responses).all()


def test_no_committed_layer_needs_consent(world: dict[str, Any], tmp_path: Path) -> None:
    import functools

    import brainscore_vision
    from brainscore_vision.model_helpers.activations.pytorch import (
        PytorchWrapper,
        load_preprocess_images,
    )
    from brainscore_vision.model_helpers.brain_transformation import ModelCommitment

    def uncommitted() -> Any:
        wrapper = PytorchWrapper(
            identifier="berg-test-uncommitted",
            model=bs_fixtures.network(),
            preprocessing=functools.partial(load_preprocess_images, image_size=64),
        )
        return ModelCommitment("berg-test-uncommitted", wrapper, layers=bs_fixtures.LAYERS)

    brainscore_vision.model_registry["berg-test-uncommitted"] = uncommitted
    try:
        with pytest.raises(ModelLoadError, match="allow_layer_selection=True"):
            BERG(tmp_path).get_encoding_model(
                "brainscore_vision-berg-test-uncommitted", selection={"roi": "V4"}
            )
    finally:
        del brainscore_vision.model_registry["berg-test-uncommitted"]


def test_devices(world: dict[str, Any], loaded: dict[str, Any], tmp_path: Path) -> None:
    import torch

    model = loaded["IT"]
    wrapper = model.brain_model.activations_model
    assert str(wrapper._device) == "cpu"
    assert next(wrapper._model.parameters()).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="CUDA is not available"):
            BERG(model.request.berg_dir).get_encoding_model(
                MODEL, selection={"roi": "IT"}, device="cuda"
            )


def test_feature_order_is_checked(loaded: dict[str, Any]) -> None:
    model = loaded["V1"]
    info = dict(model.regression.info)
    model.regression.info["feature_digest"] = "0" * 64
    model._features_checked = False
    try:
        with pytest.raises(ModelLoadError, match="delete that file to refit"):
            BERG(model.request.berg_dir).encode(model, held_out_images(2), show_progress=False)
    finally:
        model.regression.info = info
        model._features_checked = False


def test_berg_encode_command(loaded: dict[str, Any], tmp_path: Path) -> None:
    """``berg encode --roi V4`` streams the same responses into HDF5."""
    import h5py

    from berg_core.cli import main

    model = loaded["V4"]
    images = held_out_images(7)
    bs_fixtures.write_pngs(images, tmp_path / "images")
    out = tmp_path / "v4.h5"
    status = main(
        [
            "--berg-dir",
            str(model.request.berg_dir),
            "encode",
            MODEL,
            "--roi",
            "V4",
            "--stimulus",
            str(tmp_path / "images"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert status == 0
    expected = BERG(model.request.berg_dir).encode(model, images, show_progress=False)
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["responses"][()], expected)
        assert h5.attrs["model_id"] == MODEL
        assert json.loads(h5.attrs["selection"]) == {"roi": "V4"}
