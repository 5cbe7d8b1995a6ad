"""Backbones: the seeded untrained AlexNet, and pretrained AlexNet / ViT-B/32 from the cache."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from error_bounds import assert_within
from nsd_reference import ALEXNET, UNTRAINED, VIT, Model, assert_float32_close

from berg_core import BERG, ModelLoadError

_HASH_SCRIPT = """
import hashlib, json, sys, torch
threads = int(sys.argv[1])
torch.set_num_threads(threads)
from berg_nsd.cards import SPECS
from berg_nsd.model import build_backbone
state = torch.random.get_rng_state()
model = build_backbone(SPECS["fmri-nsd_fsaverage-alexnet_untrained"])
digest = hashlib.sha256()
for name, tensor in model.state_dict().items():
    digest.update(name.encode())
    digest.update(tensor.numpy().tobytes())
print(json.dumps({"digest": digest.hexdigest(),
                  "rng_untouched": bool(torch.equal(state, torch.random.get_rng_state()))}))
"""


def _digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def test_untrained_alexnet_is_the_reference_network_in_every_process() -> None:
    results = []
    for threads in (1, 2):
        proc = subprocess.run(
            [sys.executable, "-c", _HASH_SCRIPT, str(threads)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert results[0]["digest"] == results[1]["digest"]
    assert all(r["rng_untouched"] for r in results)
    # ... and it is what `torch.manual_seed(20200220); alexnet(weights=None)` builds
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(20200220)
        expected = torchvision.models.alexnet(weights=None)
    assert _digest(expected) == results[0]["digest"]
    # a different seed gives a different network (the digest is not trivially constant)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(20200221)
        other = torchvision.models.alexnet(weights=None)
    assert _digest(other) != results[0]["digest"]


def test_building_does_not_touch_the_callers_rng() -> None:
    from berg_nsd.cards import SPECS
    from berg_nsd.model import build_backbone

    torch.manual_seed(99)
    before = torch.random.get_rng_state()
    expected_next = torch.rand(3)
    torch.random.set_rng_state(before)
    build_backbone(SPECS[UNTRAINED])
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(torch.rand(3), expected_next)


def test_pretrained_alexnet_from_the_cache(
    berg: BERG, alexnet: Model, untrained: Model, stimulus: np.ndarray
) -> None:
    state = torch.random.get_rng_state()
    model = berg.get_encoding_model(ALEXNET, subject=1, selection={"roi": "V3d"})
    assert torch.equal(torch.random.get_rng_state(), state)
    lh, rh = berg.encode(model, stimulus, show_progress=False)
    lh_index, rh_index = alexnet.rois("V3d")
    ref_lh, ref_rh = alexnet.responses(stimulus, lh_index, rh_index)
    lh_tolerance, rh_tolerance = alexnet.tolerance(stimulus, lh_index, rh_index)
    assert_within(lh, ref_lh, lh_tolerance)
    assert_within(rh, ref_rh, rh_tolerance)
    # the cache's weights were used, not the untrained network's
    assert not np.allclose(alexnet.features(stimulus), untrained.features(stimulus))


def test_vit_b_32(berg: BERG, vit: Model, stimulus: np.ndarray) -> None:
    model = berg.get_encoding_model(VIT, subject=1, batch_size=2)
    assert model.extractor.feature_dim == 12 * 50 * 768
    lh, rh = berg.encode(model, stimulus, show_progress=False)
    ref_lh, ref_rh = vit.responses(stimulus)
    assert lh.shape == rh.shape == (len(stimulus), 163_842)
    assert_float32_close(lh, ref_lh)
    assert_float32_close(rh, ref_rh)


@pytest.mark.parametrize("model_id", [ALEXNET, VIT])
def test_missing_pretrained_weights_say_where_to_put_them(
    berg: BERG,
    alexnet: Model,
    vit: Model,
    model_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    name = "alexnet-owt-7be5be79.pth" if model_id == ALEXNET else "vit_b_32-d86f8d99.pth"
    with pytest.raises(ModelLoadError) as info:
        berg.get_encoding_model(model_id, subject=1)
    message = str(info.value)
    expected = tmp_path / "empty_torch_home" / "hub" / "checkpoints" / name
    assert f"Put the file {name}" in message
    assert str(expected) in message
    assert "$TORCH_HOME/hub/checkpoints/" in message
    assert "no network in this test" in message


def test_corrupt_pretrained_weights(
    berg: BERG, alexnet: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "alexnet-owt-7be5be79.pth").write_bytes(b"not a checkpoint")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="could not load the pretrained weights"):
        berg.get_encoding_model(ALEXNET, subject=1)
