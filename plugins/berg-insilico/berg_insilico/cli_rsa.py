"""``berg insilico rsa``: RDMs of areas, RSA between them, multivariate relational control."""

from __future__ import annotations

import argparse
from pathlib import Path

from berg_insilico.cli_common import add_area_arguments, add_image_arguments, parse_subject

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``berg insilico rsa``."""
    add_area_arguments(parser)
    add_image_arguments(parser)
    parser.add_argument("--method", choices=("spearman", "pearson"), default="spearman")
    parser.add_argument(
        "--search",
        choices=("align", "disentangle"),
        default=None,
        help="genetic search for images that align/disentangle the first two areas' RDMs",
    )
    parser.add_argument("--n", type=int, default=50, help="images of the searched subset")
    parser.add_argument("--train", nargs="+", type=parse_subject, default=None)
    parser.add_argument("--test", nargs="+", type=parse_subject, default=None)
    parser.add_argument("--generations", type=int, default=50)
    parser.add_argument("--population", type=int, default=40)
    parser.add_argument("--random", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> int:
    """RDMs (rsa.h5, heat maps), the RSA of every pair (rsa.csv), optionally a search."""
    import itertools

    import numpy as np

    from berg_core import BERG, InvalidParameterError
    from berg_insilico.cli_common import areas_from, images_from
    from berg_insilico.figures import histogram, rdm_heatmap
    from berg_insilico.search import multivariate_control
    from berg_insilico.similarity import area_rdms, rsa
    from berg_insilico.tables import write_csv, write_hdf5

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    areas = areas_from(args)
    rdms = area_rdms(
        BERG(args.berg_dir),
        areas,
        images_from(args),
        subjects=args.subjects,
        block_size=args.block_size,
        dataset=args.dataset,
        device=args.device,
        show_progress=not args.quiet,
    )
    rows = [
        {
            "area_1": k1[0],
            "subject_1": k1[1],
            "area_2": k2[0],
            "subject_2": k2[1],
            "method": args.method,
            "rsa": rsa(rdms[k1], rdms[k2], args.method),
        }
        for k1, k2 in itertools.combinations(rdms, 2)
    ]
    write_csv(out / "rsa.csv", rows)
    write_hdf5(
        out / "rsa.h5",
        {f"{a}/subject-{s}": {"rdm": m} for (a, s), m in rdms.items()},
        {"method": args.method, "rdm": "1 - Pearson r"},
    )
    for (a, s), m in rdms.items():
        rdm_heatmap(m, out / f"rdm_{a}_subject-{s}.png", f"{a}, subject {s}")
    if args.search:
        if len(areas) < 2:
            raise InvalidParameterError("--search needs at least two --area")
        subjects = [k[1] for k in rdms if k[0] == areas[0]["name"]]
        train = args.train or subjects
        names = (areas[0]["name"], areas[1]["name"])

        def mean_rdm(name: str, chosen: list) -> np.ndarray:
            missing = [s for s in chosen if (name, s) not in rdms]
            if missing:
                raise InvalidParameterError(f"subjects {missing} are not in --subjects")
            return np.mean([rdms[(name, s)] for s in chosen], axis=0)

        validate = None
        if args.test:
            validate = (mean_rdm(names[0], args.test), mean_rdm(names[1], args.test))
        result = multivariate_control(
            mean_rdm(names[0], train),
            mean_rdm(names[1], train),
            args.n,
            objective=args.search,
            method=args.method,
            population=args.population,
            generations=args.generations,
            n_random=args.random,
            seed=args.seed,
            validate=validate,
        )
        result.to_hdf5(out / f"search_{args.search}.h5")
        histogram(
            result.random_rsa,
            {f"{args.search}ed": result.rsa},
            out / f"search_{args.search}.png",
            f"RSA ({args.method}) {names[0]} vs {names[1]}",
            f"{args.search}: p = {result.p_value:.3g}",
        )
    print(f"wrote {out}")
    return 0
