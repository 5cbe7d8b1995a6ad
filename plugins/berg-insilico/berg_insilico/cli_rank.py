"""``berg insilico rank``: stream images through encoders, keep each area's top/bottom images."""

from __future__ import annotations

import argparse
import contextlib
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
    parser.add_argument(
        "--cluster",
        default=None,
        metavar="SPEC",
        help="rank image shards on a Dask cluster: local[:N], tcp://HOST:PORT, slurm[:CONFIG] "
        '(pip install "berg-insilico[cluster]")',
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        default=None,
        help="images per cluster task, a multiple of --block-size (default 8 blocks)",
    )
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
    images = open_images(images_from(args), dataset=args.dataset)
    with contextlib.ExitStack() as stack:
        client = None
        if args.cluster is not None:
            from berg_insilico.ranking_cluster import require_cluster

            require_cluster("--cluster")
            from berg_distributed.cluster import connect, parse_cluster

            client = stack.enter_context(connect(parse_cluster(args.cluster), quiet=args.quiet))
        out.mkdir(parents=True, exist_ok=True)
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
            client=client,
            shard_size=args.shard_size,
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
