"""Registration without heavy imports, the data readers, spheres and ``berg train factortopy``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from berg_factortopy.data import TrainingData, vertex_coords
from berg_factortopy.sphere import icosphere, read_sphere, write_sphere

from berg_core import InvalidParameterError
from berg_core.cli import main


def test_registration_and_cli_parsing_import_nothing_heavy(tmp_path: Path):
    code = (
        "import sys\n"
        "import berg_factortopy.plugin\n"
        "from berg_core import BERG, registry\n"
        "from berg_core.cli import _parser\n"
        "from importlib.metadata import entry_points\n"
        "installed = {ep.name for ep in entry_points(group='berg')}\n"
        "extra = {} if 'factortopy' in installed else {'ft': berg_factortopy.plugin}\n"
        "registry.reset(extra=extra or None)\n"
        f"berg = BERG({str(tmp_path)!r})\n"
        "assert 'fmri-nsd_fsaverage-factortopy' in berg.list_models()\n"
        "berg.describe('fmri-nsd_fsaverage-factortopy', print_format=False)\n"
        "_parser().parse_args(['maps', 'x', '--out', 'y'])\n"
        "_parser().parse_args(['train', 'factortopy', '--data', 'd', '--out', 'o'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'nilearn', 'matplotlib', 'sklearn'))\n"
        "assert not heavy, heavy[:5]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_missing_plugin_hint_names_berg_factortopy():
    from berg_core.registry import KNOWN_FAMILIES

    prefixes = [prefix for prefix, _ in KNOWN_FAMILIES]
    match = next(d for p, d in KNOWN_FAMILIES if "fmri-nsd_fsaverage-factortopy".startswith(p))
    assert match == "berg-factortopy"
    assert prefixes.index("fmri-nsd_fsaverage-factortopy") < prefixes.index("fmri-nsd_fsaverage-")


def test_icosphere_is_fsaverage_shaped(tmp_path: Path):
    vertices, faces = icosphere(7)
    assert vertices.shape == (163_842, 3) and faces.shape == (327_680, 3)
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), 1.0)
    ico5, faces5 = icosphere(5)
    np.testing.assert_array_equal(vertices[:10_242], ico5)  # fsaverage5 = first 10,242
    assert faces5.max() == 10_241
    path = write_sphere(tmp_path / "lh.sphere", vertices, faces)
    np.testing.assert_allclose(read_sphere(path), vertices, atol=1e-6)
    write_sphere(tmp_path / "small.sphere", ico5, faces5)
    with pytest.raises(InvalidParameterError, match="10242 vertices"):
        read_sphere(tmp_path / "small.sphere")
    with pytest.raises(InvalidParameterError, match="no sphere surface"):
        read_sphere(tmp_path / "rh.sphere")


def test_vertex_coords(spheres: Path):
    sphere = read_sphere(spheres / "lh.sphere")
    coords = vertex_coords(spheres, np.array([0, 5]), np.array([7]))
    np.testing.assert_allclose(coords[:2, :3], sphere[[0, 5]])
    np.testing.assert_array_equal(coords[:, 3], [-1, -1, 1])
    again = vertex_coords({"lh": sphere * 100, "rh": spheres / "rh.sphere"}, [0, 5], [7])
    np.testing.assert_allclose(again, coords, atol=1e-6)


def test_algonauts_reader(algonauts: Path, data: TrainingData, tmp_path: Path):
    assert data.subject == 1 and len(data) == 700
    assert (data.n_lh, data.n_rh) == (150, 150)
    assert data.images.sources[0].endswith("train-0001_nsd-00000.png")
    assert data.targets(np.array([2, 5])).shape == (2, 300)
    with pytest.raises(InvalidParameterError, match="subject = 9"):
        TrainingData.from_algonauts(algonauts, subject=9)
    with pytest.raises(InvalidParameterError, match="not an Algonauts 2023 subject folder"):
        TrainingData.from_algonauts(tmp_path / "subj02")
    with pytest.raises(InvalidParameterError, match="cannot tell the subject"):
        TrainingData.from_algonauts(tmp_path / "someone")
    with pytest.raises(InvalidParameterError, match="3 lh vertices for 150"):
        TrainingData(
            images=data.images,
            lh=data.lh,
            rh=data.rh,
            lh_vertices=np.array([1, 2, 3]),
            rh_vertices=data.rh_vertices,
            subject=1,
        )


def test_berg_train_factortopy_command(
    algonauts: Path, spheres: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "ckpt"
    common = ["train", "factortopy", "--data", str(algonauts), "--sphere-dir", str(spheres)]
    common += ["--out", str(out), "--quiet", "--device", "cpu"]
    args = [
        *common,
        "--backbone", "factortopy_testkit:TinyBackbone", "--epochs", "1", "--bottleneck", "8",
        "--hidden", "16", "--stats-images", "64", "--cache", "ram", "--val-fraction", "0.2",
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "for subject 1" in printed and "over 300 vertices" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["bottleneck"] == 8 and config["data"]["n_val"] == 140
    assert main([*common, "--resume", "--lr", "0.5"]) == 2
    assert "--lr cannot change when resuming" in capsys.readouterr().err
    assert main([*common, "--resume", "--epochs", "2"]) == 0
    assert len(json.loads((out / "metrics.json").read_text())) == 2
    assert main([*common, "--backbone", "factortopy_testkit:TinyBackbone"]) == 2
    assert "already holds a FactorTopy checkpoint" in capsys.readouterr().err
