"""The commands ``berg train factortopy`` and ``berg maps`` (registered by :mod:`.plugin`).

``configure_*`` run whenever the ``berg`` command line is parsed, so this module imports only
argparse helpers and the torch-free settings; ``run_*`` import the heavy modules.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any

from berg_core import InvalidParameterError
from berg_factortopy.config import CACHE_MODES, RUNTIME_FIELDS, TrainConfig
from berg_factortopy.threads import check_threads

__all__ = ["configure_maps", "configure_train", "run_maps", "run_train"]

_HELP = {
    "backbone": "built-in backbone (vit_b_16, vit_b_32, alexnet, alexnet_untrained) or import "
    "path package.module:factory of one with get_tokens(x)",
    "backbone_kwargs": "JSON object of keyword arguments for the backbone builder",
    "bottleneck": "common width of every layer after the channel bottleneck",
    "hidden": "width of the selector MLPs",
    "n_frequencies": "octaves of the selectors' Fourier features of sphere coordinates",
    "epochs": "passes over the training images (when resuming: the new total)",
    "batch_size": "images per optimisation step",
    "lr": "AdamW learning rate",
    "weight_decay": "AdamW weight decay",
    "reg_weight": "initial weight of the selector entropy regulariser",
    "reg_decay_steps": "steps over which the regulariser weight decays to zero",
    "val_fraction": "fraction of images held out for validation",
    "seed": "seed of the split, the initial weights and the image order",
    "cache": "token cache: auto (RAM if it fits, else HDF5 on disk), ram, disk, none",
    "cache_dtype": "float16 or float32 cached tokens",
    "cache_path": "HDF5 token cache file (default: token_cache.h5 in --out)",
    "cache_ram_gb": "RAM the auto cache may use (default: half the available memory)",
    "stats_images": "training images used to estimate channel means and deviations",
    "device": "auto, cpu, cuda, cuda:N or mps",
    "threads": "torch threads while training (default: torch's own choice); on busy shared "
    "cores 1 thread can be several times faster than 2",
}


def configure_train(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``berg train factortopy``."""
    parser.description = (
        "Train a FactorTopy encoder (fmri-nsd_fsaverage-factortopy) on one subject of the "
        "Algonauts 2023 data set, for a frozen image backbone."
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="the subject's Algonauts 2023 folder (with training_split/ and roi_masks/)",
    )
    parser.add_argument(
        "--subject", type=int, help="NSD subject 1..8 (default: from the folder name, subjNN)"
    )
    parser.add_argument(
        "--sphere-dir",
        type=Path,
        help="folder with FreeSurfer's fsaverage lh.sphere and rh.sphere (default: "
        "$SUBJECTS_DIR/fsaverage/surf or $FREESURFER_HOME/subjects/fsaverage/surf)",
    )
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (only --epochs, --device, --threads and --cache* may "
        "change)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    for spec in fields(TrainConfig):
        default = spec.default if spec.default is not MISSING else spec.default_factory()  # type: ignore[misc]
        option = "--" + spec.name.replace("_", "-")
        help_text = f"{_HELP[spec.name]} (default: {json.dumps(default)})"
        if spec.name == "backbone_kwargs":
            parser.add_argument(option, type=_json_object, default=None, help=help_text)
        elif spec.name == "cache":
            parser.add_argument(option, choices=CACHE_MODES, default=None, help=help_text)
        elif spec.name == "cache_dtype":
            parser.add_argument(
                option, choices=("float16", "float32"), default=None, help=help_text
            )
        else:
            kind = {"cache_path": str, "cache_ram_gb": float, "threads": int}.get(
                spec.name, type(default)
            )
            parser.add_argument(option, type=kind, default=None, help=help_text)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _sphere_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    for variable, relative in (
        ("SUBJECTS_DIR", "fsaverage/surf"),
        ("FREESURFER_HOME", "subjects/fsaverage/surf"),
    ):
        root = os.environ.get(variable)
        if root and (Path(root) / relative / "lh.sphere").is_file():
            return Path(root) / relative
    raise InvalidParameterError(
        "give --sphere-dir, the folder with FreeSurfer's fsaverage lh.sphere and rh.sphere "
        "(found neither $SUBJECTS_DIR/fsaverage/surf nor $FREESURFER_HOME/subjects/fsaverage/surf)"
    )


def run_train(args: argparse.Namespace) -> int:
    """Run ``berg train factortopy``."""
    from berg_factortopy.data import TrainingData
    from berg_factortopy.layout import read_config
    from berg_factortopy.train import train

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    given = {name: value for name, value in given.items() if value is not None}
    if args.resume:
        fixed = sorted(set(given) - set(RUNTIME_FIELDS))
        if fixed:
            options = ", ".join("--" + name.replace("_", "-") for name in fixed)
            raise InvalidParameterError(
                f"{options} cannot change when resuming; only --epochs, --device, --threads and "
                f"--cache* can"
            )
        if not (args.out / "config.json").is_file():
            raise InvalidParameterError(f"nothing to resume in {args.out}")
        config = replace(TrainConfig.from_dict(read_config(args.out)["train"]), **given)
    else:
        config = TrainConfig(**given)
    data = TrainingData.from_algonauts(args.data, subject=args.subject)
    result = train(
        data,
        _sphere_dir(args.sphere_dir),
        args.out,
        config,
        resume=args.resume,
        show_progress=not args.quiet,
    )
    print(
        f"trained fmri-nsd_fsaverage-factortopy for subject {data.subject} into {result.folder}: "
        f"best epoch {result.best_epoch}, mean validation R² {result.val_r2_mean:.4f} over "
        f"{data.n_vertices} vertices"
    )
    return 0


def configure_maps(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``berg maps``."""
    parser.description = (
        "Brain maps of a trained FactorTopy encoder: for every vertex, the layer it reads "
        "(argmax and expected index), the scale and the sampling location, and its validation "
        "R², as fsaverage GIFTI files and PNG figures (lateral, medial, ventral views)."
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder (berg train --out)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the maps")
    parser.add_argument("--no-figures", action="store_true", help="write GIFTI files only")
    parser.add_argument("--force", action="store_true", help="overwrite existing map files")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads while computing the maps (default: torch's own choice)",
    )


def run_maps(args: argparse.Namespace) -> int:
    """Run ``berg maps``."""
    from berg_factortopy.maps import write_maps
    from berg_factortopy.threads import torch_threads

    check_threads(args.threads, "--threads")
    with torch_threads(args.threads):
        written = write_maps(
            args.checkpoint, args.out, figures=not args.no_figures, force=args.force
        )
    print(f"wrote {len(written)} files to {args.out}")
    return 0
