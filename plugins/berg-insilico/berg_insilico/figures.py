"""Figures (matplotlib, Agg): image grids, score histograms against a baseline, RDM heat maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["histogram", "image_grid", "rdm_heatmap"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.shape[0] == 3:
        image = image.transpose(1, 2, 0)
    return image if image.dtype == np.uint8 else np.clip(image, 0, 1)


def image_grid(
    images: Sequence[np.ndarray], labels: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """A PNG grid of *images* ``(3, H, W)``, each captioned with its label."""
    plt = _pyplot()
    n = len(images)
    cols = min(n, 5)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, labels, strict=False):
        ax.imshow(_rgb(image))
        ax.set_title(label, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def histogram(
    baseline: np.ndarray, observed: dict[str, float], path: str | Path, xlabel: str, title: str
) -> Path:
    """A PNG histogram of a random *baseline* with the *observed* values as vertical lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(baseline, bins=40, color="0.7", label="random sets")
    for i, (label, value) in enumerate(observed.items()):
        ax.axvline(value, color=f"C{i}", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def rdm_heatmap(rdm: np.ndarray, path: str | Path, title: str) -> Path:
    """A PNG heat map of an RDM (1 - Pearson r)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 3.5))
    image = ax.imshow(rdm, cmap="viridis", vmin=0, vmax=2)
    fig.colorbar(image, ax=ax, label="1 - r")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)
