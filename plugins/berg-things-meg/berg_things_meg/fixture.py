"""Model files in the reference layout with random but deterministic values (numpy only).

For the tests and ``berg check``: the real sensor count (271, with synthetic CTF-style names
grouped by the real prefixes and regions), the real time axis, the real feature count of
ViT-B/32 and few PCA components. ``python -m berg_things_meg.fixture BERG_DIR`` writes subject
1 into ``BERG_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from berg_things_meg.plugin import (
    CARD,
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
    from berg_core.testing import reference_weights  # imports pytest: only when called

    return reference_weights(dim, N_SENSORS * N_TIMES, k=k, seed=[subject, dim, k])


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
    from berg_core.testing import write_card_files

    written = write_card_files(
        berg_dir,
        CARD,
        subject,
        {
            WEIGHTS_FILE: make_weights(subject) if weights is None else weights,
            METADATA_FILE: make_metadata(subject) if metadata is None else metadata,
        },
        complete=True,
    )
    return written[WEIGHTS_FILE], written[METADATA_FILE]


def berg_check_fixture(tmp_path: Path) -> list[dict[str, Any]]:
    """What ``berg check`` encodes: subject 1 on random files.

    ``berg check`` runs offline: when torchvision's cache has no ViT-B/32 checkpoint, the case's
    ``env`` points ``TORCH_HOME`` at random weights under its file name in *tmp_path*
    (:func:`berg_core.testing.check_torch_env`; set only while the model is checked).
    """
    from berg_core.testing import check_torch_env

    env = check_torch_env(tmp_path, "ViT_B_32_Weights.IMAGENET1K_V1")
    berg_dir = Path(tmp_path) / "berg_dir"
    write_model_files(berg_dir, 1)
    return [{"berg_dir": berg_dir, "model_id": MODEL_ID, "subject": 1, "env": env}]


if __name__ == "__main__":  # pragma: no cover
    write_model_files(sys.argv[1], 1)
    print(sys.argv[1])
