"""``berg eeg-plot``: a channel's time course (and a topography) from a ``berg encode`` HDF5 file.

The file holds ``responses`` ``(image, repetition, channel, time)`` with attribute ``dims`` and
``coords/responses/<dim>`` (channel names, times in seconds). The figure shows, for one image, the
channel's mean over repetitions (thick) with each repetition as a thin line, time in ms. With
``--time``, a second panel shows every channel at that time: a scalp map when the file has channel
positions (``coords/responses/channel_position``, dims ``["channel"]``), else a channels x time
heat map with the chosen time marked (the panel's title says which). matplotlib (Agg) and h5py
are imported only when the command runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from berg_core import InvalidParameterError

__all__ = ["EEGResponses", "configure", "make_figure", "read_responses", "run"]

#: The axes ``berg encode`` writes for the THINGS EEG2 models.
DIMS = ("image", "repetition", "channel", "time")


@dataclass(frozen=True)
class EEGResponses:
    """One image's responses from an HDF5 file.

    Attributes
    ----------
    values : ndarray
        ``(repetition, channel, time)`` float32.
    repetitions, channels, times : ndarray
        Coordinates (times in seconds).
    positions : ndarray or None
        ``(channel, 2 or 3)`` channel positions, when the file has them.
    """

    values: np.ndarray
    repetitions: np.ndarray
    channels: np.ndarray
    times: np.ndarray
    positions: np.ndarray | None


def read_responses(path: str | Path, image: int = 0) -> EEGResponses:
    """Read image *image* of a ``berg encode`` HDF5 file of a THINGS EEG2 model.

    Raises
    ------
    InvalidParameterError
        The file is missing or not an HDF5 file with ``responses`` of dims
        ``image, repetition, channel, time`` and their coordinates, or *image* is out of range.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(
            f"RESPONSES {str(path)!r} is not a file; expected an HDF5 file written by 'berg encode'"
        )
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InvalidParameterError(
            f"RESPONSES {str(path)!r} is not an HDF5 file ({exc}); expected one written by "
            "'berg encode'"
        ) from None
    with h5:
        data = h5.get("responses")
        dims = tuple(str(d) for d in data.attrs.get("dims", ())) if data is not None else ()
        if dims != DIMS:
            raise InvalidParameterError(
                f"RESPONSES {str(path)!r} has dataset 'responses' with dims {list(dims)}; "
                f"expected {list(DIMS)} (a THINGS EEG2 model's 'berg encode' output)"
            )
        n = data.shape[0]
        if not 0 <= image < n:
            raise InvalidParameterError(
                f"--image {image} is out of range; the file has {n} images (0..{n - 1})"
            )
        coords = {}
        for dim in DIMS[1:]:
            key = f"coords/responses/{dim}"
            if key not in h5:
                raise InvalidParameterError(
                    f"RESPONSES {str(path)!r} lacks {key!r}; expected "
                    "the coordinates 'berg encode' writes"
                )
            coords[dim] = h5[key][()]
        positions = None
        key = "coords/responses/channel_position"
        if key in h5 and [str(d) for d in h5[key].attrs.get("dims", ())] == ["channel"]:
            positions = np.asarray(h5[key][()], dtype=np.float64)
        values = np.asarray(data[image], dtype=np.float32)
    channels = np.array([c.decode() if isinstance(c, bytes) else str(c) for c in coords["channel"]])
    return EEGResponses(
        values, np.asarray(coords["repetition"]), channels, np.asarray(coords["time"]), positions
    )


def make_figure(responses: EEGResponses, channel: str, time: float | None = None) -> Any:
    """The figure: *channel*'s time course, and every channel at *time* (seconds) if given.

    Returns
    -------
    matplotlib.figure.Figure
        The first axes' lines are the repetitions (in order), then their mean.

    Raises
    ------
    InvalidParameterError
        *channel* is not in the file, or *time* is outside its time axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = responses.channels.tolist()
    if channel not in names:
        raise InvalidParameterError(
            f"--channel {channel!r} is not in the file; its channels: {', '.join(names)}"
        )
    index = names.index(channel)
    ms = responses.times * 1000.0
    trace = responses.values[:, index, :]
    panels = 1 if time is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.4 * panels, 4.0), dpi=100, squeeze=False)
    ax = axes[0, 0]
    for r, row in zip(responses.repetitions, trace, strict=True):
        ax.plot(ms, row, lw=0.8, alpha=0.5, label=f"repetition {r}")
    ax.plot(ms, trace.mean(axis=0), lw=2.2, color="black", label="mean of repetitions")
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(
        xlabel="time from stimulus onset (ms)",
        ylabel="predicted EEG (z-scored)",
        title=f"channel {channel}",
    )
    ax.legend(fontsize="small", frameon=False)
    if time is not None:
        _at_time(fig, axes[0, 1], responses, ms, time)
        ax.axvline(time * 1000.0, color="tab:red", lw=1.0)
    fig.tight_layout()
    return fig


def _at_time(fig: Any, ax: Any, responses: EEGResponses, ms: np.ndarray, time: float) -> None:
    """Every channel (mean over repetitions) at *time*: scalp map, or heat map if no positions."""
    lo, hi = float(responses.times.min()), float(responses.times.max())
    if not lo <= time <= hi:
        raise InvalidParameterError(f"--time {time} s is outside the file's times ({lo} to {hi} s)")
    mean = responses.values.mean(axis=0)  # (channel, time)
    t = int(np.argmin(np.abs(responses.times - time)))
    if responses.positions is not None:
        xy = responses.positions[:, :2]
        limit = float(np.abs(mean[:, t]).max()) or 1.0
        dots = ax.scatter(
            xy[:, 0], xy[:, 1], c=mean[:, t], cmap="RdBu_r", s=120, vmin=-limit, vmax=limit
        )
        for name, (x, y) in zip(responses.channels, xy, strict=True):
            ax.annotate(name, (x, y), fontsize=6, ha="center", va="center")
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"topography at {ms[t]:.0f} ms (mean of repetitions)")
        fig.colorbar(dots, ax=ax, label="predicted EEG")
        return
    limit = float(np.abs(mean).max()) or 1.0
    step = (ms[1] - ms[0]) / 2 if len(ms) > 1 else 0.5
    image = ax.imshow(
        mean,
        aspect="auto",
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        extent=(ms[0] - step, ms[-1] + step, len(mean) - 0.5, -0.5),
        interpolation="nearest",
    )
    ax.axvline(ms[t], color="black", lw=1.0)
    every = -(-len(mean) // 16)  # at most 16 readable channel labels
    ax.set_yticks(range(0, len(mean), every), responses.channels[::every], fontsize=7)
    ax.set_ylabel("channel")
    ax.set(
        xlabel="time from stimulus onset (ms)",
        title="no channel positions in the file: channels x time (mean of repetitions)",
    )
    ax.title.set_fontsize("small")
    fig.colorbar(image, ax=ax, label="predicted EEG")


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``berg eeg-plot``."""
    parser.description = (
        "Plot a channel's predicted time course (repetitions and their mean) from the HDF5 file "
        "'berg encode' writes for a THINGS EEG2 model; with --time, also every channel at that "
        "time."
    )
    parser.add_argument("responses", type=Path, metavar="RESPONSES", help="HDF5 file")
    parser.add_argument("--channel", required=True, help="channel name, e.g. Oz")
    parser.add_argument("--image", type=int, default=0, help="image row (default 0)")
    parser.add_argument("--time", type=float, help="also plot every channel at this time (s)")
    parser.add_argument("--out", type=Path, help="PNG to write (default: RESPONSES-CHANNEL.png)")


def run(args: argparse.Namespace) -> int:
    """Write the figure of ``berg eeg-plot`` and print its path."""
    import matplotlib.pyplot as plt

    responses = read_responses(args.responses, args.image)
    fig = make_figure(responses, args.channel, args.time)
    out = args.out or args.responses.with_name(f"{args.responses.stem}-{args.channel}.png")
    try:
        fig.savefig(out)
    except OSError as exc:
        raise InvalidParameterError(f"--out {str(out)!r} cannot be written: {exc}") from None
    finally:
        plt.close(fig)
    print(out)
    return 0
