"""Where FactorTopy checkpoints live and what they hold, and the subject metadata (no torch here).

A checkpoint is a folder::

    config.json          format, model id, subject, layers and their widths, vertex counts, and
                         the training settings (backbone, bottleneck, selector sizes, ...)
    model.pt             the encoder's weights (the epoch with the best validation R²): a dict of
                         tensors, read with torch.load(weights_only=True)
    accuracy.npz         lh_vertices, rh_vertices (fsaverage indices of the trained vertices) and
                         lh_r2_val, rh_r2_val (their validation R²); plain arrays, no pickle
    training_state.pt    the latest epoch's weights, optimizer and shuffling state (for --resume)
    metrics.json         one entry per epoch: training loss, validation R², regulariser weight

berg finds a subject's checkpoint either where ``get_encoding_model(..., checkpoint=DIR)`` says,
or in ``berg_dir`` at::

    encoding_models/modality-fmri/train_dataset-nsd_fsaverage/model-factortopy/checkpoints/subject-SS/

(:func:`berg_dir_checkpoint`), which is also how ``berg encode`` and ``get_model_metadata`` find it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from berg_nsd.cards import CARDS as NSD_CARDS
from berg_nsd.fsaverage import N_VERTICES, model_dir

from berg_core import InvalidParameterError, ModelCard, ModelLoadError

__all__ = [
    "ACCURACY_FILE",
    "CONFIG_FILE",
    "FORMAT",
    "METRICS_FILE",
    "MODEL_ID",
    "NSD_METADATA_CARD",
    "PREPROCESSING",
    "STATE_FILE",
    "WEIGHTS_FILE",
    "berg_dir_checkpoint",
    "checkpoint_folder",
    "load_metadata",
    "preprocessing_of",
    "read_accuracy",
    "read_config",
    "subject_metadata",
]

MODEL_ID = "fmri-nsd_fsaverage-factortopy"
#: Version tag written into every ``config.json``.
FORMAT = "berg-factortopy/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"
ACCURACY_FILE = "accuracy.npz"
STATE_FILE = "training_state.pt"
METRICS_FILE = "metrics.json"
#: ``config.json``'s ``preprocessing``: ``whole-image`` (the image resized to the backbone's
#: input size, so that the selectors' locations span the whole image) or ``centre-crop`` (the
#: backbone's own transform as is; checkpoints without the key, from berg-factortopy < 0.2).
PREPROCESSING = ("whole-image", "centre-crop")
#: The NSD model whose per-subject metadata file (ROIs, noise ceilings) FactorTopy reads: the
#: ``fmri`` part of the metadata is the same for every NSD fsaverage model.
NSD_METADATA_CARD: ModelCard = NSD_CARDS["fmri-nsd_fsaverage-alexnet_untrained"]


#: Keys every ``config.json`` has.
_CONFIG_KEYS = (
    "model_id",
    "subject",
    "layers",
    "local_channels",
    "global_channels",
    "n_lh",
    "n_rh",
    "train",
)


def berg_dir_checkpoint(berg_dir: str | os.PathLike[str], subject: int) -> Path:
    """The checkpoint folder of *subject* in the documented ``berg_dir`` layout."""
    return Path(berg_dir) / model_dir("factortopy") / "checkpoints" / f"subject-{subject:02d}"


def checkpoint_folder(
    berg_dir: str | os.PathLike[str], subject: int, checkpoint: str | os.PathLike[str] | None
) -> Path:
    """The folder to load: *checkpoint* if given, else the ``berg_dir`` layout's.

    Raises
    ------
    InvalidParameterError
        *checkpoint* is given but is not a folder with a ``config.json``.
    ModelLoadError
        No checkpoint was given and the ``berg_dir`` layout has none for *subject*.
    """
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise InvalidParameterError(
                f"checkpoint = {checkpoint!r} must be the path of a checkpoint folder"
            )
        folder = Path(checkpoint)
        if not (folder / CONFIG_FILE).is_file():
            raise InvalidParameterError(
                f"checkpoint = {str(folder)!r} is not a FactorTopy checkpoint folder (no "
                f"{CONFIG_FILE}); give the folder `berg train factortopy --out` wrote"
            )
        return folder
    folder = berg_dir_checkpoint(berg_dir, subject)
    if not (folder / CONFIG_FILE).is_file():
        raise ModelLoadError(
            f"no FactorTopy checkpoint for subject {subject}: expected {folder / CONFIG_FILE} "
            f"under berg_dir {berg_dir}. FactorTopy encoders are trained by you, not downloaded: "
            f"train one with `berg train factortopy ... --out {folder}`, or pass "
            f"checkpoint=DIR to get_encoding_model"
        )
    return folder


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a checkpoint's ``config.json``.

    Raises
    ------
    ModelLoadError
        Missing, unreadable, of another format, or lacking a required key.
    """
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing: not a FactorTopy checkpoint folder") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ModelLoadError(f"{path} is not a {FORMAT} checkpoint config (format: {found!r})")
    missing = [key for key in _CONFIG_KEYS if key not in config]
    if missing:
        raise ModelLoadError(f"{path} lacks key(s) {', '.join(missing)}")
    return config


def read_accuracy(folder: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The trained vertices and their validation R² (``accuracy.npz``; no pickle allowed).

    Raises
    ------
    ModelLoadError
        Missing or malformed file.
    """
    path = Path(folder) / ACCURACY_FILE
    keys = ("lh_vertices", "rh_vertices", "lh_r2_val", "rh_r2_val")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in keys}
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing from the checkpoint") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{path} is not a FactorTopy accuracy file ({exc})") from None
    for hemi in ("lh", "rh"):
        vertices = data[f"{hemi}_vertices"]
        if vertices.ndim != 1 or data[f"{hemi}_r2_val"].shape != vertices.shape:
            raise ModelLoadError(f"{path}: {hemi} arrays do not match in shape")
    return data


def _full(values: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    full = np.full(N_VERTICES, np.nan, dtype=np.float32)
    full[vertices] = values
    return full


def subject_metadata(
    berg_dir: str | os.PathLike[str], subject: int, folder: Path | None, *, require_nsd: bool
) -> dict[str, Any]:
    """A subject's metadata: NSD's ``fmri`` entry and the checkpoint's accuracy.

    Parameters
    ----------
    berg_dir : path-like
    subject : int
    folder : Path or None
        Checkpoint folder whose ``accuracy.npz`` fills ``encoding_models``.
    require_nsd : bool
        Raise when the NSD metadata file is missing (else ``fmri`` is ``{}``).

    Returns
    -------
    dict
        ``{"fmri": {...}, "encoding_models": {"lh_r2_val", "rh_r2_val": (163842,) float32, NaN
        at untrained vertices; "lh_vertices", "rh_vertices": trained vertices}}``
    """
    from berg_nsd.fsaverage import load_metadata as nsd_metadata

    try:
        fmri = nsd_metadata(NSD_METADATA_CARD, Path(berg_dir), subject)["fmri"]
    except ModelLoadError:
        if require_nsd:
            raise
        fmri = {}
    encoding: dict[str, Any] = {}
    if folder is not None and (folder / ACCURACY_FILE).is_file():
        accuracy = read_accuracy(folder)
        for hemi in ("lh", "rh"):
            vertices = accuracy[f"{hemi}_vertices"]
            encoding[f"{hemi}_vertices"] = vertices
            encoding[f"{hemi}_r2_val"] = _full(accuracy[f"{hemi}_r2_val"], vertices)
    return {"fmri": fmri, "encoding_models": encoding}


def load_metadata(card: ModelCard, berg_dir: Path, subject: int) -> dict[str, Any]:
    """Metadata loader of ``fmri-nsd_fsaverage-factortopy`` (for ``get_model_metadata``).

    ``fmri`` comes from the subject's NSD metadata file (the one ``berg fetch`` downloads for
    this model); ``encoding_models`` holds the validation R² of the subject's checkpoint in the
    ``berg_dir`` layout, or is empty when there is none.

    Raises
    ------
    ModelLoadError
        The NSD metadata file is missing (the message says how to get it) or unsafe.
    """
    folder = berg_dir_checkpoint(berg_dir, subject)
    return subject_metadata(berg_dir, subject, folder, require_nsd=True)


def preprocessing_of(config: dict[str, Any]) -> str:
    """The preprocessing a checkpoint's ``config.json`` was trained with (:data:`PREPROCESSING`).

    Raises
    ------
    ModelLoadError
        An unknown value.
    """
    value = config.get("preprocessing", "centre-crop")
    if value not in PREPROCESSING:
        raise ModelLoadError(
            f"config.json: preprocessing = {value!r} is not one of {', '.join(PREPROCESSING)}"
        )
    return str(value)
