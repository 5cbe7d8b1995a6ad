"""The accuracy figure of a THINGS EEG2 model: test r over time, overall and per scalp region."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["REGIONS", "channel_region", "write_eeg2_figure"]

#: Scalp regions by the 10-20 name's letters (the longest prefix wins): frontal, central,
#: temporal, parietal, occipital.
REGIONS = {
    "Fp": "frontal", "AF": "frontal", "F": "frontal", "FC": "central", "C": "central",
    "FT": "temporal", "T": "temporal", "TP": "temporal", "CP": "parietal", "P": "parietal",
    "PO": "occipital", "O": "occipital",
}  # fmt: skip


def channel_region(name: str) -> str:
    """Scalp region of a 10-20 channel name (``"PO7"`` -> ``"occipital"``)."""
    letters = "".join(ch for ch in name if ch.isalpha() and ch != "z")
    for size in range(len(letters), 0, -1):
        if letters[:size] in REGIONS:
            return REGIONS[letters[:size]]
    return "other"


def write_eeg2_figure(
    correlation_averaged: np.ndarray,
    correlation_single: np.ndarray,
    noise_ceiling: np.ndarray,
    channels: Sequence[str],
    times: np.ndarray,
    path: Path,
    *,
    title: str,
    simulated: bool = False,
) -> Path:
    """Write a PNG: channel-mean test r over time (mean of repetitions, each repetition, noise
    ceiling r = sqrt(NC)), and the mean r over time of each scalp region.

    Parameters
    ----------
    correlation_averaged : numpy.ndarray
        ``(channels, times)`` r of the repetition-averaged prediction.
    correlation_single : numpy.ndarray
        ``(repetitions, channels, times)``.
    noise_ceiling : numpy.ndarray
        ``(channels, times)`` percent.
    channels : sequence of str
    times : numpy.ndarray
        Seconds.
    path : Path
        The PNG file (written atomically).
    title : str
    simulated : bool
        Label the figure SIMULATED.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from berg_core.atomic import atomic_outputs

    ms = np.asarray(times, dtype=np.float64) * 1000
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r, single in enumerate(correlation_single):
        left.plot(ms, np.nanmean(single, axis=0), lw=0.8, alpha=0.6, label=f"rep-{r + 1}")
    left.plot(ms, np.nanmean(correlation_averaged, axis=0), color="black", lw=2,
              label="mean of 4 repetitions")  # fmt: skip
    ceiling = np.sqrt(np.clip(noise_ceiling, 0, 100) / 100)
    left.plot(ms, ceiling.mean(axis=0), color="grey", ls="--", label="noise ceiling r")
    left.set_xlabel("time (ms)")
    left.set_ylabel("test Pearson r (mean over channels)")
    left.legend(fontsize=7)
    regions = np.array([channel_region(c) for c in channels])
    for region in dict.fromkeys(REGIONS.values()):
        rows = regions == region
        if rows.any():
            right.plot(ms, np.nanmean(correlation_averaged[rows], axis=0),
                       label=f"{region} ({int(rows.sum())})")  # fmt: skip
    right.set_xlabel("time (ms)")
    right.set_ylabel("test Pearson r (mean over the region's channels)")
    right.legend(fontsize=7)
    for axis in (left, right):
        axis.axvline(0, color="grey", lw=0.5)
        axis.axhline(0, color="grey", lw=0.5)
    label = "SIMULATED DATA - " if simulated else ""
    fig.suptitle(label + title, color="firebrick" if simulated else "black")
    fig.tight_layout()
    path = Path(path)
    with atomic_outputs([path], force=True) as (part,):
        fig.savefig(part, dpi=110, format="png")
    plt.close(fig)
    return path
