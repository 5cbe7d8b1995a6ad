"""Reader of the Natural Scenes Dataset (fsaverage betas) as published, for training.

Files read under the NSD root (the layout of the public ``natural-scenes-dataset`` bucket):

* ``nsddata/experiments/nsd/nsd_expdesign.mat``: ``masterordering`` (1 x 30,000, 1-based
  positions in the subject's image list), ``subjectim`` (8 x 10,000, 1-based NSD image ids),
  ``sharedix`` (the 1,000 shared image ids, 1-based);
* ``nsddata_betas/ppdata/subjXX/fsaverage/betas_fithrf_GLMdenoise_RR/{lh,rh}.betas_sessionNN.mgh``
  (163,842 x 1 x 1 x 750 per session) and ``{lh,rh}.ncsnr.mgh`` beside them;
* ``nsddata/freesurfer/fsaverage/label/{lh,rh}.<atlas>.mgz`` + ``.mgz.ctab`` for the atlases
  ``prf-visualrois``, ``floc-bodies``, ``floc-faces``, ``floc-places``, ``floc-words``,
  ``streams`` (and ``nsdgeneral`` when present);
* ``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``, dataset ``imgBrick`` (73,000 x 425 x 425 x
  3 uint8), indexed by 0-based image id.

The recipe is the reference's (model card "Preprocessing" and partition paragraphs): betas are
z-scored per vertex within each session; each image's target is the mean of its repeats (NaN
-> 0); the training images are the subject's non-shared images, the test images the shared ones
it saw exactly 3 times within its first 30 sessions (515 for every subject), the validation
images the other shared ones it saw. Betas are read straight from the MGH files, memory-mapped
by nibabel, one vertex chunk of one session at a time.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from berg_nsd.cards import CARDS
from berg_nsd.fsaverage import HEMISPHERES, N_VERTICES, ROI_ATLASES

from berg_core import InvalidParameterError
from berg_train.datasets.base import (
    TargetBlock,
    TrainingDataset,
    array_digest,
    card_layout,
    is_simulated,
    zscore_rows,
)
from berg_train.metrics import noise_ceiling_from_ncsnr

__all__ = [
    "ATLASES",
    "EXPDESIGN",
    "N_VERTICES",
    "NSDDataset",
    "NSDImages",
    "betas_dir",
    "read_ctab",
]

EXPDESIGN = "nsddata/experiments/nsd/nsd_expdesign.mat"
STIMULI = "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
LABEL_DIR = "nsddata/freesurfer/fsaverage/label"
#: ROI atlases whose labels make the metadata's ROI dicts (``nsdgeneral``, the last, is optional).
ATLASES = tuple(ROI_ATLASES)
_REQUIRED_ATLASES = ATLASES[:-1]
_SESSION = re.compile(r"^lh\.betas_session(\d+)\.mgh$")


def betas_dir(root: Path, subject: int) -> Path:
    """``nsddata_betas/ppdata/subjXX/fsaverage/betas_fithrf_GLMdenoise_RR`` under *root*."""
    return (
        Path(root)
        / "nsddata_betas/ppdata"
        / f"subj{subject:02d}"
        / "fsaverage/betas_fithrf_GLMdenoise_RR"
    )


def read_ctab(path: Path) -> dict[int, str]:
    """Label value -> name from a FreeSurfer colour table (``index name [r g b a]`` lines)."""
    table = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].lstrip("-").isdigit():
            table[int(parts[0])] = parts[1]
    return table


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InvalidParameterError(f"NSD {what} not found: {path}")
    return path


class NSDImages:
    """The NSD stimuli of some image ids, read from ``imgBrick`` batch by batch.

    Parameters
    ----------
    path : Path
        ``nsd_stimuli.hdf5``.
    ids : numpy.ndarray
        0-based NSD image ids; position ``i`` is feature row ``i``.
    """

    def __init__(self, path: Path, ids: np.ndarray) -> None:
        self.path = Path(path)
        self.ids = np.asarray(ids, dtype=np.int64)
        self._h5: Any = None

    def __len__(self) -> int:
        return int(self.ids.size)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "ids": self.ids, "_h5": None}

    def _brick(self) -> Any:
        import h5py

        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        if "imgBrick" not in self._h5:
            raise InvalidParameterError(f"NSD stimuli {self.path} have no dataset 'imgBrick'")
        brick = self._h5["imgBrick"]
        if brick.ndim != 4 or brick.shape[-1] != 3 or brick.dtype != np.uint8:
            raise InvalidParameterError(
                f"NSD stimuli {self.path}: imgBrick is {brick.dtype} {brick.shape}; expected "
                f"uint8 (images, height, width, 3)"
            )
        return brick

    def load(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 ``(B, 3, H, W)`` images at feature rows *indices* (any order, repeats allowed).

        Each distinct image is read once, in ascending id order, one image per read: NSD's
        ``imgBrick`` is stored in chunks of one image, and h5py's list indexing
        (``imgBrick[[i, j, ...]]``) is about 70 times slower than reading the same images one by
        one in index order. The images are then put in the requested order.

        Raises
        ------
        berg_core.InvalidParameterError
            A feature row outside ``0 .. len(self) - 1``, or an image id outside ``imgBrick``.
        """
        rows = np.asarray(list(indices), dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.ids.size):
            bad = int(rows[(rows < 0) | (rows >= self.ids.size)][0])
            raise InvalidParameterError(
                f"NSD image rows: row {bad} requested; allowed 0..{self.ids.size - 1}"
            )
        brick = self._brick()
        height, width = int(brick.shape[1]), int(brick.shape[2])
        ids = self.ids[rows]
        unique, inverse = np.unique(ids, return_inverse=True)  # ascending
        if unique.size and (unique[0] < 0 or unique[-1] >= brick.shape[0]):
            bad = int(unique[0] if unique[0] < 0 else unique[-1])
            raise InvalidParameterError(
                f"NSD image id {bad} is outside imgBrick of {self.path} "
                f"(allowed 0..{brick.shape[0] - 1})"
            )
        block = np.empty((unique.size, height, width, 3), dtype=np.uint8)
        for position, image_id in enumerate(unique.tolist()):
            brick.read_direct(block, np.s_[image_id], np.s_[position])
        images = np.empty((ids.size, 3, height, width), dtype=np.uint8)
        for position, source in enumerate(inverse.reshape(-1).tolist()):
            images[position] = block[source].transpose(2, 0, 1)
        return images

    def close(self) -> None:
        """Close the HDF5 file."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


class NSDDataset(TrainingDataset):
    """One NSD subject on fsaverage, read for training.

    Parameters
    ----------
    root : path-like
        The NSD root (holding ``nsddata``, ``nsddata_betas``, ``nsddata_stimuli``).
    subject : int
        1..8.
    sessions : int, optional
        Use the first *sessions* sessions (default: every session found, 01 upwards).
    test_sessions : int
        Test images are the shared ones seen exactly 3 times within this many first sessions.
    label_dir : path-like, optional
        Folder of the fsaverage ROI label files (default ``nsddata/freesurfer/fsaverage/label``).

    Raises
    ------
    berg_core.InvalidParameterError
        Missing files, or files that do not fit together.
    """

    dataset_id = "nsd_fsaverage"

    def __init__(
        self,
        root: str | Path,
        subject: int,
        *,
        sessions: int | None = None,
        test_sessions: int = 30,
        label_dir: str | Path | None = None,
    ) -> None:
        import nibabel as nib
        from scipy.io import loadmat

        self.root = Path(root)
        if not 1 <= int(subject) <= 8:
            raise InvalidParameterError(f"NSD subject must be 1..8, got {subject}")
        self.subject = int(subject)
        self.simulated = is_simulated(self.root)
        self.outputs = tuple((h, N_VERTICES) for h in HEMISPHERES)
        self.label_dir = Path(label_dir) if label_dir is not None else self.root / LABEL_DIR
        design = loadmat(_require(self.root / EXPDESIGN, "experimental design"))
        for key in ("masterordering", "subjectim", "sharedix"):
            if key not in design:
                raise InvalidParameterError(f"{self.root / EXPDESIGN} has no variable {key!r}")
        master = np.asarray(design["masterordering"]).ravel().astype(np.int64)
        subjectim = np.asarray(design["subjectim"]).astype(np.int64)
        shared = np.asarray(design["sharedix"]).ravel().astype(np.int64) - 1
        if subjectim.ndim != 2 or subjectim.shape[0] < self.subject:
            raise InvalidParameterError(f"subjectim has shape {subjectim.shape}")

        folder = betas_dir(self.root, self.subject)
        found = sorted(
            int(m.group(1))
            for p in folder.glob("lh.betas_session*.mgh")
            if (m := _SESSION.match(p.name))
        )
        available = 0
        while available + 1 in found:
            available += 1
        if available == 0:
            raise InvalidParameterError(f"no NSD betas (lh.betas_session01.mgh) in {folder}")
        if sessions is not None and not 1 <= sessions <= available:
            raise InvalidParameterError(
                f"sessions = {sessions}, but {folder} has sessions 01..{available:02d}"
            )
        n_sessions = sessions or available
        self.sessions: list[dict[str, Any]] = []
        start = 0
        for number in range(1, n_sessions + 1):
            paths = {
                h: _require(folder / f"{h}.betas_session{number:02d}.mgh", "betas")
                for h in HEMISPHERES
            }
            frames = None
            for path in paths.values():
                shape = nib.load(path).shape
                if shape[0] != N_VERTICES or int(np.prod(shape[1:-1])) != 1:
                    raise InvalidParameterError(
                        f"{path} has shape {shape}; expected ({N_VERTICES}, 1, 1, trials)"
                    )
                if frames is not None and shape[-1] != frames:
                    raise InvalidParameterError(f"lh and rh of session {number} differ in trials")
                frames = int(shape[-1])
            assert frames is not None
            self.sessions.append(
                {"number": number, "paths": paths, "start": start, "stop": start + frames}
            )
            start += frames
        n_trials = start
        self.trials_in_memory = max(s["stop"] - s["start"] for s in self.sessions)
        if n_trials > master.size:
            raise InvalidParameterError(
                f"{n_sessions} sessions hold {n_trials} trials but masterordering has {master.size}"
            )
        positions = master[:n_trials] - 1
        if positions.min() < 0 or positions.max() >= subjectim.shape[1]:
            raise InvalidParameterError("masterordering points outside subjectim")
        trial_ids = subjectim[self.subject - 1, positions] - 1  # 0-based NSD ids per trial
        self.trial_ids = trial_ids
        is_shared = np.isin(trial_ids, shared)
        first = min(test_sessions, n_sessions)
        early = np.arange(n_trials) < self.sessions[first - 1]["stop"]
        ids_early, counts_early = np.unique(trial_ids[early & is_shared], return_counts=True)
        test_ids = ids_early[counts_early == 3]
        val_ids = np.setdiff1d(np.unique(trial_ids[is_shared]), test_ids)
        train_ids = np.unique(trial_ids[~is_shared])
        if train_ids.size == 0 or test_ids.size == 0:
            raise InvalidParameterError(
                f"subject {self.subject}: {train_ids.size} training and {test_ids.size} test "
                f"images in {n_sessions} session(s); both must be non-empty"
            )
        self.train_ids, self.val_ids, self.test_ids = train_ids, val_ids, test_ids
        ids = np.concatenate([train_ids, val_ids, test_ids])
        self.n_fit = int(train_ids.size)
        self.train_rows = np.arange(train_ids.size)
        self.test_rows = np.arange(test_ids.size) + train_ids.size + val_ids.size
        self.val_rows = np.arange(val_ids.size) + train_ids.size
        self.test_repeats = 3.0
        row_of = {int(i): r for r, i in enumerate(ids)}
        self.trial_rows = np.array([row_of[int(i)] for i in trial_ids], dtype=np.int64)
        self.row_counts = np.bincount(self.trial_rows, minlength=ids.size).astype(np.float64)
        stimuli = _require(self.root / STIMULI, "stimuli")
        self.images = NSDImages(stimuli, ids)
        self._ncsnr: dict[str, np.ndarray] = {}
        self._proxies: dict[tuple[int, str], Any] = {}

    # -- targets -----------------------------------------------------------------------------
    def _proxy(self, session: dict[str, Any], hemisphere: str) -> Any:
        import nibabel as nib

        key = (session["number"], hemisphere)
        if key not in self._proxies:
            self._proxies[key] = nib.load(session["paths"][hemisphere]).dataobj
        return self._proxies[key]

    def read_targets(self, output: str, start: int, stop: int) -> TargetBlock:
        """z-scored, repeat-averaged betas of vertices ``start:stop`` of hemisphere *output*.

        Sessions are read one at a time (a ``(stop - start) x trials`` slice of each MGH file),
        z-scored per vertex, and summed into their images' rows.
        """
        from scipy.sparse import csr_matrix

        n_rows = self.row_counts.size
        sums = np.zeros((n_rows, stop - start), dtype=np.float64)
        for session in self.sessions:
            t0, t1 = session["start"], session["stop"]
            block = np.asarray(self._proxy(session, output)[start:stop, 0, 0, :], dtype=np.float32)
            z = zscore_rows(block.reshape(stop - start, t1 - t0))
            scatter = csr_matrix(
                (np.ones(t1 - t0), (self.trial_rows[t0:t1], np.arange(t1 - t0))),
                shape=(n_rows, t1 - t0),
            )
            sums += scatter @ z.T.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / self.row_counts[:, None]
        means = np.nan_to_num(means, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
        return TargetBlock(train=means[self.train_rows], test=means[self.test_rows])

    def ncsnr(self, hemisphere: str) -> np.ndarray:
        """The ``{lh,rh}.ncsnr.mgh`` values, float32 ``(163842,)``."""
        import nibabel as nib

        if hemisphere not in self._ncsnr:
            path = _require(betas_dir(self.root, self.subject) / f"{hemisphere}.ncsnr.mgh", "ncsnr")
            values = np.asarray(nib.load(path).get_fdata(dtype=np.float32)).ravel()
            if values.size != N_VERTICES:
                raise InvalidParameterError(f"{path} has {values.size} values, not {N_VERTICES}")
            self._ncsnr[hemisphere] = values
        return self._ncsnr[hemisphere]

    def noise_ceiling(self, output: str) -> np.ndarray:
        """``ncsnr² / (ncsnr² + 1/3)``: test targets average 3 trials."""
        return noise_ceiling_from_ncsnr(self.ncsnr(output), self.test_repeats)

    # -- ROIs --------------------------------------------------------------------------------
    def rois(self, hemisphere: str) -> dict[str, np.ndarray]:
        """ROI name -> int64 vertex indices, from the fsaverage label files and colour tables."""
        import nibabel as nib

        table: dict[str, np.ndarray] = {}
        for atlas in ATLASES:
            volume = self.label_dir / f"{hemisphere}.{atlas}.mgz"
            ctab = self.label_dir / f"{hemisphere}.{atlas}.mgz.ctab"
            if not (volume.is_file() and ctab.is_file()):
                if atlas in _REQUIRED_ATLASES:
                    warnings.warn(
                        f"NSD ROI labels {volume} (+ .ctab) not found: its ROIs are left out",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                continue
            labels = np.rint(np.asarray(nib.load(volume).get_fdata())).astype(np.int64).ravel()
            for value, name in read_ctab(ctab).items():
                if value != 0:
                    table[name] = np.flatnonzero(labels == value).astype(np.int64)
        return table

    def roi_table(self) -> dict[str, dict[str, np.ndarray]]:
        """``{"lh": {roi: vertices}, "rh": {...}}``."""
        return {h: self.rois(h) for h in HEMISPHERES}

    # -- identity and layout -------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Root, subject, sessions, partitions."""
        return {
            "dataset": self.dataset_id,
            "root": str(self.root.resolve()),
            "subject": self.subject,
            "sessions": len(self.sessions),
            "trials": int(self.trial_ids.size),
            "partition": array_digest(self.train_ids, self.val_ids, self.test_ids, self.trial_ids),
        }

    def _layout(self, model: str) -> dict[str, Any]:
        """The files of the published NSD cards, moved to ``model-<model>``."""
        return card_layout(next(iter(CARDS.values())), self.subject, model)

    def model_dir(self, berg_dir: Path, model: str) -> Path:
        """``encoding_models/modality-fmri/train_dataset-nsd_fsaverage/model-<model>``."""
        return Path(berg_dir) / self._layout(model)["dir"]

    def weights_path(self, berg_dir: Path, model: str) -> Path:
        """``.../encoding_models_weights/weights_subject-SS.npy`` (as the NSD cards name it)."""
        return Path(berg_dir) / self._layout(model)["encoding_models_weights"]

    def metadata_path(self, berg_dir: Path, model: str) -> Path:
        """``.../metadata/metadata_subject-SS.npy`` (as the NSD cards name it)."""
        return Path(berg_dir) / self._layout(model)["metadata"]

    def figure_path(self, berg_dir: Path, model: str) -> Path:
        """``.../encoding_models_accuracy/accuracy_subject-SS.png``."""
        name = f"accuracy_subject-{self.subject:02d}.png"
        return self.model_dir(berg_dir, model) / "encoding_models_accuracy" / name

    def weights_dict(
        self, scaler_param: dict, pca_param: dict, heads: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """``scaler_param``, ``pca_param``, ``lh_reg_param``, ``rh_reg_param``."""
        return {
            "scaler_param": scaler_param,
            "pca_param": pca_param,
            "lh_reg_param": heads["lh"],
            "rh_reg_param": heads["rh"],
        }

    def metadata_dict(self, evaluation: dict[str, dict[str, np.ndarray]], info: dict) -> dict:
        """``fmri`` (ncsnr, ROIs) and ``encoding_models`` (partitions, test accuracy)."""
        fmri: dict[str, Any] = {}
        for h in HEMISPHERES:
            fmri[f"{h}_ncsnr"] = self.ncsnr(h).astype(np.float32)
        rois = self.roi_table()
        for h in HEMISPHERES:
            fmri[f"{h}_fsaverage_rois"] = rois[h]
        models: dict[str, Any] = {
            "train_img_num": self.train_ids.astype(np.int64),
            "val_img_num": self.val_ids.astype(np.int64),
            "test_img_num": self.test_ids.astype(np.int64),
        }
        for h in HEMISPHERES:
            ev = evaluation[h]
            models[f"{h}_correlation_nsdcore"] = ev["correlation"].astype(np.float32)
            models[f"{h}_r2_nsdcore"] = ev["r2"].astype(np.float32)
            models[f"{h}_noise_ceiling_nsdcore"] = ev["noise_ceiling"].astype(np.float32)
            models[f"{h}_explained_variance_nsdcore"] = ev["explained_variance"].astype(np.float32)
            if "alpha" in ev:
                models[f"{h}_ridge_alpha"] = ev["alpha"].astype(np.float32)
        return {"fmri": fmri, "encoding_models": models, "berg_train": info}
