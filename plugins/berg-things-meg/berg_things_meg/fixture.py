"""Model files in the reference layout with random but deterministic values (numpy only).

For the tests and ``berg check``: the real sensor count (271, with synthetic CTF-style names
grouped by the real prefixes and regions), the real time axis, the real feature count of
ViT-B/32 and few PCA components. ``python -m berg_things_meg.fixture BERG_DIR`` writes subject
1 into ``BERG_DIR``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from berg_things_meg.plugin import (
    METADATA_FILE,
    MODEL_ID,
    N_FEATURES,
    N_SENSORS,
    N_TIMES,
    WEIGHTS_FILE,
)

__all__ = ["PREFIX_COUNTS", "SENSOR_NAMES", "TIMES", "berg_check_fixture", "make_weights"]

_PER_SIDE = (24, 33, 19, 23, 31)
#: Sensors per name prefix (synthetic counts adding up to the real 271).
PREFIX_COUNTS = {
    **{f"M{side}{part}": n for side in "LR" for part, n in zip("CFOPT", _PER_SIDE, strict=True)},
    "MZC": 4,
    "MZF": 3,
    "MZO": 3,
    "MZP": 1,
}
_REGIONS = {"C": "Central", "F": "Frontal", "O": "Occipital", "P": "Parietal", "T": "Temporal"}
_SIDES = {"L": "Left", "R": "Right", "Z": "Midline"}
SENSOR_NAMES = tuple(f"{p}{i + 11:02d}" for p, n in PREFIX_COUNTS.items() for i in range(n))
#: The subjects' time axis: -0.1 s to 1.3 s at 200 Hz.
TIMES = np.round(np.arange(-20, N_TIMES - 20) * 0.005, 3)


def make_metadata(subject: int) -> dict[str, Any]:
    """A metadata dict in the reference layout (random accuracies)."""
    rng = np.random.default_rng(2000 + subject)
    prefixes = np.array([name[:3] for name in SENSOR_NAMES])
    shape = (N_SENSORS, N_TIMES)
    return {
        "meg": {"times": TIMES.copy(), "subject_id": f"P{subject}"},
        "sensors": {
            "sensor_names": np.array(SENSOR_NAMES),
            "sensor_prefixes": prefixes,
            "sensor_hemispheres": np.array([_SIDES[p[1]] for p in prefixes]),
            "sensor_regions": np.array([_REGIONS[p[2]] for p in prefixes]),
            "n_sensors": N_SENSORS,
        },
        "encoding_model": {
            "all_training_splits": {
                "correlation_results": rng.uniform(-1, 1, shape),
                "percent_noise_ceiling": rng.uniform(0, 100, shape),
            },
            "ncsnr": rng.uniform(0, 1, shape),
            "noise_ceiling": rng.uniform(0, 100, shape),
        },
    }


def make_weights(subject: int, *, k: int = 3, dim: int = N_FEATURES) -> dict[str, Any]:
    """A weights dict in the reference layout: scaler, one PCA (*k* components), one regression."""
    rng = np.random.default_rng([subject, dim, k])
    n_rows = N_SENSORS * N_TIMES
    scale = rng.uniform(0.5, 2.0, dim)
    variance = np.sort(rng.uniform(1, 10, k))[::-1]
    return {
        "scaler_param": {
            "scale_": scale,
            "mean_": rng.normal(0, 0.5, dim),
            "var_": scale**2,
            "n_features_in_": dim,
            "n_samples_seen_": 100,
        },
        "pca_param": {
            "components_": (rng.normal(0, 1, (k, dim)) / np.sqrt(dim)).astype(np.float32),
            "explained_variance_": variance,
            "explained_variance_ratio_": variance / variance.sum() / 2,
            "singular_values_": np.sqrt(variance * 100),
            "mean_": rng.normal(0, 0.01, dim).astype(np.float32),
            "n_components_": k,
            "n_samples_": 100,
            "noise_variance_": 0.5,
            "n_features_in_": dim,
        },
        "reg_param": {
            "coef_": rng.normal(0, 1, (n_rows, k)).astype(np.float32),
            "intercept_": rng.normal(0, 0.1, n_rows).astype(np.float32),
            "n_features_in_": k,
        },
    }


def write_model_files(
    berg_dir: str | Path,
    subject: int = 1,
    *,
    weights: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
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
        (METADATA_FILE, make_metadata(subject) if metadata is None else metadata),
    ):
        path = Path(berg_dir) / template.format(subject=subject)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, data, allow_pickle=True)  # a pickled dict, as the reference writes
        paths.append(path)
    return paths[0], paths[1]


def berg_check_fixture(tmp_path: Path) -> list[dict[str, Any]]:
    """What ``berg check`` encodes: subject 1 on random files.

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
    write_model_files(berg_dir, 1)
    return [{"berg_dir": berg_dir, "model_id": MODEL_ID, "subject": 1}]


if __name__ == "__main__":  # pragma: no cover
    write_model_files(sys.argv[1], 1)
    print(sys.argv[1])
