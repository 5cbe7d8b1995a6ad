"""Training: recovery of the synthetic ground truth, checkpoint files, token caches, resume."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from berg_factortopy.checkpoint import load_checkpoint, load_tensors
from berg_factortopy.config import TrainConfig
from berg_factortopy.data import TrainingData
from berg_factortopy.maps import compute_maps
from berg_factortopy.train import TrainResult, r2_score, train
from factortopy_testkit import LAYERS, Truth

from berg_core import InvalidParameterError, ModelLoadError


def _both(values: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([values["lh"], values["rh"]])


def test_training_recovers_each_vertex_layer_and_location(trained: TrainResult, truth: Truth):
    maps = compute_maps(load_checkpoint(trained.folder))
    layer = maps["layer_argmax"].astype(int)
    true_layer = _both(truth.layer)
    assert np.bincount(true_layer, minlength=3).min() >= 20  # every layer is someone's answer
    assert (layer == true_layer).mean() >= 0.9
    for hemi, rows in (("lh", slice(0, 150)), ("rh", slice(150, 300))):
        assert (layer[rows] == truth.layer[hemi]).mean() >= 0.9, hemi
    location = np.stack([maps["location_x"], maps["location_y"]], axis=1)
    error = np.linalg.norm(location - _both(truth.location), axis=1)
    assert np.median(error) < 0.1  # of a [-1, 1] range: the right place in the map
    assert maps["scale"].mean() < 0.5  # the truth reads local tokens only


def test_validation_r2_is_close_to_the_snr_limit(trained: TrainResult, truth: Truth):
    val = trained.val_indices
    targets = _both({h: truth.responses[h][val].T for h in ("lh", "rh")}).T
    signal = _both({h: truth.signal[h][val].T for h in ("lh", "rh")}).T
    limit = r2_score(targets, signal)  # what predicting the noiseless signal achieves
    assert 0.7 < limit.mean() < 0.9
    r2 = _both(trained.val_r2)
    assert r2.mean() >= limit.mean() - 0.05
    assert np.median(r2) >= np.median(limit) - 0.05
    # the reported R² is that of the reported predictions
    np.testing.assert_allclose(r2, r2_score(targets, trained.val_predictions), atol=1e-5)


def test_checkpoint_folder(trained: TrainResult, data: TrainingData):
    folder = trained.folder
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "berg-factortopy/1"
    assert config["model_id"] == "fmri-nsd_fsaverage-factortopy"
    assert config["subject"] == 1
    assert config["layers"] == list(LAYERS)
    assert config["local_channels"] == config["global_channels"] == [16, 16, 16]
    assert config["local_shapes"]["conv1"] == [16, 16, 16]
    assert (config["n_lh"], config["n_rh"]) == (150, 150)
    assert config["train"]["backbone"] == "factortopy_testkit:TinyBackbone"
    assert config["data"] == {
        "source": data.source,
        "n_images": 700,
        "n_train": 595,
        "n_val": 105,
    }
    assert config["best_epoch"] == trained.best_epoch
    metrics = json.loads((folder / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == list(range(1, 15))
    assert config["val_r2_mean"] == pytest.approx(max(m["val_r2_mean"] for m in metrics))
    assert metrics[0]["reg_weight"] > 0 and metrics[-1]["reg_weight"] == 0  # decayed to zero
    accuracy = np.load(folder / "accuracy.npz", allow_pickle=False)
    np.testing.assert_array_equal(accuracy["lh_vertices"], data.lh_vertices)
    np.testing.assert_array_equal(accuracy["lh_r2_val"], trained.val_r2["lh"])
    weights = torch.load(folder / "model.pt", weights_only=True)
    assert weights["epoch"] == trained.best_epoch
    assert weights["state_dict"]["weight"].shape == (300, 16)
    state = torch.load(folder / "training_state.pt", weights_only=True)
    assert state["epoch"] == 14 and state["step"] == 14 * 19


def test_an_unsafe_checkpoint_is_refused_unexecuted(tmp_path: Path, trained: TrainResult):
    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "pwned"),))

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text((trained.folder / "config.json").read_text())
    torch.save({"state_dict": {}, "x": Payload()}, folder / "model.pt")
    with pytest.raises(ModelLoadError, match="can be read safely"):
        load_checkpoint(folder)
    assert not (tmp_path / "pwned").exists()


def _states(folder: Path) -> dict[str, torch.Tensor]:
    return load_tensors(folder / "training_state.pt")["state_dict"]


def test_resume_continues_exactly_where_the_run_stopped(
    tmp_path: Path, small_data: TrainingData, spheres: Path, small_config: TrainConfig
):
    straight = train(
        small_data, spheres, tmp_path / "straight", replace(small_config, epochs=4),
        show_progress=False,
    )  # fmt: skip
    # the same run, stopped after 2 epochs (tokens cached on disk this time) and resumed
    disk = replace(small_config, cache="disk")
    train(small_data, spheres, tmp_path / "resumed", disk, show_progress=False)
    cache = tmp_path / "resumed" / "token_cache.h5"
    assert cache.is_file()
    built = cache.stat().st_mtime_ns
    with pytest.raises(InvalidParameterError, match="already holds a FactorTopy checkpoint"):
        train(small_data, spheres, tmp_path / "resumed", disk, show_progress=False)
    resumed = train(
        small_data, spheres, tmp_path / "resumed", replace(disk, epochs=4, lr=123.0),
        resume=True, show_progress=False,
    )  # fmt: skip
    assert cache.stat().st_mtime_ns == built  # the complete cache was reused, not rebuilt
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    a, b = _states(tmp_path / "straight"), _states(tmp_path / "resumed")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert resumed.best_epoch == straight.best_epoch
    np.testing.assert_allclose(resumed.val_predictions, straight.val_predictions, atol=1e-5)
    stored = json.loads((tmp_path / "resumed" / "config.json").read_text())["train"]
    assert stored["lr"] == small_config.lr  # only runtime settings change on resume
    assert stored["epochs"] == 4


def test_resume_refuses_other_data(
    tmp_path: Path, small_data: TrainingData, spheres: Path, small_config: TrainConfig
):
    with pytest.raises(InvalidParameterError, match="nothing to resume"):
        train(small_data, spheres, tmp_path / "none", small_config, resume=True)
    train(small_data, spheres, tmp_path / "run", replace(small_config, epochs=1),
          show_progress=False)  # fmt: skip
    other = replace(small_data, lh=small_data.lh[:, :30], lh_vertices=small_data.lh_vertices[:30])
    with pytest.raises(InvalidParameterError, match="lh vertices differ"):
        train(other, spheres, tmp_path / "run", small_config, resume=True, show_progress=False)


def test_no_cache_trains_like_the_ram_cache(
    tmp_path: Path, small_data: TrainingData, spheres: Path, small_config: TrainConfig
):
    one = replace(small_config, epochs=1)
    cached = train(small_data, spheres, tmp_path / "ram", one, show_progress=False)
    live = train(small_data, spheres, tmp_path / "live", replace(one, cache="none"),
                 show_progress=False)  # fmt: skip
    assert not (tmp_path / "live" / "token_cache.h5").exists()
    np.testing.assert_allclose(live.val_predictions, cached.val_predictions, atol=1e-4)


def test_float16_cache_halves_memory_and_stays_close(
    tmp_path: Path, small_data: TrainingData, spheres: Path, small_config: TrainConfig
):
    one = replace(small_config, epochs=1, cache="disk")
    full = train(small_data, spheres, tmp_path / "f32", one, show_progress=False)
    half = train(small_data, spheres, tmp_path / "f16", replace(one, cache_dtype="float16"),
                 show_progress=False)  # fmt: skip
    size32 = (tmp_path / "f32" / "token_cache.h5").stat().st_size
    size16 = (tmp_path / "f16" / "token_cache.h5").stat().st_size
    assert size16 < 0.6 * size32
    np.testing.assert_allclose(half.val_predictions, full.val_predictions, atol=0.05)


def test_settings_are_validated():
    with pytest.raises(InvalidParameterError, match="cache = 'gpu'"):
        TrainConfig(cache="gpu")
    with pytest.raises(InvalidParameterError, match="epochs = 0"):
        TrainConfig(epochs=0)
    with pytest.raises(InvalidParameterError, match="val_fraction"):
        TrainConfig(val_fraction=1.0)
    with pytest.raises(InvalidParameterError, match="unknown training setting"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    stored = TrainConfig(lr=0.5, epochs=3)
    assert stored.resumed(TrainConfig(lr=9.0, epochs=7, device="cpu")) == replace(
        stored, epochs=7, device="cpu"
    )
