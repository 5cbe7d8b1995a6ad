"""Reader of THINGS-fMRI1 (single-trial responses) as published, for training.

Files of subject ``sub-0N`` under the THINGS root (or its ``betas_csv`` folder):

* ``sub-0N_ResponseData.h5``: dataset ``ResponseData/block0_values``, voxels x trials float
  (the pandas HDF5 layout of the published table);
* ``sub-0N_StimulusMetadata.csv``: one row per trial (the columns of ``ResponseData``, in order)
  with at least ``trial_type`` (``train``/``test``; other types are ignored), ``session``,
  ``stimulus`` and ``concept``;
* ``sub-0N_VoxelMetadata.csv``: one row per voxel with ``voxel_x``, ``voxel_y``, ``voxel_z``,
  ``nc_singletrial``, ``nc_testset`` (percent), ``splithalf_corrected``,
  ``splithalf_uncorrected``, ``prf-eccentricity``, ``prf-polarangle``, ``prf-rsquared``,
  ``prf-size`` and one 0/1 column per ROI (``LO1 (prf)`` becomes ``LO1_prf``);
* images ``{images}/{concept}/{stimulus}`` (the THINGS object images).

Recipe (reference creation code, model card): responses are z-scored per voxel within each
session using all of its trials (standard deviation floored at 1e-8); the model is trained on the
single training trials (8,640) and tested on the 100 test images averaged over their 12 repeats.
Voxel chunks of the response table are read from the HDF5 file one at a time.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from berg_things.card import CARD

from berg_core import InvalidParameterError
from berg_train.datasets.base import (
    ImageFiles,
    TargetBlock,
    TrainingDataset,
    array_digest,
    card_layout,
    is_simulated,
    zscore_rows,
)
from berg_train.metrics import noise_ceiling_from_single_trial

__all__ = ["RESPONSES", "ThingsDataset", "ThingsImages", "roi_column_name", "subject_files"]

#: Dataset of the response table inside ``sub-0N_ResponseData.h5``.
RESPONSES = "ResponseData/block0_values"
_PRF = ("prf-eccentricity", "prf-polarangle", "prf-rsquared", "prf-size")
_VOXEL_FLOATS = (
    "nc_singletrial",
    "nc_testset",
    "splithalf_corrected",
    "splithalf_uncorrected",
    *_PRF,
)


def roi_column_name(column: str) -> str:
    """``"LO1 (prf)"`` -> ``"LO1_prf"`` (the reference's metadata names)."""
    return column.replace(" (", "_").replace(")", "")


def subject_files(root: Path, subject: int) -> dict[str, Path]:
    """The three files of *subject* under *root* or ``root/betas_csv``.

    Raises
    ------
    berg_core.InvalidParameterError
        A file is missing.
    """
    sub = f"sub-{subject:02d}"
    names = {
        "responses": f"{sub}_ResponseData.h5",
        "stimuli": f"{sub}_StimulusMetadata.csv",
        "voxels": f"{sub}_VoxelMetadata.csv",
    }
    found = {}
    for key, name in names.items():
        for folder in (Path(root), Path(root) / "betas_csv"):
            if (folder / name).is_file():
                found[key] = folder / name
                break
        else:
            raise InvalidParameterError(f"THINGS-fMRI1 file {name} not found in {root}")
    return found


class ThingsImages(ImageFiles):
    """THINGS images ``{root}/{concept}/{stimulus}``, decoded to uint8 ``(3, H, W)``.

    Returns a list (images may differ in size; berg-core's preprocessing resizes each).
    """

    def __init__(self, root: Path, concepts: Sequence[str], stimuli: Sequence[str]) -> None:
        self.root = Path(root)
        paths = [self.root / c / s for c, s in zip(concepts, stimuli, strict=True)]
        super().__init__(paths, "THINGS image")


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        rows = list(reader)
    if header and header[0] == "":  # an unnamed index column, as pandas writes it
        header = ["index", *header[1:]]
    return header, rows


class ThingsDataset(TrainingDataset):
    """One THINGS-fMRI1 subject, read for training.

    Parameters
    ----------
    root : path-like
        Folder holding ``sub-0N_*`` files (directly or in ``betas_csv/``).
    subject : int
        1..3.
    images_dir : path-like, optional
        Folder of ``{concept}/{stimulus}`` images (default ``root/images``).

    Raises
    ------
    berg_core.InvalidParameterError
        Missing files or columns, or tables that do not fit together.
    """

    dataset_id = "things_fmri_1"
    default_backbone = "vit_b_32"

    def __init__(
        self, root: str | Path, subject: int, *, images_dir: str | Path | None = None
    ) -> None:
        import h5py
        from berg_things.card import N_VOXELS, ROIS

        self.root = Path(root)
        if not 1 <= int(subject) <= 3:
            raise InvalidParameterError(f"THINGS-fMRI1 subject must be 1..3, got {subject}")
        self.subject = int(subject)
        self.simulated = is_simulated(self.root)
        self.files = subject_files(self.root, self.subject)
        header, rows = _read_csv(self.files["stimuli"])
        columns = {name: i for i, name in enumerate(header)}
        for name in ("trial_type", "session", "stimulus", "concept"):
            if name not in columns:
                raise InvalidParameterError(f"{self.files['stimuli']} has no column {name!r}")
        trial_type = np.array([r[columns["trial_type"]] for r in rows])
        # sessions are numbers ("1") or labels ("ses-things01"): only equality matters
        labels = np.array([r[columns["session"]].strip() for r in rows])
        _, self.trial_session = np.unique(labels, return_inverse=True)
        self.trial_session = self.trial_session.ravel() + 1
        stimulus = np.array([r[columns["stimulus"]] for r in rows])
        concept = np.array([r[columns["concept"]] for r in rows])
        with h5py.File(self.files["responses"], "r") as h5:
            if RESPONSES not in h5:
                raise InvalidParameterError(f"{self.files['responses']} has no {RESPONSES}")
            shape = h5[RESPONSES].shape
        if len(shape) != 2 or shape[1] != len(rows):
            raise InvalidParameterError(
                f"{RESPONSES} has shape {shape}; expected (voxels, {len(rows)} trials)"
            )
        self.n_voxels = int(shape[0])
        if self.n_voxels != N_VOXELS:
            raise InvalidParameterError(
                f"{self.files['responses']} has {self.n_voxels} voxels; THINGS-fMRI1 models "
                f"have {N_VOXELS}"
            )
        self.outputs = (("responses", self.n_voxels),)
        self.trials_in_memory = 2 * len(rows)
        train = np.flatnonzero(trial_type == "train")
        test = np.flatnonzero(trial_type == "test")
        if train.size == 0 or test.size == 0:
            raise InvalidParameterError("no 'train' or no 'test' trials in the stimulus table")
        self.train_trials, self.test_trials = train, test
        _, train_first = np.unique(stimulus[train], return_index=True)
        train_order = np.sort(train_first)  # training images in order of first presentation
        train_stim = stimulus[train][train_order]
        train_conc = concept[train][train_order]
        test_stim, test_first, test_inverse, test_counts = np.unique(
            stimulus[test], return_index=True, return_inverse=True, return_counts=True
        )
        test_conc = concept[test][test_first]
        self.stimulus, self.concept = stimulus, concept
        self.test_avg_stimuli, self.test_avg_concepts = test_stim, test_conc
        self.n_fit = int(train_stim.size)
        row_of = {s: i for i, s in enumerate(train_stim)}
        self.train_rows = np.array([row_of[s] for s in stimulus[train]], dtype=np.int64)
        self.train_groups = self.trial_session[train]
        self.test_rows = np.arange(test_stim.size) + self.n_fit
        self._test_inverse = test_inverse.ravel()
        self._test_counts = test_counts.astype(np.float64)
        self.test_repeats = float(np.median(test_counts))
        self.images = ThingsImages(
            Path(images_dir) if images_dir is not None else self.root / "images",
            list(train_conc) + list(test_conc),
            list(train_stim) + list(test_stim),
        )
        self._read_voxels(ROIS)

    def _read_voxels(self, known_rois: Sequence[str]) -> None:
        header, rows = _read_csv(self.files["voxels"])
        if len(rows) != self.n_voxels:
            raise InvalidParameterError(
                f"{self.files['voxels']} has {len(rows)} voxels; the responses have {self.n_voxels}"
            )
        columns = {name: i for i, name in enumerate(header)}
        needed = ("voxel_x", "voxel_y", "voxel_z", *_VOXEL_FLOATS)
        missing = [name for name in needed if name not in columns]
        if missing:
            raise InvalidParameterError(f"{self.files['voxels']} lacks columns {missing}")
        table = np.array(rows, dtype=str)
        table[table == ""] = "nan"

        def column(name: str, dtype: Any) -> np.ndarray:
            return table[:, columns[name]].astype(np.float64).astype(dtype)

        self.voxel_coords = np.stack(
            [column(f"voxel_{a}", np.float64) for a in "xyz"], axis=1
        ).astype(np.int64)
        self.voxel_values = {name: column(name, np.float32) for name in _VOXEL_FLOATS}
        known = set(known_rois)
        self.roi_indices: dict[str, np.ndarray] = {}
        for name in columns:
            roi = roi_column_name(name)
            if roi in known:
                mask = column(name, np.float64)
                self.roi_indices[roi] = np.flatnonzero(np.nan_to_num(mask) > 0).astype(np.int64)

    # -- targets -----------------------------------------------------------------------------
    def read_targets(self, output: str, start: int, stop: int) -> TargetBlock:
        """Session-z-scored single training trials and repeat-averaged test images."""
        import h5py

        with h5py.File(self.files["responses"], "r") as h5:
            block = np.asarray(h5[RESPONSES][start:stop, :], dtype=np.float32)  # (c, trials)
        z = np.empty_like(block)
        for session in np.unique(self.trial_session):
            cols = np.flatnonzero(self.trial_session == session)
            z[:, cols] = zscore_rows(block[:, cols], min_std=1e-8)
        del block
        train = np.ascontiguousarray(z[:, self.train_trials].T)
        sums = np.zeros((self._test_counts.size, stop - start), dtype=np.float64)
        np.add.at(sums, self._test_inverse, z[:, self.test_trials].T.astype(np.float64))
        test = (sums / self._test_counts[:, None]).astype(np.float32)
        return TargetBlock(train=np.nan_to_num(train, nan=0.0), test=np.nan_to_num(test, nan=0.0))

    def noise_ceiling(self, output: str) -> np.ndarray:
        """Ceiling of the repeat-averaged test data, from the single-trial noise ceiling."""
        return noise_ceiling_from_single_trial(
            self.voxel_values["nc_singletrial"], self.test_repeats
        )

    def roi_table(self) -> dict[str, dict[str, np.ndarray]]:
        """``{"responses": {roi: voxels}}``."""
        return {"responses": self.roi_indices}

    # -- identity and layout -------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Root, subject, trial table."""
        return {
            "dataset": self.dataset_id,
            "root": str(self.root.resolve()),
            "subject": self.subject,
            "trials": int(self.stimulus.size),
            "partition": array_digest(
                self.train_trials, self.test_trials, self.train_rows, self.test_rows
            ),
            "images": str(self.images.root.resolve()),
        }

    def _layout(self, model: str) -> dict[str, Any]:
        """The files of the published THINGS card, moved to ``model-<model>``."""
        return card_layout(CARD, self.subject, model)

    def model_dir(self, berg_dir: Path, model: str) -> Path:
        """``encoding_models/modality-fmri/train_dataset-things_fmri_1/model-<model>``."""
        return Path(berg_dir) / self._layout(model)["dir"]

    def weights_path(self, berg_dir: Path, model: str) -> Path:
        """``.../encoding_models_weights/weights_sub-0S.npy`` (as the THINGS card names it)."""
        return Path(berg_dir) / self._layout(model)["encoding_models_weights"]

    def metadata_path(self, berg_dir: Path, model: str) -> Path:
        """``.../metadata/metadata_sub-0S.npy`` (as the THINGS card names it)."""
        return Path(berg_dir) / self._layout(model)["metadata"]

    def figure_path(self, berg_dir: Path, model: str) -> Path:
        """``.../encoding_models_accuracy/accuracy_sub-0S.png``."""
        name = f"accuracy_sub-{self.subject:02d}.png"
        return self.model_dir(berg_dir, model) / "encoding_models_accuracy" / name

    def weights_dict(
        self, scaler_param: dict, pca_param: dict, heads: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """``scaler_param``, ``pca_param``, ``reg_param``."""
        return {
            "scaler_param": scaler_param,
            "pca_param": pca_param,
            "reg_param": heads["responses"],
        }

    def metadata_dict(self, evaluation: dict[str, dict[str, np.ndarray]], info: dict) -> dict:
        """``fmri``, ``encoding_model``, ``prf`` and ``roi``, as the reference's files."""
        ev = evaluation["responses"]
        values = self.voxel_values
        nc_single = values["nc_singletrial"]
        with np.errstate(divide="ignore", invalid="ignore"):
            percent = ev["r2"] / (np.where(nc_single > 0, nc_single, np.nan) / 100.0) * 100.0
        encoding: dict[str, Any] = {
            "train_stimuli": self.stimulus[self.train_trials].astype(str),
            "train_concepts": self.concept[self.train_trials].astype(str),
            "test_stimuli": self.stimulus[self.test_trials].astype(str),
            "test_concepts": self.concept[self.test_trials].astype(str),
            "test_avg_stimuli": self.test_avg_stimuli.astype(str),
            "test_avg_concepts": self.test_avg_concepts.astype(str),
            "noise_ceiling_singletrial": nc_single,
            "noise_ceiling_testset": values["nc_testset"],
            "splithalf_corrected": values["splithalf_corrected"],
            "splithalf_uncorrected": values["splithalf_uncorrected"],
            "correlation_results": ev["correlation"].astype(np.float32),
            "percent_noise_ceiling": np.nan_to_num(percent, nan=0.0).astype(np.float32),
            "r2": ev["r2"].astype(np.float32),
            "noise_ceiling": ev["noise_ceiling"].astype(np.float32),
            "explained_variance": ev["explained_variance"].astype(np.float32),
        }
        if "alpha" in ev:
            encoding["ridge_alpha"] = ev["alpha"].astype(np.float32)
        return {
            "fmri": {
                "voxel_coords": self.voxel_coords,
                "n_voxels": int(self.n_voxels),
                "subject_id": int(self.subject),
            },
            "encoding_model": encoding,
            "prf": {name.replace("-", "_"): values[name] for name in _PRF},
            "roi": self.roi_indices,
            "berg_train": info,
        }
