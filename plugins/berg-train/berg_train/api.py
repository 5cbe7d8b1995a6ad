"""One-call training of an NSD or THINGS-fMRI1 subject (what ``berg train ...`` runs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from berg_train.datasets.nsd import NSDDataset
from berg_train.datasets.things import ThingsDataset
from berg_train.engine import TrainConfig, TrainResult, train

#: Public to other plugins (``PUBLIC_MODULES``): the one-call trainers and the pieces they join.
__all__ = [
    "NSDDataset",
    "ThingsDataset",
    "TrainConfig",
    "TrainResult",
    "train",
    "train_nsd",
    "train_things",
]


def train_nsd(
    nsd_root: str | os.PathLike[str],
    subject: int,
    berg_dir: str | os.PathLike[str],
    *,
    sessions: int | None = None,
    label_dir: str | os.PathLike[str] | None = None,
    config: TrainConfig | None = None,
    **options: Any,
) -> TrainResult:
    """Train the encoding model of NSD subject *subject* (fsaverage) and write it to *berg_dir*.

    Parameters
    ----------
    nsd_root : path-like
        The NSD root folder (``nsddata``, ``nsddata_betas``, ``nsddata_stimuli``).
    subject : int
        1..8.
    berg_dir : path-like
        Output root; files go to
        ``encoding_models/modality-fmri/train_dataset-nsd_fsaverage/model-<backbone>/``.
    sessions : int, optional
        Use only the first *sessions* scan sessions (default: all found).
    label_dir : path-like, optional
        Folder of fsaverage ROI labels (default ``nsddata/freesurfer/fsaverage/label``).
    config : TrainConfig, optional
        Training options; *options* (``backbone="alexnet"``, ``regression="ridge"`` ...)
        override its fields.

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> result = train_nsd("/data/nsd", 1, "/data/berg", regression="ridge")  # doctest: +SKIP
    """
    dataset = NSDDataset(nsd_root, subject, sessions=sessions, label_dir=label_dir)
    return train(dataset, Path(berg_dir), _config(config, options))


def train_things(
    things_root: str | os.PathLike[str],
    subject: int,
    berg_dir: str | os.PathLike[str],
    *,
    images_dir: str | os.PathLike[str] | None = None,
    config: TrainConfig | None = None,
    **options: Any,
) -> TrainResult:
    """Train the encoding model of THINGS-fMRI1 subject *subject* and write it to *berg_dir*.

    Parameters
    ----------
    things_root : path-like
        Folder with ``sub-0N_ResponseData.h5``, ``sub-0N_StimulusMetadata.csv``,
        ``sub-0N_VoxelMetadata.csv`` (directly or in ``betas_csv/``).
    subject : int
        1..3.
    berg_dir : path-like
        Output root; files go to
        ``encoding_models/modality-fmri/train_dataset-things_fmri_1/model-<backbone>/``.
    images_dir : path-like, optional
        The THINGS images ``{concept}/{stimulus}`` (default ``things_root/images``).
    config : TrainConfig, optional
        Training options (the default backbone here is ``vit_b_32``, as the published model);
        *options* override its fields.

    Returns
    -------
    TrainResult
    """
    dataset = ThingsDataset(things_root, subject, images_dir=images_dir)
    return train(dataset, Path(berg_dir), _config(config, options))


def _config(config: TrainConfig | None, options: dict[str, Any]) -> TrainConfig:
    from dataclasses import fields, replace

    base = config or TrainConfig()
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        from berg_core import InvalidParameterError

        raise InvalidParameterError(
            f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return replace(base, **options)
