"""The template's own tests: berg's contract (berg_core.testing) plus values computed here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from berg_template.brainmodel import mean_rgb
from berg_template.plugin import (
    BRAINMODEL_FILE,
    BRAINMODEL_ID,
    CHANNELS,
    READOUT_FILE,
    READOUT_ID,
    TIMES_MS,
)

from berg_core import BERG, InvalidParameterError, ModelLoadError
from berg_core.check import check_plugin
from berg_core.safe_npy import load_pickled_npy
from berg_core.testing import check_model


def test_both_models_keep_the_contract(berg: BERG, images: np.ndarray) -> None:
    check_model(berg, READOUT_ID, subject=1, images=images)
    check_model(berg, BRAINMODEL_ID, subject=2, images=images, exponent=0.5)


def test_readout_values(berg: BERG, berg_dir: Path, images: np.ndarray) -> None:
    import torch
    from berg_template.readout import SEED, TRANSFORM, build_network

    torch.manual_seed(SEED)  # the network as the loader builds it
    network = build_network().eval()
    with torch.no_grad():
        features = network(TRANSFORM(torch.from_numpy(images))).numpy().astype(np.float64)
    weights = load_pickled_npy(berg_dir / READOUT_FILE.format(subject=2))
    want = (features @ weights["weight"] + weights["bias"]).reshape(4, len(CHANNELS), -1)
    model = berg.get_encoding_model(READOUT_ID, subject=2, device="cpu")
    got = berg.encode(model, images, show_progress=False)
    assert got.shape == (4, 4, 12) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # picks along the labelled dims: channels by name, a time window in ms
    model = berg.get_encoding_model(
        READOUT_ID, subject=2, selection={"channel": ["Pz", "O1"], "time": {"min": 0, "max": 30}}
    )
    picked, metadata = berg.encode(model, images, return_metadata=True, show_progress=False)
    times = [t for t in TIMES_MS if 0 <= t <= 30]
    np.testing.assert_allclose(
        picked, want[:, [3, 0]][:, :, [TIMES_MS.index(t) for t in times]], rtol=1e-4, atol=1e-5
    )
    assert metadata["output"]["coords"]["eeg"]["channel"].tolist() == ["Pz", "O1"]
    assert metadata["output"]["coords"]["eeg"]["time"].tolist() == times


def test_brainmodel_values_and_option(berg: BERG, berg_dir: Path, images: np.ndarray) -> None:
    weights = load_pickled_npy(berg_dir / BRAINMODEL_FILE.format(subject=1))
    pixels = images.reshape(4, 3, -1).astype(np.float64).mean(axis=2) / 255
    np.testing.assert_allclose(mean_rgb(images), pixels)
    linear = pixels @ weights["coef"] + weights["intercept"]
    for exponent in (1.0, 0.5):
        model = berg.get_encoding_model(BRAINMODEL_ID, subject=1, exponent=exponent)
        got = berg.encode(model, images, show_progress=False)
        want = np.sign(linear) * np.abs(linear) ** exponent
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidParameterError, match="exponent"):
        berg.get_encoding_model(BRAINMODEL_ID, subject=1, exponent=0)


def test_missing_file_names_it(tmp_path: Path, berg: BERG) -> None:
    with pytest.raises(ModelLoadError, match=r"weights_subject-01\.npy"):
        BERG(tmp_path).get_encoding_model(READOUT_ID, subject=1)


def test_berg_check_passes() -> None:
    report = check_plugin("berg_template.plugin")
    assert report.ok, "\n".join(report.lines)
    assert any(line.startswith("ok    light registration") for line in report.lines)
    assert sum(" metadata" in line for line in report.lines) == 2
