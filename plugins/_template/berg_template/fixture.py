"""Tiny model files with random but deterministic values, for the tests and ``berg check``.

``python -m berg_template.fixture BERG_DIR`` writes them into ``BERG_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from berg_template.plugin import (
    BRAINMODEL_FILE,
    BRAINMODEL_ID,
    CHANNELS,
    N_FEATURES,
    READOUT_FILE,
    READOUT_ID,
    SUBJECTS,
    TIMES_MS,
)

#: Voxels of the brain model.
N_VOXELS = 50


def write_berg_dir(berg_dir: str | Path, subjects: tuple[int, ...] = SUBJECTS) -> Path:
    """Write both models' files for *subjects* into *berg_dir* (seeded by subject)."""
    berg_dir = Path(berg_dir)
    for subject in subjects:
        rng = np.random.default_rng(subject)
        size = len(CHANNELS) * len(TIMES_MS)
        files: list[tuple[str, dict[str, Any]]] = [
            (
                READOUT_FILE,
                {
                    "weight": rng.normal(0, 0.3, (N_FEATURES, size)).astype(np.float32),
                    "bias": rng.normal(0, 0.1, size).astype(np.float32),
                },
            ),
            (
                BRAINMODEL_FILE,
                {
                    "coef": rng.normal(0, 1, (3, N_VOXELS)).astype(np.float32),
                    "intercept": rng.normal(0, 0.5, N_VOXELS).astype(np.float32),
                },
            ),
        ]
        for template, data in files:
            path = berg_dir / template.format(subject=subject)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, data, allow_pickle=True)  # a pickled dict, as the reference writes
    return berg_dir


def berg_check_fixture(tmp_path: Path) -> list[dict[str, Any]]:
    """What ``berg check`` encodes: both models, subject 1, in a berg_dir under *tmp_path*."""
    berg_dir = write_berg_dir(Path(tmp_path) / "berg_dir", subjects=(1,))
    return [
        {"berg_dir": berg_dir, "model_id": READOUT_ID, "subject": 1},
        {
            "berg_dir": berg_dir,
            "model_id": BRAINMODEL_ID,
            "subject": 1,
            "options": {"exponent": 0.5},
        },
    ]


if __name__ == "__main__":  # pragma: no cover
    print(write_berg_dir(sys.argv[1]))
