"""Model files in the reference layout with random but deterministic values (numpy only).

For the tests and ``berg check``: the real electrode count and ROI assignment of each monkey,
the real time axis, the real feature count of ViT-B/32 and few PCA components.
``python -m berg_tvsd.fixture BERG_DIR`` writes monkey F into ``BERG_DIR``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from berg_tvsd.plugin import (
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
    rng = np.random.default_rng([ord(subject), dim, k])
    n_rows = N_ELECTRODES * N_TIMES
    scale = rng.uniform(0.5, 2.0, dim)
    return {
        "scaler_param": {"scale_": scale, "mean_": rng.normal(0, 0.5, dim), "var_": scale**2},
        "pca_param": {
            "components_": (rng.normal(0, 1, (k, dim)) / np.sqrt(dim)).astype(np.float32),
            "mean_": rng.normal(0, 0.01, dim).astype(np.float32),
            "n_components_": k,
        },
        "reg_param": {
            "coef_": rng.normal(0, 1, (n_rows, k)).astype(np.float32),
            "intercept_": rng.normal(0, 0.1, n_rows).astype(np.float32),
            "n_features_in_": k,
        },
    }


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
    paths = []
    for template, data in (
        (WEIGHTS_FILE, make_weights(subject) if weights is None else weights),
        (metadata_file, make_metadata(subject) if metadata is None else metadata),
    ):
        path = Path(berg_dir) / template.format(subject=subject)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, data, allow_pickle=True)  # a pickled dict, as the reference writes
        paths.append(path)
    return paths[0], paths[1]


def berg_check_fixture(tmp_path: Path) -> list[dict[str, Any]]:
    """What ``berg check`` encodes: monkey F on random files.

    ``berg check`` runs offline: when torchvision's cache has no ViT-B/32 checkpoint, random
    weights are written under its file name in *tmp_path* and ``TORCH_HOME`` points there for
    the rest of the process (a fixture has no other way to give a model its backbone).
    """
    import torchvision

    from berg_core.testing import make_torch_home
    from berg_core.torchkit import checkpoint_path

    weights = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    if not checkpoint_path(weights).exists():
        os.environ["TORCH_HOME"] = str(make_torch_home(Path(tmp_path) / "torch_home", [weights]))
    berg_dir = Path(tmp_path) / "berg_dir"
    write_model_files(berg_dir, "F")
    return [{"berg_dir": berg_dir, "model_id": MODEL_ID, "subject": "F"}]


if __name__ == "__main__":  # pragma: no cover
    write_model_files(sys.argv[1], "F")
    print(sys.argv[1])
