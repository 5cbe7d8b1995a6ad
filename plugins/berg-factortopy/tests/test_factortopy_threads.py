"""The ``threads`` setting of training, ``berg maps`` and the encoder."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from berg_factortopy import cli
from berg_factortopy.config import TrainConfig
from berg_factortopy.model import FactorTopyEncodingModel
from berg_factortopy.threads import check_threads, torch_threads
from berg_factortopy.train import TrainResult

from berg_core import BERG, InvalidParameterError

MODEL = "fmri-nsd_fsaverage-factortopy"


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(before + 1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


@pytest.mark.parametrize("value", [0, -2, True, 1.5, "2"])
def test_bad_thread_counts_are_refused(value):
    with pytest.raises(InvalidParameterError, match=r"threads = .* must be a positive integer"):
        check_threads(value)
    with pytest.raises(InvalidParameterError, match="threads"):
        TrainConfig(threads=value)
    assert check_threads(3) == 3 and check_threads(None) is None


def test_train_cli_has_threads_and_may_change_it_on_resume():
    parser = argparse.ArgumentParser()
    cli.configure_train(parser)
    args = parser.parse_args(["--data", "d", "--out", "o", "--threads", "1"])
    assert args.threads == 1
    assert parser.parse_args(["--data", "d", "--out", "o"]).threads is None
    stored = TrainConfig(threads=None)
    assert stored.resumed(TrainConfig(threads=2)).threads == 2


def test_encoder_threads_option(berg: BERG, trained: TrainResult, monkeypatch, tmp_path: Path):
    with pytest.raises(InvalidParameterError, match="threads"):
        berg.get_encoding_model(
            MODEL, subject=1, device="cpu", checkpoint=trained.folder, threads=0
        )
    with pytest.raises(InvalidParameterError, match="threads"):
        berg.get_encoding_model(
            MODEL, subject=1, device="cpu", checkpoint=trained.folder, threads=True
        )
    seen: list[int] = []
    original = FactorTopyEncodingModel._responses

    def recording(self, batch):
        seen.append(torch.get_num_threads())
        return original(self, batch)

    monkeypatch.setattr(FactorTopyEncodingModel, "_responses", recording)
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    before = torch.get_num_threads()
    outputs = []
    for threads in (None, before + 1):
        options = {} if threads is None else {"threads": threads}
        with berg.get_encoding_model(
            MODEL, subject=1, device="cpu", checkpoint=trained.folder, batch_size=2, **options
        ) as model:
            outputs.append(berg.encode(model, images, show_progress=False))
        assert torch.get_num_threads() == before
    assert seen == [before] * 3 + [before + 1] * 3  # 5 images in batches of 2
    for a, b in zip(*outputs, strict=True):
        assert a.shape == b.shape == (5, 150) and a.dtype == b.dtype == np.float32


def test_maps_command_threads(trained: TrainResult, tmp_path: Path, monkeypatch):
    seen: list[int] = []
    import berg_factortopy.maps as maps

    original = maps.compute_maps

    def recording(checkpoint):
        seen.append(torch.get_num_threads())
        return original(checkpoint)

    monkeypatch.setattr(maps, "compute_maps", recording)
    before = torch.get_num_threads()
    args = argparse.Namespace(
        checkpoint=trained.folder, out=tmp_path / "m", no_figures=True, force=False, threads=2
    )
    assert cli.run_maps(args) == 0
    assert seen == [2] and torch.get_num_threads() == before
    args.threads = 0
    with pytest.raises(InvalidParameterError, match="--threads = 0"):
        cli.run_maps(args)
