"""``berg insilico synthesise``: optimise images to drive or suppress areas (gradient synthesis)."""

from __future__ import annotations

import argparse

from berg_insilico.cli_common import add_area_arguments

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``berg insilico synthesise``."""
    add_area_arguments(parser)
    parser.add_argument(
        "--weights", nargs="+", type=float, default=None,
        help="one weight per --area in the objective (a contrast: 1 -1); default all 1",
    )  # fmt: skip
    parser.add_argument("--direction", choices=("drive", "suppress"), default="drive")
    parser.add_argument("--n-images", type=int, default=1)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument(
        "--start", nargs="+", default=None, help="natural images to start from (default: noise)"
    )
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--parameterisation", choices=("fourier", "pixel"), default="fourier")
    parser.add_argument("--jitter", type=int, default=0)
    parser.add_argument("--blur", type=float, default=0.0)
    parser.add_argument("--tv", type=float, default=0.0)
    parser.add_argument("--l2", type=float, default=0.0)
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _start_images(paths: list[str], size: int) -> object:
    """The start image files as ``(N, 3, size, size)`` uint8 (resized, RGB)."""
    import numpy as np
    from PIL import Image

    from berg_core import InvalidParameterError

    images = np.empty((len(paths), 3, size, size), np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        except OSError as exc:
            raise InvalidParameterError(f"--start {path!r}: not a readable image ({exc})") from None
        images[i] = np.asarray(rgb).transpose(2, 0, 1)
    return images


def run(args: argparse.Namespace) -> int:
    """Synthesise, then write PNGs, grid.png, synthesis.h5 and objective.csv into --out."""
    from berg_core import BERG, InvalidParameterError
    from berg_insilico.areas import as_areas
    from berg_insilico.cli_common import areas_from
    from berg_insilico.synthesis import synthesise

    subjects = args.subjects or [None]
    if len(subjects) != 1:
        raise InvalidParameterError(f"--subjects {subjects}: synthesis takes one subject")
    result = synthesise(
        list(as_areas(areas_from(args))),
        berg=BERG(args.berg_dir),
        subject=subjects[0],
        weights=args.weights,
        direction=args.direction,
        n_images=args.n_images,
        size=args.size,
        start="noise" if args.start is None else _start_images(args.start, args.size),
        steps=args.steps,
        lr=args.lr,
        parameterisation=args.parameterisation,
        jitter=args.jitter,
        blur=args.blur,
        tv=args.tv,
        l2=args.l2,
        every=args.every,
        seed=args.seed,
        device=args.device,
        show_progress=not args.quiet,
    )
    for path in result.save(args.out):
        print(path)
    return 0
