"""Model files in the reference layout with random but deterministic values (numpy only).

For the tests and ``berg check``: the real channel names and count, the real time axis, the real
feature counts of the backbones, and few PCA components. ``python -m berg_things_eeg2.fixture
BERG_DIR`` writes subject 1 of every model (generation B) into ``BERG_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from berg_things_eeg2.layout import (
    CHANNELS,
    FOLDERS,
    N_TIMES,
    REPETITIONS,
    TIMES,
    metadata_file,
    weights_file,
)

__all__ = ["FEATURES", "TIMES", "berg_check_fixture", "make_weights", "write_model_files"]

#: Features per image of each backbone at 224 x 224 (the reference's nodes).
FEATURES = {"vit_b_32": 12 * 50 * 768, "alexnet": 205_672, "alexnet_untrained": 205_672}


def make_metadata(subject: int) -> dict[str, Any]:
    """A metadata dict in the reference layout (random accuracies)."""
    rng = np.random.default_rng(1000 + subject)
    shape = (len(CHANNELS), N_TIMES)
    return {
        "eeg": {
            "ch_names": list(CHANNELS),
            "times": TIMES.copy(),
            "ncsnr": rng.uniform(0, 1, shape),
            "noise_ceiling": rng.uniform(0, 100, shape),
        },
        "encoding_models": {
            "correlation_averaged_repetitions": rng.uniform(-1, 1, shape),
            "correlation_single_repetitions": rng.uniform(-1, 1, (len(REPETITIONS), *shape)),
            "train_img_info": {"train_img_files": [f"train_{i:05d}.jpg" for i in range(3)]},
            "test_img_info": {"test_img_files": [f"test_{i:03d}.jpg" for i in range(2)]},
        },
    }


def _pca(rng: np.random.Generator, k: int, dim: int) -> dict[str, Any]:
    variance = np.sort(rng.uniform(1, 10, k))[::-1]
    return {
        "components_": (rng.normal(0, 1, (k, dim)) / np.sqrt(dim)).astype(np.float32),
        "explained_variance_": variance,
        "explained_variance_ratio_": variance / variance.sum() / 2,
        "singular_values_": np.sqrt(variance * 100),
        "mean_": rng.normal(0, 0.01, dim).astype(np.float32),
        "n_components_": k,
        "n_samples_": 100,
        "noise_variance_": 0.5,
        "n_features_in_": dim,
    }


def make_weights(
    folder: str, subject: int, *, generation: str = "B", k: int = 3, dim: int | None = None
) -> dict[str, Any]:
    """A weights dict of *generation* ``"A"`` (one PCA) or ``"B"`` (one PCA dict per repetition).

    (Generation C, pickled scikit-learn PCA objects, needs scikit-learn: the tests write it.)
    """
    dim = FEATURES[folder] if dim is None else dim
    rng = np.random.default_rng([subject, ord(generation), dim])
    n_rows = len(CHANNELS) * N_TIMES
    scale = rng.uniform(0.5, 2.0, dim)
    scaler = {
        "scale_": scale,
        "mean_": rng.normal(0, 0.5, dim),
        "var_": scale**2,
        "n_features_in_": dim,
        "n_samples_seen_": 100,
    }
    if generation == "A":
        pca: dict[str, Any] = _pca(rng, k, dim)
    elif generation == "B":
        pca = {r: _pca(rng, k, dim) for r in REPETITIONS}
    else:
        raise ValueError(f"generation must be 'A' or 'B', got {generation!r}")
    reg = {
        r: {
            "coef_": rng.normal(0, 1, (n_rows, k)).astype(np.float32),
            "intercept_": rng.normal(0, 0.1, n_rows).astype(np.float32),
            "n_features_in_": k,
        }
        for r in REPETITIONS
    }
    return {"scaler_param": scaler, "pca_param": pca, "reg_param": reg}


def write_model_files(
    berg_dir: str | Path,
    model_id: str,
    subject: int = 1,
    *,
    weights: dict[str, Any] | None = None,
    generation: str = "B",
    k: int = 3,
) -> tuple[Path, Path]:
    """Write a model's weights (*weights*, or :func:`make_weights`) and metadata files.

    Returns
    -------
    (Path, Path)
        The weights file and the metadata file.
    """
    folder = FOLDERS[model_id]
    if weights is None:
        weights = make_weights(folder, subject, generation=generation, k=k)
    paths = []
    for template, data in (
        (weights_file(folder), weights),
        (metadata_file(folder), make_metadata(subject)),
    ):
        path = Path(berg_dir) / template.format(subject=subject)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, data, allow_pickle=True)  # a pickled dict, as the reference writes
        paths.append(path)
    return paths[0], paths[1]


def berg_check_fixture(tmp_path: Path) -> list[dict[str, Any]]:
    """What ``berg check`` encodes: the untrained AlexNet model (it needs no download).

    ``berg check`` runs offline; the pretrained backbones' checks are in the plugin's tests,
    which provide random weights under torchvision's file names.
    """
    berg_dir = Path(tmp_path) / "berg_dir"
    write_model_files(berg_dir, "eeg-things_eeg_2-alexnet_untrained", 1, generation="B")
    return [{"berg_dir": berg_dir, "model_id": "eeg-things_eeg_2-alexnet_untrained", "subject": 1}]


if __name__ == "__main__":  # pragma: no cover
    for model_id in FOLDERS:
        write_model_files(sys.argv[1], model_id, 1)
    print(sys.argv[1])
