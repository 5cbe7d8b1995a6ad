"""The simulated datasets are in the published formats (checked without berg-train's readers),
and the readers refuse malformed input with clear errors."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy.io import loadmat

from berg_core import InvalidParameterError

BETAS = "nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR"


def test_nsd_files(nsd_sim: Any) -> None:
    root = nsd_sim.root
    assert (root / "SIMULATED_DATA.txt").read_text().startswith("SIMULATED DATA")
    design = loadmat(root / "nsddata/experiments/nsd/nsd_expdesign.mat")
    assert design["subjectim"].shape == (8, 240) and design["sharedix"].shape == (1, 40)
    assert design["masterordering"].shape[0] == 1
    assert design["subjectim"].min() >= 1  # 1-based, as MATLAB
    shared = set(design["sharedix"].ravel())
    assert all(set(row[:40]) == shared for row in design["subjectim"])
    for hemi in ("lh", "rh"):
        for session in (1, 2, 3):
            image = nib.load(root / BETAS / f"{hemi}.betas_session{session:02d}.mgh")
            assert isinstance(image, nib.MGHImage)
            assert image.shape[:3] == (163_842, 1, 1) and image.get_data_dtype().str == ">f4"
        assert nib.load(root / BETAS / f"{hemi}.ncsnr.mgh").shape == (163_842, 1, 1)
        label = root / "nsddata/freesurfer/fsaverage/label" / f"{hemi}.prf-visualrois.mgz"
        values = np.asarray(nib.load(label).dataobj).ravel()
        assert values.size == 163_842 and set(np.unique(values)) <= set(range(8))
        ctab = Path(str(label) + ".ctab").read_text().split("\n")
        assert ctab[0] == "0 Unknown" and ctab[1] == "1 V1v" and ctab[7] == "7 hV4"
    with h5py.File(root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5", "r") as h5:
        brick = h5["imgBrick"]
        assert brick.dtype == np.uint8 and brick.shape[1:] == (32, 32, 3)
        assert brick.shape[0] == 40 + 8 * 200


def test_things_files(things_sim: Any) -> None:
    root = things_sim.root
    with h5py.File(root / "sub-01_ResponseData.h5", "r") as h5:
        shape = h5["ResponseData/block0_values"].shape
    with open(root / "sub-01_StimulusMetadata.csv", newline="") as stream:
        trials = list(csv.DictReader(stream))
    assert shape == (211_339, len(trials))
    kinds = {t["trial_type"] for t in trials}
    assert kinds == {"train", "test", "catch"}
    for trial in trials[:20]:
        assert (root / "images" / trial["concept"] / trial["stimulus"]).is_file()
    with open(root / "sub-01_VoxelMetadata.csv", newline="") as stream:
        header = next(csv.reader(stream))
    for column in ("voxel_x", "nc_singletrial", "nc_testset", "prf-size", "LO1 (prf)", "V1"):
        assert column in header


def test_nsd_reader_partitions(nsd_sim: Any) -> None:
    from berg_train import NSDDataset

    dataset = NSDDataset(nsd_sim.root, 1)
    assert dataset.simulated
    assert (dataset.train_ids.size, dataset.test_ids.size, dataset.val_ids.size) == (200, 30, 10)
    counts = {int(i): int((dataset.trial_ids == i).sum()) for i in dataset.test_ids}
    assert set(counts.values()) == {3}
    design = loadmat(nsd_sim.root / "nsddata/experiments/nsd/nsd_expdesign.mat")
    shared = design["sharedix"].ravel() - 1
    assert not np.isin(dataset.train_ids, shared).any()
    assert np.isin(dataset.test_ids, shared).all() and np.isin(dataset.val_ids, shared).all()
    # test images are those seen 3 times within the first N sessions
    two_sessions = NSDDataset(nsd_sim.root, 1, test_sessions=2)
    assert 0 < two_sessions.test_ids.size < 30
    assert np.isin(two_sessions.test_ids, dataset.test_ids).all()
    with pytest.raises(InvalidParameterError, match="0 test images"):
        NSDDataset(nsd_sim.root, 1, test_sessions=1)
    images = dataset.images.load([0, 5, 1])
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8


def test_nsd_reader_errors(nsd_sim: Any, tmp_path: Path) -> None:
    from berg_train import NSDDataset

    with pytest.raises(InvalidParameterError, match=r"subject must be 1\.\.8"):
        NSDDataset(nsd_sim.root, 9)
    with pytest.raises(InvalidParameterError, match="no NSD betas"):
        NSDDataset(nsd_sim.root, 2)
    with pytest.raises(InvalidParameterError, match="sessions = 5"):
        NSDDataset(nsd_sim.root, 1, sessions=5)
    with pytest.raises(InvalidParameterError, match="experimental design not found"):
        NSDDataset(tmp_path, 1)
    broken = tmp_path / "broken"
    shutil.copytree(nsd_sim.root / "nsddata", broken / "nsddata")
    folder = broken / BETAS
    folder.mkdir(parents=True)
    nib.save(
        nib.MGHImage(np.zeros((100, 1, 1, 4), np.float32), np.eye(4)),
        folder / "lh.betas_session01.mgh",
    )
    shutil.copy(nsd_sim.root / BETAS / "rh.betas_session01.mgh", folder)
    with pytest.raises(InvalidParameterError, match=r"expected \(163842, 1, 1, trials\)"):
        NSDDataset(broken, 1)


def test_things_reader(things_sim: Any) -> None:
    from berg_train import ThingsDataset

    dataset = ThingsDataset(things_sim.root, 1)
    assert dataset.simulated and dataset.n_fit == 80 and dataset.test_rows.size == 8
    assert dataset.train_trials.size == 80 and dataset.test_trials.size == 32  # catch dropped
    assert dataset.test_repeats == 4
    assert set(np.unique(dataset.train_groups)) == {1, 2, 3, 4}
    assert dataset.roi_indices["rSTS"].size == 0 and dataset.roi_indices["LO1_prf"].size > 0
    block = dataset.read_targets("responses", 0, 500)
    assert block.train.shape == (80, 500) and block.test.shape == (8, 500)
    with pytest.raises(InvalidParameterError, match=r"subject must be 1\.\.3"):
        ThingsDataset(things_sim.root, 4)
    with pytest.raises(InvalidParameterError, match=r"sub-02_ResponseData\.h5 not found"):
        ThingsDataset(things_sim.root, 2)
