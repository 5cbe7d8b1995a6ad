"""``berg insilico control``: univariate relational control from ``berg insilico rank`` scores.

``--areas A B`` gives the four conditions of two areas; ``--areas A B C ...`` the ``2^k`` sign
patterns of k areas (:func:`berg_insilico.relational.condition_signs`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from berg_insilico.cli_common import parse_subject

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``berg insilico control``."""
    parser.add_argument("--rank", required=True, help="rank.h5 written by berg insilico rank")
    parser.add_argument(
        "--areas", nargs="+", required=True, metavar="AREA", help="two or more ranked areas"
    )
    parser.add_argument("--train", nargs="+", type=parse_subject, required=True)
    parser.add_argument("--test", nargs="+", type=parse_subject, required=True)
    parser.add_argument("--n", type=int, default=25, help="images per condition")
    parser.add_argument("--random", type=int, default=1000, help="random image sets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="do not z-score scores per subject")
    parser.add_argument("--images", nargs="+", default=None, help="the ranked images, for grids")
    parser.add_argument("--dataset", default=None, help="HDF5 images dataset (NSD: imgBrick)")
    parser.add_argument("--out", required=True, help="output folder")


def read_scores(path: str | Path) -> dict:
    """``(area, subject) -> scores`` from a rank.h5 (subjects as in the file's attribute)."""
    import json

    import h5py
    import numpy as np

    from berg_core import InvalidParameterError

    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise InvalidParameterError(f"--rank {str(path)!r} is not readable: {exc}") from None
    with file:
        subjects = json.loads(file.attrs["subjects"]) if "subjects" in file.attrs else None
        if subjects is None:
            raise InvalidParameterError(f"--rank {str(path)!r} was not written by insilico rank")
        scores = {}
        for area in file:
            for subject in subjects:
                group = file[area].get(f"subject-{subject}")
                if group is not None and "scores" in group:
                    scores[(area, subject)] = np.asarray(group["scores"])
    return scores


def run(args: argparse.Namespace) -> int:
    """Control, then write control.csv, control.h5, grids and histograms."""
    from berg_core import InvalidParameterError
    from berg_insilico.cli_common import images_from
    from berg_insilico.figures import histogram, image_grid
    from berg_insilico.images import images_at, open_images
    from berg_insilico.relational import control
    from berg_insilico.tables import write_csv

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if len(args.areas) < 2:
        raise InvalidParameterError(f"--areas {' '.join(args.areas)}: give two or more areas")
    result = control(
        read_scores(args.rank),
        *args.areas,
        train=args.train,
        test=args.test,
        n=args.n,
        n_random=args.random,
        seed=args.seed,
        standardise=not args.raw,
    )
    write_csv(out / "control.csv", result.rows())
    result.to_hdf5(out / "control.h5")
    images = open_images(images_from(args), dataset=args.dataset) if args.images else None
    for name in result.conditions:
        observed = result.test_means[name]
        for j, area in enumerate(result.areas):
            histogram(
                result.null_means[:, j],
                {name: observed[j]},
                out / f"hist_{name}_{area}.png",
                f"held-out mean score of {area}",
                f"{name}: {area}, p = {result.p_values[name][j]:.3g}",
            )
        if images is not None:
            idx = result.indices[name]
            scores = result.train_scores[name]
            labels = [
                f"#{i}: " + " ".join(f"{a}={v:.2f}" for a, v in zip(result.areas, s, strict=True))
                for i, s in zip(idx, scores, strict=False)
            ]
            image_grid(images_at(images, idx), labels, out / f"grid_{name}.png", name)
    print(f"wrote {out}")
    return 0
