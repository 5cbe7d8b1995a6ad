"""Facts about the toy models and their files under ``berg_dir`` (shared by plugin, model, tests).

The layout copies the reference toolkit's bucket: every file is a Python dict saved with
``np.save(path, dict)``::

    berg_dir/encoding_models/modality-toy/train_dataset-synthetic/model-linear/
        encoding_models_weights/weights_subject-01.npy   {"lh_coef": (3, 20), "lh_intercept": (20,),
                                                          "rh_coef": (3, 16), "rh_intercept": (16,)}
        metadata/metadata_subject-01.npy                 {"fmri": {...}, "encoding_models": {...}}
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
    "WEIGHTS_FILE",
    "roi_indices",
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
    """Write the toy model's weight and metadata files for *subjects* under *berg_dir*.

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
    return berg_dir
