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
    names = [r.name.split(": ")[-1] for r in results][:4]
    assert names == ["load", "dims", "aux coords", "encode"]
    with pytest.raises(AssertionError, match=r"FAIL  toy-synthetic-linear \(subject 9\): load"):
        check_model(berg, "toy-synthetic-linear", subject=9)


def test_write_card_files_writes_every_file_of_the_card(tmp_path: Path) -> None:
    from berg_core import Dim, FileSpec, ModelCard, Output
    from berg_core.safe_npy import load_pickled_npy
    from berg_core.testing import reference_weights, write_card_files

    card = ModelCard(
        model_id="toy-files",
        modality="EEG",
        training_dataset="none",
        species="none",
        model_type="toy",
        subjects=(2,),
        outputs=(Output(name="y", dims=(Dim(name="channel", size=4),)),),
        files=(FileSpec(path="w/weights_{subject}.npy"), FileSpec(path="m/meta_{subject}.npy")),
    )
    weights = reference_weights(6, 4, k=2, seed=1)
    written = write_card_files(
        tmp_path, card, 2, {"w/weights_{subject}.npy": weights, "m/meta_{subject}.npy": {"a": 1}}
    )
    assert sorted(str(p.relative_to(tmp_path)) for p in written.values()) == sorted(
        card.files_for(2)
    )
    back = load_pickled_npy(tmp_path / "w/weights_2.npy")
    assert back["pca_param"]["components_"].shape == (2, 6)
    assert back["reg_param"]["coef_"].shape == (4, 2) and back["scaler_param"]["scale_"].min() > 0
    with pytest.raises(ValueError, match=r"no contents for m/meta_2.npy"):
        write_card_files(tmp_path, card, 2, {"w/weights_{subject}.npy": weights})


def test_check_torch_env_points_at_random_weights_only_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torchvision")
    from berg_core.testing import check_torch_env

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    env = check_torch_env(tmp_path, "AlexNet_Weights.IMAGENET1K_V1")
    assert env == {"TORCH_HOME": str(tmp_path / "torch_home")}
    assert (tmp_path / "torch_home/hub/checkpoints/alexnet-owt-7be5be79.pth").is_file()
    assert os.environ["TORCH_HOME"] == str(tmp_path / "empty")  # not set by the helper
    monkeypatch.setenv("TORCH_HOME", env["TORCH_HOME"])
    assert check_torch_env(tmp_path / "other", "AlexNet_Weights.IMAGENET1K_V1") == {}
