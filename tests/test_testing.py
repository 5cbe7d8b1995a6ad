"""berg_core.testing: the reference-layout writer, the fake torchvision cache, check_model."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from berg_core import BERG
from berg_core.safe_npy import load_pickled_npy
from berg_core.testing import check_model, make_torch_home, use_torch_home, write_npy_dict


def test_write_npy_dict_round_trips(tmp_path: Path) -> None:
    data = {"coef_": np.arange(6, dtype=np.float32).reshape(2, 3), "meta": {"n": 3, "s": "x"}}
    path = write_npy_dict(tmp_path / "bd", "a/b/weights_subject-01.npy", data)
    assert path == tmp_path / "bd" / "a" / "b" / "weights_subject-01.npy"
    loaded = load_pickled_npy(path)
    np.testing.assert_array_equal(loaded["coef_"], data["coef_"])
    assert loaded["coef_"].dtype == np.float32
    assert loaded["meta"] == {"n": 3, "s": "x"}
    assert np.load(path, allow_pickle=True).item()["meta"]["s"] == "x"  # the reference reads it
    with pytest.raises(ValueError, match=r"must end in \.npy"):
        write_npy_dict(tmp_path, "weights.pkl", data)
    with pytest.raises(TypeError, match="must be a mapping"):
        write_npy_dict(tmp_path, "w.npy", [1, 2])  # type: ignore[arg-type]


def test_make_torch_home_writes_seeded_weights_under_the_url_name(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    def tiny(weights: object = None) -> object:
        return torch.nn.Linear(3, 2)

    weights = SimpleNamespace(url="https://example.org/models/tiny-0123abcd.pth?x=1")
    state = torch.get_rng_state()
    home = make_torch_home(tmp_path / "home", [(tiny, weights)], seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is unchanged
    saved = torch.load(home / "hub" / "checkpoints" / "tiny-0123abcd.pth", weights_only=True)
    torch.manual_seed(5)
    expected = tiny().state_dict()
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k]) for k in saved)
    other = make_torch_home(tmp_path / "other", [(tiny, weights)], seed=5)
    again = torch.load(other / "hub" / "checkpoints" / "tiny-0123abcd.pth", weights_only=True)
    assert all(torch.equal(again[k], expected[k]) for k in again)


def test_weights_by_name_and_use_torch_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torchvision = pytest.importorskip("torchvision")
    from berg_core.testing import _resolve_weights

    builder, weights = _resolve_weights("AlexNet_Weights.IMAGENET1K_V1")
    assert builder is torchvision.models.alexnet
    assert weights is torchvision.models.AlexNet_Weights.IMAGENET1K_V1
    monkeypatch.setenv("TORCH_HOME", "/before")
    with use_torch_home(tmp_path) as home:
        assert os.environ["TORCH_HOME"] == str(tmp_path) == str(home)
    assert os.environ["TORCH_HOME"] == "/before"
    monkeypatch.delenv("TORCH_HOME")
    with use_torch_home(tmp_path):
        pass
    assert "TORCH_HOME" not in os.environ


def test_check_model_passes_and_fails(berg_dir: Path, toy_plugin: ModuleType) -> None:
    berg = BERG(berg_dir)
    results = check_model(berg, "toy-synthetic-linear", subject=1)
    assert {r.status for r in results} == {"ok"}
    assert [r.name.split(": ")[-1] for r in results][:3] == ["load", "dims", "encode"]
    with pytest.raises(AssertionError, match=r"FAIL  toy-synthetic-linear \(subject 9\): load"):
        check_model(berg, "toy-synthetic-linear", subject=9)
