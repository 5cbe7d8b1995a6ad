"""Arguments and actions of ``berg train nsd``, ``berg train things`` and ``berg demo``.

The ``configure_*`` functions only add argparse arguments (they run on every ``berg``
invocation); the ``run_*`` functions import the training engine.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from berg_core import InvalidParameterError

__all__ = [
    "configure_demo",
    "configure_nsd",
    "configure_things",
    "configure_things_eeg2",
    "run_demo",
    "run_nsd",
    "run_things",
    "run_things_eeg2",
]

_BACKBONES = "alexnet_untrained, alexnet, vit_b_32, or package.module:attribute"


def _alphas(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--alphas {text!r}: give numbers separated by commas"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("--alphas must be positive numbers")
    return values


def _common(parser: argparse.ArgumentParser, default_backbone: str) -> None:
    parser.add_argument("--subject", type=int, required=True, help="subject number")
    parser.add_argument(
        "--backbone",
        default=default_backbone,
        help=f"feature network ({_BACKBONES}); default {default_backbone}",
    )
    parser.add_argument(
        "--regression", choices=("ols", "ridge"), default="ols",
        help="ordinary least squares (the reference) or ridge with a per-column penalty chosen "
        "by cross-validation (default ols)",
    )  # fmt: skip
    parser.add_argument(
        "--alphas", type=_alphas, default=None, help="ridge penalties, comma-separated (1 to 1e12)"
    )
    parser.add_argument("--chunk-size", type=int, help="output columns per regression chunk")
    parser.add_argument("--model-name", help="model folder name (default: the backbone's)")
    _run_options(parser, "folder for resumable intermediate results (default: under berg_dir)")


def _run_options(parser: argparse.ArgumentParser, work_dir_help: str) -> None:
    """The options every ``berg train`` command shares (read back by :func:`_run_config`)."""
    parser.add_argument("--cv-folds", type=int, default=5, help="ridge cross-validation folds (5)")
    parser.add_argument("--n-components", type=int, default=250, help="PCA components (250)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=int, help="images per forward pass")
    parser.add_argument(
        "--memory-gb", type=float, default=2.0, help="working memory for blocks and chunks (2)"
    )
    parser.add_argument("--work-dir", type=Path, help=work_dir_help)
    parser.add_argument("--clean", action="store_true", help="delete the work folder after success")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--cluster",
        help="train on a Dask cluster (berg-distributed): local[:N], tcp://HOST:PORT or "
        "slurm[:CONFIG.yaml]; same files as without it (docs/scaling.md)",
    )


def _run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration fields :func:`_run_options` and ``--regression``/``--alphas`` give."""
    from berg_train.regression import DEFAULT_ALPHAS

    return {
        "regression": args.regression,
        "n_components": args.n_components,
        "alphas": args.alphas or DEFAULT_ALPHAS,
        "cv_folds": args.cv_folds,
        "device": args.device,
        "batch_size": args.batch_size,
        "memory_gb": args.memory_gb,
        "work_dir": args.work_dir,
        "keep_work": not args.clean,
        "show_progress": not args.quiet,
    }


def configure_nsd(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``berg train nsd``."""
    parser.description = (
        "Train the linear encoding model of one NSD subject on fsaverage (features -> scaler -> "
        "PCA -> regression per vertex), evaluate it on the 515 shared test images against the "
        "noise ceiling, and write weights, metadata and an accuracy figure under --berg-dir in "
        "the reference layout. Interrupted runs resume."
    )
    parser.add_argument("--nsd-root", type=Path, required=True, help="the NSD root folder")
    parser.add_argument("--sessions", type=int, help="use only the first N sessions")
    parser.add_argument("--label-dir", type=Path, help="folder of fsaverage ROI label files")
    _common(parser, "alexnet_untrained")


def configure_things(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``berg train things``."""
    parser.description = (
        "Train the linear encoding model of one THINGS-fMRI1 subject (single training trials), "
        "evaluate it on the repeat-averaged test images against the noise ceiling, and write "
        "weights, metadata and an accuracy figure under --berg-dir in the reference layout."
    )
    parser.add_argument(
        "--things-root", type=Path, required=True,
        help="folder with sub-0N_ResponseData.h5, _StimulusMetadata.csv, _VoxelMetadata.csv",
    )  # fmt: skip
    parser.add_argument("--images-dir", type=Path, help="THINGS images {concept}/{stimulus}")
    _common(parser, "vit_b_32")


def configure_things_eeg2(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``berg train things-eeg2``."""
    parser.description = (
        "Train a THINGS EEG2 encoding model of one subject from the reference's prepared data "
        "(eeg_sub-SS_split-{train,test}.h5, metadata_subject-N.npy) and the image set: one "
        "scaler, a PCA and a regression per training repetition; evaluate per channel x time on "
        "the repetition-averaged test EEG; write weights, metadata and a figure under --out in "
        "the reference layout, which berg-things-eeg2 loads. Interrupted runs resume."
    )
    parser.add_argument(
        "--data", type=Path, required=True,
        help="prepared data root (holding model_training_datasets/train_dataset-things_eeg_2) "
        "or that folder",
    )  # fmt: skip
    parser.add_argument(
        "--images", type=Path, required=True,
        help="THINGS EEG2 image_set folder (training_images, test_images)",
    )  # fmt: skip
    parser.add_argument("--subject", type=int, required=True, help="subject number (1..10)")
    parser.add_argument(
        "--model", choices=("vit_b_32", "alexnet", "alexnet_untrained"), default="vit_b_32",
        help="backbone and model folder (default vit_b_32)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="berg_dir to write the model to")
    parser.add_argument(
        "--pca", choices=("exact", "randomized"), default="exact",
        help="exact: one exact out-of-core PCA, stored per repetition (default); randomized: "
        "scikit-learn's PCA per repetition with the reference's seeds, in memory",
    )  # fmt: skip
    parser.add_argument(
        "--weights-format", choices=("B", "C"), default="B",
        help="B: per-repetition dicts (berg, reference loader f3e7819a; default); C: pickled "
        "scikit-learn PCA objects (the newest reference loader; needs scikit-learn)",
    )  # fmt: skip
    parser.add_argument(
        "--vit-transform", choices=("training", "inference"), default="training",
        help="vit_b_32 only: the reference's training transform (square crop + resize 224, "
        "default) or the weights' inference preset",
    )  # fmt: skip
    parser.add_argument(
        "--regression", choices=("ols", "ridge"), default="ols",
        help="ordinary least squares (the reference) or ridge (penalty per column by CV)",
    )  # fmt: skip
    parser.add_argument("--alpha", "--alphas", dest="alphas", type=_alphas, default=None,
                        help="ridge penalties, comma-separated (1 to 1e12)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="replace existing model files")
    _run_options(parser, "resumable work folder (default: under --out)")


def configure_demo(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``berg demo``."""
    parser.description = (
        "Offline tour of berg: write a small SIMULATED NSD subject with a known ground truth, "
        "train the untrained-AlexNet encoder on it with berg train, print its accuracy against "
        "the noise ceiling, encode sample images through get_encoding_model/encode and write "
        "the responses (HDF5, GIFTI) and the accuracy figure."
    )
    parser.add_argument(
        "--out", type=Path, default=Path("berg-demo"), help="output folder (default ./berg-demo)"
    )
    parser.add_argument(
        "--full", action="store_true", help="a larger simulation (more images, ridge as well)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _config(args: argparse.Namespace) -> Any:
    from berg_train.engine import TrainConfig

    return TrainConfig(
        backbone=args.backbone,
        chunk_size=args.chunk_size,
        model_name=args.model_name,
        **_run_config(args),
    )


def _berg_dir(args: argparse.Namespace) -> Path:
    from berg_core import BERG

    return BERG(args.berg_dir).berg_dir


def report(result: Any) -> None:
    """Print what a training run wrote and its accuracy."""
    for line in result.summary_lines():
        print(line)
    for label, path in (
        ("weights", result.weights_path),
        ("metadata", result.metadata_path),
        ("accuracy figure", result.figure_path),
    ):
        print(f"wrote {label}: {path}")
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(f"time: {steps}; work folder: {result.work_dir}")


@contextlib.contextmanager
def _runner(args: argparse.Namespace) -> Iterator[Any]:
    """``None`` (this process), or a cluster's runner for ``--cluster SPEC``.

    Raises
    ------
    InvalidParameterError
        A bad ``--cluster`` value, or berg-distributed not installed.
    """
    spec = getattr(args, "cluster", None)
    if spec is None:
        yield None
        return
    try:
        from berg_distributed.cluster import connect, parse_cluster
        from berg_distributed.training import DaskRunner
    except ImportError:
        raise InvalidParameterError(
            f"--cluster {spec}: distributed training needs berg-distributed "
            "(pip install berg-distributed)"
        ) from None
    with connect(parse_cluster(spec), quiet=args.quiet) as client:
        yield DaskRunner(client)


def _simulated_note(root: Any) -> None:
    print(f"NOTE: {root} is SIMULATED data (not real brain responses)")


def _train_fmri(args: argparse.Namespace, dataset: Any, root: Path, description: str) -> int:
    """Train *dataset* (read from *root*, described by *description*) and report."""
    from berg_train.engine import train

    if dataset.simulated:
        _simulated_note(root)
    print(description)
    with _runner(args) as runner:
        report(train(dataset, _berg_dir(args), _config(args), runner=runner))
    return 0


def run_nsd(args: argparse.Namespace) -> int:
    """``berg train nsd``."""
    from berg_train.datasets.nsd import NSDDataset

    dataset = NSDDataset(
        args.nsd_root, args.subject, sessions=args.sessions, label_dir=args.label_dir
    )
    return _train_fmri(
        args,
        dataset,
        args.nsd_root,
        f"NSD subject {dataset.subject}: {len(dataset.sessions)} sessions, "
        f"{dataset.trial_ids.size} trials; {dataset.train_ids.size} training, "
        f"{dataset.val_ids.size} validation, {dataset.test_ids.size} test images",
    )


def run_things(args: argparse.Namespace) -> int:
    """``berg train things``."""
    from berg_train.datasets.things import ThingsDataset

    dataset = ThingsDataset(args.things_root, args.subject, images_dir=args.images_dir)
    return _train_fmri(
        args,
        dataset,
        args.things_root,
        f"THINGS-fMRI1 subject {dataset.subject}: {dataset.train_trials.size} training trials "
        f"({dataset.n_fit} images), {dataset.test_trials.size} test trials "
        f"({dataset.test_rows.size} images)",
    )


def run_things_eeg2(args: argparse.Namespace) -> int:
    """``berg train things-eeg2``."""
    from berg_train.things_eeg2 import EEG2TrainConfig, train_things_eeg2

    config = EEG2TrainConfig(
        model=args.model,
        vit_transform=args.vit_transform,
        pca=args.pca,
        weights_format=args.weights_format,
        force=args.force,
        **_run_config(args),
    )
    with _runner(args) as runner:
        result = train_things_eeg2(
            args.data, args.images, args.subject, args.out, config, runner=runner
        )
    if result.simulated:
        _simulated_note(args.data)
    report(result)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """``berg demo``."""
    from berg_train.demo import run_demo as demo

    demo(args.out, full=args.full, device=args.device, show_progress=not args.quiet)
    return 0
