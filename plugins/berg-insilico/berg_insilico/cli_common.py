"""Arguments shared by the ``berg insilico`` subcommands (argparse only, nothing heavy)."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_area_arguments", "add_image_arguments", "areas_from", "parse_subject"]


def parse_subject(text: str) -> Any:
    """A subject as given: an int when it is one, else the string."""
    try:
        return int(text)
    except ValueError:
        return text


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def add_area_arguments(parser: argparse.ArgumentParser) -> None:
    """``--area NAME MODEL_ID [KEY=VALUE ...]`` (repeatable), ``--subjects``, ``-o``."""
    parser.add_argument(
        "--area",
        nargs="+",
        action="append",
        required=True,
        metavar="NAME MODEL_ID [KEY=VALUE]",
        help="an area: a name, a model id and its selection as KEY=VALUE (JSON values), "
        "e.g. --area V1 fmri-nsd_fsaverage-alexnet roi=V1v; repeat for more areas",
    )
    parser.add_argument("--subjects", nargs="+", type=parse_subject, default=None)
    parser.add_argument(
        "-o",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a typed model option for every area (batch_size=16)",
    )
    parser.add_argument("--device", default="auto")


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """``--images`` (folder, file list, .h5/.hdf5 or .npy), ``--dataset``, ``--block-size``."""
    parser.add_argument(
        "--images",
        nargs="+",
        required=True,
        help="a folder, image files, an HDF5 file (with --dataset) or a .npy array",
    )
    parser.add_argument("--dataset", default=None, help="HDF5 images dataset (NSD: imgBrick)")
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _pairs(items: list[str], what: str) -> dict[str, Any]:
    from berg_core import InvalidParameterError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidParameterError(f"{what} {item!r}: expected KEY=VALUE")
        out[key] = _value(value)
    return out


def areas_from(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The areas of ``--area`` as dicts for :func:`berg_insilico.areas.as_areas`."""
    from berg_core import InvalidParameterError

    options = _pairs(args.options, "-o")
    areas = []
    for spec in args.area:
        if len(spec) < 2:
            raise InvalidParameterError(
                f"--area {' '.join(spec)!r}: give a name and a model id, then KEY=VALUE pairs"
            )
        selection = _pairs(spec[2:], f"--area {spec[0]}")
        areas.append(
            {
                "name": spec[0],
                "model_id": spec[1],
                "selection": selection or None,
                "options": options,
            }
        )
    return areas


def images_from(args: argparse.Namespace) -> Any:
    """What ``--images`` names: one path, a list of files, or a ``.npy`` array (memory-mapped)."""
    if len(args.images) == 1:
        path = args.images[0]
        if path.endswith(".npy"):
            import numpy as np

            return np.load(path, mmap_mode="r", allow_pickle=False)
        return path
    return args.images
