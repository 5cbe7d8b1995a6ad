"""Brain maps: GIFTI files that read back, PNG figures, and the ``berg maps`` command."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from berg_factortopy.checkpoint import load_checkpoint
from berg_factortopy.maps import MAPS, compute_maps, write_maps
from berg_factortopy.train import TrainResult
from PIL import Image

from berg_core.cli import main

N = 163_842


@pytest.fixture(scope="module")
def maps_dir(tmp_path_factory: pytest.TempPathFactory, trained: TrainResult) -> Path:
    out = tmp_path_factory.mktemp("maps")
    write_maps(trained.folder, out)
    return out


def test_gifti_maps_read_back(maps_dir: Path, trained: TrainResult):
    checkpoint = load_checkpoint(trained.folder)
    expected = compute_maps(checkpoint)
    assert tuple(expected) == MAPS
    for name in MAPS:
        for hemi, side, rows in (("lh", "L", slice(0, 150)), ("rh", "R", slice(150, 300))):
            image = nib.load(maps_dir / f"{name}_hemi-{side}.func.gii")
            assert len(image.darrays) == 1
            values = image.darrays[0].data
            assert values.shape == (N,) and values.dtype == np.float32
            vertices = checkpoint.vertices[hemi]
            np.testing.assert_allclose(values[vertices], expected[name][rows], atol=1e-6)
            assert np.isnan(np.delete(values, vertices)).all()
            structure = "CortexLeft" if hemi == "lh" else "CortexRight"
            assert image.meta["AnatomicalStructurePrimary"] == structure
    r2 = nib.load(maps_dir / "val_r2_hemi-L.func.gii").darrays[0].data
    np.testing.assert_allclose(r2[checkpoint.vertices["lh"]], trained.val_r2["lh"], atol=1e-6)
    layers = nib.load(maps_dir / "layer_argmax_hemi-L.func.gii").darrays[0].data
    assert set(np.unique(layers[checkpoint.vertices["lh"]])) <= {0.0, 1.0, 2.0}


def test_png_figures_are_drawn(maps_dir: Path):
    for name in MAPS:
        path = maps_dir / f"{name}.png"
        assert path.stat().st_size > 10_000
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size == (1080, 576)
            pixels = np.asarray(image.convert("RGB"))
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # surfaces, not a blank page
    index = json.loads((maps_dir / "maps.json").read_text())
    assert index["layers"] == ["conv1", "conv2", "conv3"]
    assert index["maps"]["scale"]["files"] == [
        "scale_hemi-L.func.gii",
        "scale_hemi-R.func.gii",
        "scale.png",
    ]


def test_berg_maps_command(
    trained: TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "maps"
    assert main(["maps", str(trained.folder), "--out", str(out), "--no-figures"]) == 0
    assert "wrote 13 files" in capsys.readouterr().out  # 6 maps x 2 hemispheres + maps.json
    assert not list(out.glob("*.png"))
    assert main(["maps", str(trained.folder), "--out", str(out), "--no-figures"]) == 2
    assert "pass --force to overwrite" in capsys.readouterr().err
    assert main(["maps", str(trained.folder), "--out", str(out), "--no-figures", "--force"]) == 0
    assert main(["maps", str(tmp_path), "--out", str(out)]) == 1
    assert "not a FactorTopy checkpoint folder" in capsys.readouterr().err
