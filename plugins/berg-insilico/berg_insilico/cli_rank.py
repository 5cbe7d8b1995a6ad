"""``berg insilico rank``: stream images through encoders, keep each area's top/bottom images."""

from __future__ import annotations

import argparse
from pathlib import Path

from berg_insilico.cli_common import add_area_arguments, add_image_arguments

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``berg insilico rank``."""
    add_area_arguments(parser)
    add_image_arguments(parser)
    parser.add_argument("--k", type=int, default=10, help="top and bottom images kept")
    parser.add_argument("--per-column", action="store_true", help="also rank every column")
    parser.add_argument("--checkpoint", default=None, help="state file: saved, and resumed from")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="blocks between saves")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-grids", action="store_true", help="no PNG image grids")


def run(args: argparse.Namespace) -> int:
    """Rank, then write rank.h5, rank.csv and a top/bottom grid per area and subject."""
    from berg_core import BERG
    from berg_insilico.cli_common import areas_from, images_from
    from berg_insilico.figures import image_grid
    from berg_insilico.images import images_at, open_images
    from berg_insilico.ranking import rank
    from berg_insilico.tables import write_csv

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = open_images(images_from(args), dataset=args.dataset)
    result = rank(
        BERG(args.berg_dir),
        areas_from(args),
        images,
        subjects=args.subjects,
        k=args.k,
        per_column=args.per_column,
        block_size=args.block_size,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        show_progress=not args.quiet,
    )
    result.to_hdf5(out / "rank.h5")
    write_csv(out / "rank.csv", result.rows())
    if not args.no_grids and images.rereadable:
        for (area, subject), r in result.rankings.items():
            for which, top in (("top", r.top), ("bottom", r.bottom)):
                idx = top.indices[:, 0]
                labels = [f"#{i}: {v:.3g}" for i, v in zip(idx, top.values[:, 0], strict=False)]
                image_grid(
                    images_at(images, idx),
                    labels,
                    out / f"{which}_{area}_subject-{subject}.png",
                    f"{area}, subject {subject}: {which} {len(idx)}",
                )
    print(f"ranked {result.n_images} images; wrote {out}")
    return 0
