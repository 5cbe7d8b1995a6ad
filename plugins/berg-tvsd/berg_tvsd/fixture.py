"""Model files in the reference layout with random but deterministic values (numpy only).

For the tests and ``berg check``: the real electrode count and ROI assignment of each monkey,
the real time axis, the real feature count of ViT-B/32 and few PCA components.
``python -m berg_tvsd.fixture BERG_DIR`` writes monkey F into ``BERG_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from berg_tvsd.plugin import (
    CARD,
    METADATA_FILE,
    MODEL_ID,
    N_ELECTRODES,
    N_FEATURES,
    N_TIMES,
    ROIS,
    WEIGHTS_FILE,
)

__all__ = ["ROI_RANGES", "TIMES", "berg_check_fixture", "make_weights", "write_model_files"]

#: Electrode index ranges of each ROI, per monkey (the reference's assignment).
ROI_RANGES = {
    "N": {"V1": range(0, 512), "V4": range(512, 768), "IT": range(768, 1024)},
    "F": {"V1": range(0, 512), "IT": range(512, 832), "V4": range(832, 1024)},
}
#: The monkeys' time axis: -0.1 s to 0.199 s at 1 kHz.
TIMES = np.round(np.arange(-100, N_TIMES - 100) * 0.001, 3)


def make_metadata(subject: str) -> dict[str, Any]:
    """A metadata dict in the reference layout (random accuracies)."""
    rng = np.random.default_rng(ord(subject))
    assignments = np.zeros(N_ELECTRODES, dtype=np.int64)
    for roi, electrodes in ROI_RANGES[subject].items():
        assignments[list(electrodes)] = ROIS.index(roi)
    shape = (N_ELECTRODES, N_TIMES)
    return {
        "utah-array": {
            "times": TIMES.copy(),
            "electrode_order": np.arange(N_ELECTRODES),
            "monkey_id": f"monkey{subject}",
            "n_electrodes": N_ELECTRODES,
        },
        "roi": {"roi_assignments": assignments, "roi_labels": np.array(ROIS)},
        "encoding_model": {
            "all_training_splits": {"correlation_results": rng.uniform(-1, 1, shape)},
            "ncsnr": rng.uniform(0, 1, shape),
            "noise_ceiling": rng.uniform(0, 100, shape),
        },
    }


def make_weights(subject: str, *, k: int = 3, dim: int = N_FEATURES) -> dict[str, Any]:
    """A weights dict in the reference layout: scaler, one PCA (*k* components), one regression."""
    from berg_core.testing import reference_weights  # imports pytest: only when called

    return reference_weights(dim, N_ELECTRODES * N_TIMES, k=k, seed=[ord(subject), dim, k])


def write_model_files(
    berg_dir: str | Path,
    subject: str = "F",
    *,
    weights: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    metadata_file: str = METADATA_FILE,
) -> tuple[Path, Path]:
    """Write the weights (*weights*, or :func:`make_weights`) and metadata files of *subject*.

    Returns
    -------
    (Path, Path)
        The weights file and the metadata file.
    """
    from berg_core.testing import write_card_files

    written = write_card_files(
        berg_dir,
        CARD,
        subject,
        {
            WEIGHTS_FILE: make_weights(subject) if weights is None else weights,
            metadata_file: make_metadata(subject) if metadata is None else metadata,
        },
        complete=metadata_file == METADATA_FILE,
    )
    return written[WEIGHTS_FILE], written[metadata_file]


def berg_check_fixture(tmp_path: Path) -> list[dict[str, Any]]:
    """What ``berg check`` encodes: monkey F on random files.

    ``berg check`` runs offline: when torchvision's cache has no ViT-B/32 checkpoint, the case's
    ``env`` points ``TORCH_HOME`` at random weights under its file name in *tmp_path*
    (:func:`berg_core.testing.check_torch_env`; set only while the model is checked).
    """
    from berg_core.testing import check_torch_env

    env = check_torch_env(tmp_path, "ViT_B_32_Weights.IMAGENET1K_V1")
    berg_dir = Path(tmp_path) / "berg_dir"
    write_model_files(berg_dir, "F")
    return [{"berg_dir": berg_dir, "model_id": MODEL_ID, "subject": "F", "env": env}]


if __name__ == "__main__":  # pragma: no cover
    write_model_files(sys.argv[1], "F")
    print(sys.argv[1])
