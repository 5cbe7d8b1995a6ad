"""``voxel_xyz``: the volume position of every returned voxel, after ROI selection and picks.

Expected: rows of ``metadata['fmri']['voxel_coords']`` at the voxel indices the selection keeps,
computed here from the metadata, independently of the model.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from berg_things.card import MODEL_ID

from berg_core.output import encode_to_hdf5
from berg_core.stimulus import as_stimulus

pytest.importorskip("torch")
pytest.importorskip("torchvision")


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (n, 3, 64, 64), dtype=np.uint8)


def test_full_brain_and_roi_selection(berg):
    metadata = berg.get_model_metadata(MODEL_ID, subject=1)
    xyz = metadata["fmri"]["voxel_coords"]
    model = berg.get_encoding_model(MODEL_ID, subject=1, device="cpu")
    dims, values = model.aux_coords()["responses"]["voxel_xyz"]
    assert dims == ("voxel",) and values.dtype == np.int64
    np.testing.assert_array_equal(values, xyz)
    model.close()
    rois = ["V2", "V1"]  # overlapping ROIs: a voxel may appear twice, so may its xyz
    model = berg.get_encoding_model(MODEL_ID, subject=1, selection={"roi": rois}, device="cpu")
    voxels = np.concatenate([metadata["roi"]["V2"], metadata["roi"]["V1"]])
    _, meta = berg.encode(model, _images(1), return_metadata=True, show_progress=False)
    given = meta["output"]["aux_coords"]["responses"]["voxel_xyz"]
    assert given["dims"] == ["voxel"] and given["values"].shape == (len(voxels), 3)
    np.testing.assert_array_equal(given["values"], xyz[voxels])
    model.close()


def test_voxel_pick_in_metadata_hdf5_and_xarray(berg, tmp_path: Path):
    xarray = pytest.importorskip("xarray")
    metadata = berg.get_model_metadata(MODEL_ID, subject=1)
    xyz = metadata["fmri"]["voxel_coords"]
    v1 = metadata["roi"]["V1"]
    picked = [int(v1[3]), int(v1[0]), int(v1[3])]  # by voxel index, reordered, repeated
    selection = {"roi": "V1", "voxel": picked}
    model = berg.get_encoding_model(MODEL_ID, subject=1, selection=selection, device="cpu")
    dims, values = model.aux_coords()["responses"]["voxel_xyz"]
    assert dims == ("voxel",)
    np.testing.assert_array_equal(values, xyz[picked])
    out = encode_to_hdf5(model, as_stimulus(_images(1)), tmp_path / "v1.h5", show_progress=False)
    with h5py.File(out, "r") as h5:
        assert list(h5["coords/responses/voxel_xyz"].attrs["dims"]) == ["voxel"]
        assert h5["coords/responses/voxel_xyz"].dtype == np.int64
        np.testing.assert_array_equal(h5["coords/responses/voxel_xyz"][()], xyz[picked])
        np.testing.assert_array_equal(h5["coords/responses/voxel"][()], picked)
    data = berg.encode(model, _images(1), show_progress=False, return_xarray=True)
    assert isinstance(data, xarray.Dataset)
    assert data.coords["voxel_xyz"].dims == ("voxel", "voxel_xyz_axis")
    np.testing.assert_array_equal(data.coords["voxel_xyz"].values, xyz[picked])
    np.testing.assert_array_equal(data.coords["voxel"].values, picked)
    model.close()
