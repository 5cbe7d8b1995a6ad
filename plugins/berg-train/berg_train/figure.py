"""The accuracy figure: test correlation and % of the noise ceiling explained, per ROI."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["roi_summary", "write_accuracy_figure"]


def roi_summary(
    evaluation: dict[str, dict[str, np.ndarray]], rois: dict[str, dict[str, np.ndarray]]
) -> list[dict[str, float | str | int]]:
    """Mean r, mean noise-ceiling r (sqrt NC) and mean % explained variance of every ROI.

    Parameters
    ----------
    evaluation : dict
        ``{output: {"correlation", "noise_ceiling", "explained_variance"}}``.
    rois : dict
        ``{output: {roi: column indices}}``.

    Returns
    -------
    list of dict
        One entry per (output, ROI) with at least one column: ``output``, ``roi``, ``n``,
        ``r``, ``ceiling_r``, ``explained_variance``.
    """
    rows = []
    for output, table in rois.items():
        ev = evaluation[output]
        for roi, index in table.items():
            index = np.asarray(index, dtype=np.int64)
            if index.size == 0:
                continue
            rows.append(
                {
                    "output": output,
                    "roi": roi,
                    "n": int(index.size),
                    "r": float(np.mean(ev["correlation"][index])),
                    "ceiling_r": float(np.mean(np.sqrt(ev["noise_ceiling"][index]))),
                    "explained_variance": float(np.mean(ev["explained_variance"][index])),
                }
            )
    return rows


def write_accuracy_figure(
    evaluation: dict[str, dict[str, np.ndarray]],
    rois: dict[str, dict[str, np.ndarray]],
    path: Path,
    *,
    title: str,
    simulated: bool = False,
) -> Path:
    """Write a PNG with two panels per output: mean r per ROI (with the noise-ceiling r) and
    mean % of the noise ceiling explained per ROI.

    Parameters
    ----------
    evaluation, rois
        As for :func:`roi_summary`.
    path : Path
        The PNG file.
    title : str
        Figure title (``SIMULATED DATA`` is prepended for simulated data).
    simulated : bool
        Label the figure as simulated.

    Returns
    -------
    Path
        *path*.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    summary = roi_summary(evaluation, rois)
    outputs = [o for o in rois if any(row["output"] == o for row in summary)] or list(evaluation)
    width = max(
        8.0, 0.32 * max((sum(r["output"] == o for r in summary) for o in outputs), default=1)
    )
    fig, axes = plt.subplots(
        2, len(outputs), figsize=(width * len(outputs) / max(1, len(outputs)) + 2, 7), squeeze=False
    )
    for column, output in enumerate(outputs):
        rows = [row for row in summary if row["output"] == output]
        names = [str(row["roi"]) for row in rows]
        x = np.arange(len(rows))
        top, bottom = axes[0][column], axes[1][column]
        if not rows:  # no ROI definitions: whole-output distribution instead
            ev = evaluation[output]
            top.hist(ev["correlation"], bins=50, color="tab:blue")
            top.set_xlabel("test Pearson r")
            bottom.hist(ev["explained_variance"], bins=50, color="tab:green")
            bottom.set_xlabel("% of noise ceiling explained")
        else:
            top.bar(x, [row["r"] for row in rows], color="tab:blue", label="model r")
            top.scatter(
                x, [row["ceiling_r"] for row in rows], color="black", marker="_", s=120,
                label="noise ceiling (sqrt NC)", zorder=3,
            )  # fmt: skip
            top.set_ylabel("mean test Pearson r")
            top.set_xticks(x, names, rotation=90, fontsize=7)
            top.legend(fontsize=7, loc="lower right")
            bottom.bar(x, [row["explained_variance"] for row in rows], color="tab:green")
            bottom.set_ylabel("mean % of noise ceiling explained")
            bottom.set_ylim(0, 100)
            bottom.set_xticks(x, names, rotation=90, fontsize=7)
        top.set_title(output)
    label = "SIMULATED DATA - " if simulated else ""
    fig.suptitle(label + title, color="firebrick" if simulated else "black")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
