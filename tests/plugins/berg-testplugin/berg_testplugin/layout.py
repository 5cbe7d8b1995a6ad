"""Facts about the toy models and their files under ``berg_dir`` (shared by plugin, model, tests).

The layout copies the reference toolkit's bucket: every file is a Python dict saved with
``np.save(path, dict)``::

    berg_dir/encoding_models/modality-toy/train_dataset-synthetic/model-linear/
        encoding_models_weights/weights_subject-01.npy   {"lh_coef": (3, 20), "lh_intercept": (20,),
                                                          "rh_coef": (3, 16), "rh_intercept": (16,)}
        metadata/metadata_subject-01.npy                 {"fmri": {...}, "encoding_models": {...}}
    berg_dir/encoding_models/modality-toy/train_dataset-synthetic/model-timecourse/
        metadata/metadata_subject-01.npy                 {"eeg": {"ch_names": [...]}, "subject": 1}

``toy-synthetic-timecourse`` is a time-resolved model (an EEG stand-in): one output
``responses`` with dims ``(repetition, channel, time)``, channel names read from the subject's
metadata file, times in ms declared on the card (:func:`timecourse`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "FAMILY_MEMBERS",
    "FAMILY_OUTPUTS",
    "HEMISPHERES",
    "LINEAR_ID",
    "METADATA_FILE",
    "N_VERTICES",
    "ROIS",
    "ROI_ALIASES",
    "SUBJECTS",
    "TIMECOURSE_CHANNELS",
    "TIMECOURSE_ID",
    "TIMECOURSE_METADATA_FILE",
    "TIMECOURSE_REPETITIONS",
    "TIMES_MS",
    "WEIGHTS_FILE",
    "roi_indices",
    "timecourse",
    "write_berg_dir",
]

LINEAR_ID = "toy-synthetic-linear"
SUBJECTS = (1, 2)
HEMISPHERES = ("lh", "rh")
N_VERTICES = {"lh": 20, "rh": 16}
MODEL_DIR = "encoding_models/modality-toy/train_dataset-synthetic/model-linear"
WEIGHTS_FILE = MODEL_DIR + "/encoding_models_weights/weights_subject-{subject:02d}.npy"
METADATA_FILE = MODEL_DIR + "/metadata/metadata_subject-{subject:02d}.npy"
#: ROI names; "FFA-2" has no left-hemisphere vertex (as some fsaverage ROIs of NSD subjects).
ROIS = ("V1", "V2", "FFA-1", "FFA-2", "OWFA")
#: The reference card's misspelling, accepted and mapped to the real name.
ROI_ALIASES = {"OVWFA": "OWFA"}

#: Members of the ``toy_family`` gateway, and the columns each member's one output has.
FAMILY_MEMBERS = ("alpha", "beta", "gamma")
FAMILY_OUTPUTS = 4

TIMECOURSE_ID = "toy-synthetic-timecourse"
TIMECOURSE_DIR = "encoding_models/modality-toy/train_dataset-synthetic/model-timecourse"
TIMECOURSE_METADATA_FILE = TIMECOURSE_DIR + "/metadata/metadata_subject-{subject:02d}.npy"
#: Repetitions of every trial the time-resolved model predicts.
TIMECOURSE_REPETITIONS = 2
#: Channel names of each subject (in its metadata file, as EEG montages differ between labs).
TIMECOURSE_CHANNELS = {1: ("O1", "Oz", "O2"), 2: ("PO7", "POz", "PO8")}
#: Time of each sample relative to image onset, in ms.
TIMES_MS = (-50.0, 0.0, 50.0, 100.0, 150.0)


def timecourse(rgb: Any, subject: int, gain: float = 1.0, reference: str = "none") -> Any:
    """Responses of ``toy-synthetic-timecourse``, ``(B, repetition, channel, time)`` float64.

    ``gain * (r + 1) * rgb[:, c] * (1 + t / 100) + subject / 10`` for repetition ``r``, channel
    ``c`` (the c-th of red, green, blue mean intensity) and time ``t`` in ms; with
    ``reference="average"`` the mean over channels is subtracted at every repetition and time.
    """
    import numpy as np

    rgb = np.asarray(rgb, dtype=np.float64)
    repetition = np.arange(1, TIMECOURSE_REPETITIONS + 1, dtype=np.float64)[None, :, None, None]
    time = 1.0 + np.asarray(TIMES_MS)[None, None, None, :] / 100.0
    values = gain * repetition * rgb[:, None, :, None] * time + subject / 10.0
    if reference == "average":
        values = values - values.mean(axis=2, keepdims=True)
    return values


def roi_indices(subject: int) -> dict[str, dict[str, list[int]]]:
    """Vertex indices of every ROI of *subject*: ``{hemisphere: {roi: sorted indices}}``."""
    shift = subject - 1
    return {
        "lh": {
            "V1": [0 + shift, 1 + shift, 2 + shift],
            "V2": [5, 6, 7, 8],
            "FFA-1": [10, 12, 14],
            "FFA-2": [],
            "OWFA": [3, 19],
        },
        "rh": {
            "V1": [0, 1],
            "V2": [4 + shift, 5 + shift],
            "FFA-1": [8, 9, 10],
            "FFA-2": [11, 15],
            "OWFA": [13],
        },
    }


def write_berg_dir(
    berg_dir: str | Path, subjects: tuple[int, ...] = SUBJECTS, seed: int = 0
) -> Path:
    """Write the toy models' weight and metadata files for *subjects* under *berg_dir*.

    Weights are random (from *seed*), saved as pickled dicts exactly as the reference toolkit
    does, so that tests can read them back with ``np.load(..., allow_pickle=True)`` and compute
    the expected responses independently.

    Returns
    -------
    Path
        *berg_dir*.
    """
    import numpy as np

    berg_dir = Path(berg_dir)
    rng = np.random.default_rng(seed)
    for subject in subjects:
        weights: dict[str, Any] = {}
        fmri: dict[str, Any] = {}
        scores: dict[str, Any] = {"train_img_num": np.arange(30, dtype=np.int64)}
        rois = roi_indices(subject)
        for hemi in HEMISPHERES:
            n = N_VERTICES[hemi]
            weights[f"{hemi}_coef"] = rng.normal(size=(3, n)).astype(np.float32)
            weights[f"{hemi}_intercept"] = rng.normal(size=n).astype(np.float32)
            fmri[f"{hemi}_ncsnr"] = rng.uniform(0, 1, size=n).astype(np.float32)
            fmri[f"{hemi}_fsaverage_rois"] = {
                name: np.asarray(index, dtype=np.int64) for name, index in rois[hemi].items()
            }
            scores[f"{hemi}_correlation"] = rng.uniform(-1, 1, size=n).astype(np.float32)
        metadata = {"fmri": fmri, "encoding_models": scores, "subject": subject}
        for template, data in ((WEIGHTS_FILE, weights), (METADATA_FILE, metadata)):
            path = berg_dir / template.format(subject=subject)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, data)  # type: ignore[arg-type]  # a dict, pickled, as the reference does
        path = berg_dir / TIMECOURSE_METADATA_FILE.format(subject=subject)
        path.parent.mkdir(parents=True, exist_ok=True)
        eeg = {"ch_names": list(TIMECOURSE_CHANNELS[subject]), "times_ms": np.asarray(TIMES_MS)}
        np.save(path, {"eeg": eeg, "subject": subject})  # type: ignore[arg-type]
    return berg_dir
