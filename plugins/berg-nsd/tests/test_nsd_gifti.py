"""fsaverage GIFTI output of the NSD models: nibabel round trips through the API and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from berg_nsd.gifti import gifti_paths

from berg_core import BERG, InvalidParameterError
from berg_core.cli import main
from berg_core.output import write_responses
from berg_core.stimulus import as_stimulus

nib = pytest.importorskip("nibabel")

UNTRAINED = "fmri-nsd_fsaverage-alexnet_untrained"
N = 163_842


def _read(path: Path) -> tuple[np.ndarray, str]:
    image = nib.load(path)
    data = np.stack([array.data for array in image.darrays])
    return data, image.meta["AnatomicalStructurePrimary"]


def test_gifti_paths_follow_bids_hemisphere_names(tmp_path: Path) -> None:
    assert gifti_paths(tmp_path / "sub-01_resp.func.gii") == [
        tmp_path / "sub-01_resp_hemi-L.func.gii",
        tmp_path / "sub-01_resp_hemi-R.func.gii",
    ]


def test_roi_selection_round_trips_with_nan_elsewhere(
    berg: BERG, stimulus: np.ndarray, tmp_path: Path, untrained
) -> None:
    model = berg.get_encoding_model(UNTRAINED, subject=1, selection={"roi": "V1v"})
    lh, rh = berg.encode(model, stimulus, show_progress=False)
    written = write_responses(
        model, as_stimulus(stimulus), tmp_path / "v1v.func.gii", show_progress=False
    )
    assert written == gifti_paths(tmp_path / "v1v.func.gii")
    lh_vertices, rh_vertices = untrained.rois("V1v")
    for path, values, vertices, structure in (
        (written[0], lh, lh_vertices, "CortexLeft"),
        (written[1], rh, rh_vertices, "CortexRight"),
    ):
        data, meta_structure = _read(path)
        assert meta_structure == structure
        assert data.shape == (len(stimulus), N) and data.dtype == np.float32
        np.testing.assert_array_equal(data[:, vertices], values)
        outside = np.setdiff1d(np.arange(N), vertices)
        assert np.isnan(data[:, outside]).all()
    with pytest.raises(InvalidParameterError, match="exist; pass --force"):
        write_responses(model, as_stimulus(stimulus), tmp_path / "v1v.func.gii")


def test_cli_writes_gifti_by_extension(
    berg: BERG, stimulus: np.ndarray, tmp_path: Path, untrained
) -> None:
    images = tmp_path / "images.npy"
    np.save(images, stimulus[:2])
    out = tmp_path / "full.func.gii"
    status = main(
        [
            "--berg-dir",
            str(berg.berg_dir),
            "encode",
            UNTRAINED,
            "--subject",
            "1",
            "--stimulus",
            str(images),
            "--out",
            str(out),
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert status == 0
    data, _ = _read(gifti_paths(out)[1])
    assert data.shape == (2, N) and np.isfinite(data).all()
