"""The module the ``berg`` entry point names: cards, selection schema, hooks (nothing heavy).

The three THINGS EEG2 models of the reference toolkit: ``eeg-things_eeg_2-vit_b_32``,
``eeg-things_eeg_2-alexnet`` and ``eeg-things_eeg_2-alexnet_untrained``, subjects 1-10, each
returning ``(N, 4, 63, 140)`` float32: image, repetition, channel, time. The loaders are named by
import path and imported only when a model is requested (they import torch).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from berg_core import Dim, EncodeOptions, FileSpec, ModelCard, Output, SelectionSchema, hookimpl
from berg_core.files import load_model_file
from berg_core.schemas import binary_mask, names_from
from berg_things_eeg2.layout import (
    CHANNELS,
    FOLDERS,
    N_REPETITIONS,
    N_TIMES,
    SUBJECTS,
    metadata_file,
    weights_file,
)

MODEL_TYPES = {
    "vit_b_32": "Vision transformer (ViT-B/32, ImageNet)",
    "alexnet": "AlexNet (ImageNet)",
    "alexnet_untrained": "AlexNet (untrained)",
}


RESPONSES = Output(
    name="responses",
    dims=(
        Dim(
            name="repetition",
            size=N_REPETITIONS,
            coords=tuple(range(1, N_REPETITIONS + 1)),
            description="Training repetition whose regression (and PCA) made the response",
        ),
        Dim(
            name="channel",
            size=len(CHANNELS),
            coords=tuple(CHANNELS),
            description="EEG channel (the subject's metadata['eeg']['ch_names'])",
        ),
        Dim(
            name="time",
            size=N_TIMES,
            unit="s",
            description="Time from stimulus onset (the subject's metadata['eeg']['times'])",
        ),
    ),
    description="Predicted EEG voltage (z-scored) per repetition, channel and time point",
)


class EEGOptions(EncodeOptions):
    """Keyword options of the THINGS EEG2 models (``berg encode -o channels_last=true``)."""

    channels_last: bool = Field(
        False, description="Run convolutions in channels-last memory format (faster on CPU)."
    )


class EEGSelection(SelectionSchema):
    """The reference toolkit's selection keys of the THINGS EEG2 models.

    ``channels``: channel names, in the order given, repeats kept (the reference's rule);
    ``timepoints``: a 0/1 vector of length 140. Both slice the regression before encoding.
    """

    channels: names_from(CHANNELS, what="a THINGS EEG2 channel") | None = None
    timepoints: binary_mask(N_TIMES) | None = None


def _card(model_id: str, folder: str) -> ModelCard:
    return ModelCard(
        model_id=model_id,
        modality="EEG",
        training_dataset="THINGS EEG2",
        species="Human",
        model_type=MODEL_TYPES[folder],
        creator="Alessandro Gifford",
        description=(
            "Backbone features -> StandardScaler -> PCA (250 components, one per repetition in "
            "newer files) -> one linear regression per repetition, predicting the EEG of 63 "
            "channels x 140 time points (-0.1 to 0.595 s, 200 Hz) for each of the 4 training "
            "repetitions. Input: integers 0-255, square images of at least 224 pixels."
        ),
        subjects=SUBJECTS,
        outputs=(RESPONSES,),
        output_description=(
            "(repetition, channel, time); select with {'channels': [...], 'timepoints': mask} or "
            "pick along dims: {'channel': ['Oz'], 'time': {'min': 0, 'max': 0.2}, "
            "'repetition': [1]}"
        ),
        files=(FileSpec(path=weights_file(folder)), FileSpec(path=metadata_file(folder))),
        options=EEGOptions,
        references={
            "THINGS EEG2": "https://doi.org/10.1016/j.neuroimage.2022.119754",
            "BERG": "https://github.com/gifale95/BERG",
        },
    )


CARDS = {model_id: _card(model_id, folder) for model_id, folder in FOLDERS.items()}


def load_metadata(card: ModelCard, berg_dir: Path, subject: Any) -> dict[str, Any]:
    """The subject's metadata dict, as the reference returns it (read with the safe loader)."""
    relative = metadata_file(FOLDERS[card.model_id]).format(subject=subject)
    data = load_model_file(berg_dir, relative, card.model_id, subject)
    return dict(data) if isinstance(data, dict) else data


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Declare the three models."""
    for card in CARDS.values():
        register(card, "berg_things_eeg2.model:load")


@hookimpl
def register_selection_schemas(register: Callable[..., None]) -> None:
    """``channels`` and ``timepoints`` for every model."""
    for model_id in CARDS:
        register(model_id, EEGSelection)


@hookimpl
def register_metadata_loaders(register: Callable[..., None]) -> None:
    """``get_model_metadata`` / ``berg metadata`` without loading a model."""
    for model_id in CARDS:
        register(model_id, load_metadata)


@hookimpl
def register_commands(register: Callable[..., None]) -> None:
    """``berg eeg-plot``: a channel's time course from a ``berg encode`` HDF5 file."""
    register(
        "eeg-plot",
        "plot a channel's time course (and a topography) from a THINGS EEG2 'berg encode' file",
        "berg_things_eeg2.plot:configure",
        "berg_things_eeg2.plot:run",
    )


#: What ``berg check`` encodes (imported only then).
berg_check_fixture = "berg_things_eeg2.fixture:berg_check_fixture"
