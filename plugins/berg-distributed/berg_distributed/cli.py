"""``berg encode --cluster``: what berg-core's command line hands over to this package."""

from __future__ import annotations

import argparse
from typing import Any

from berg_core.errors import InvalidParameterError

__all__ = ["encode_command"]


def encode_command(
    args: argparse.Namespace,
    berg: Any,
    subject: int | str | None,
    selection: dict[str, Any],
    options: dict[str, Any],
) -> int:
    """Run ``berg encode ... --cluster SPEC`` (arguments parsed by :mod:`berg_core.cli`).

    Raises
    ------
    InvalidParameterError
        A bad ``--cluster`` value (before anything starts), ``--reference-image`` (volume
        output only), or what :func:`berg_distributed.encode` refuses.
    ClusterError
        The scheduler did not answer in time.
    """
    from berg_distributed.cluster import connect, parse_cluster
    from berg_distributed.encode import DEFAULT_SHARD_SIZE, encode, parts_folder

    spec = parse_cluster(args.cluster)
    if args.reference_image is not None:
        raise InvalidParameterError(
            "--reference-image is for volume (NIfTI) output; --cluster writes HDF5"
        )
    shard_size = args.shard_size or DEFAULT_SHARD_SIZE
    with connect(spec, quiet=args.quiet) as client:
        report = encode(
            berg,
            args.model_id,
            subject,
            args.stimulus,
            out=args.out,
            client=client,
            selection=selection or None,
            device=args.device,
            shard_size=shard_size,
            force=args.force,
            show_progress=not args.quiet,
            assemble=args.assemble or "copy",
            **options,
        )
    print(
        f"wrote {report.out}: {report.shards} shards of <= {shard_size} images "
        f"({report.computed} encoded, {report.skipped} already done) on {args.cluster}"
    )
    if args.assemble == "virtual":
        print(
            f"{report.out} maps the parts in {parts_folder(report.out)}: move or copy the two "
            "together (without the folder the responses read as NaN)"
        )
    return 0
