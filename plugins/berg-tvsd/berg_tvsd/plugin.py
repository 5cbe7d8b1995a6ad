"""The module the ``berg`` entry point names: card, selection schema, hooks (nothing heavy).

The reference toolkit's ``utah_array-tvsd-vit_b_32``: monkeys ``"N"`` and ``"F"`` (files
``monkeyN``, ``monkeyF``), returning ``(N, 1024, 300)`` float32: image, electrode, time. The
loader is named by import path and imported only when a model is requested (it imports torch).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from berg_core import Dim, FileSpec, ModelCard, Output, SelectionSchema, hookimpl
from berg_core.files import load_model_file
from berg_core.schemas import binary_mask, names_from

MODEL_ID = "utah_array-tvsd-vit_b_32"
SUBJECTS = ("N", "F")
N_ELECTRODES = 1024
N_TIMES = 300
#: Features per image: the outputs of ViT-B/32's 12 encoder blocks, 12 x 50 x 768.
N_FEATURES = 12 * 50 * 768
ROIS = ("V1", "V4", "IT")
ROOT = "encoding_models/modality-utah_array/train_dataset-tvsd/model-vit_b_32"
WEIGHTS_FILE = ROOT + "/encoding_models_weights/weights_monkey{subject}.npy"
METADATA_FILE = ROOT + "/metadata/metadata_monkey{subject}.npy"
#: The name the reference's evaluation script writes the metadata under (``monkey`` twice).
METADATA_FILE_MISNAMED = ROOT + "/metadata/metadata_monkeymonkey{subject}.npy"

RESPONSES = Output(
    name="responses",
    dims=(
        Dim(
            name="electrode",
            size=N_ELECTRODES,
            coords=tuple(range(N_ELECTRODES)),
            description="Utah-array electrode (index into the monkey's 1024 channels)",
        ),
        Dim(
            name="time",
            size=N_TIMES,
            unit="s",
            description="Time from stimulus onset (the monkey's metadata['utah-array']['times'])",
        ),
    ),
    description="Predicted multi-unit activity per electrode and time point",
)


class TVSDSelection(SelectionSchema):
    """The reference toolkit's selection keys of the TVSD model.

    The electrodes kept are the union of those of the ``roi`` (V1, V4, IT, from the monkey's
    ``metadata['roi']``) and of ``electrodes`` (a 0/1 vector of length 1024), ascending without
    repeats (the reference's rule); ``timepoints`` is a 0/1 vector of length 300.
    """

    roi: names_from(ROIS, what="a TVSD region of interest") | None = None
    electrodes: binary_mask(N_ELECTRODES) | None = None
    timepoints: binary_mask(N_TIMES) | None = None


CARD = ModelCard(
    model_id=MODEL_ID,
    modality="Utah arrays",
    training_dataset="THINGS Ventral Stream Spiking Dataset (TVSD)",
    species="Macaque",
    model_type="Vision transformer (ViT-B/32, ImageNet)",
    creator="Domenic Bersch",
    description=(
        "ViT-B/32 encoder-block outputs (460,800 features) -> StandardScaler -> PCA (250 "
        "components) -> one linear regression predicting the multi-unit activity of 1024 "
        "electrodes (V1, V4, IT) x 300 time points (-0.1 to 0.199 s, 1 kHz). Input: integers "
        "0-255, square images of at least 224 pixels."
    ),
    subjects=SUBJECTS,
    outputs=(RESPONSES,),
    output_description=(
        "(electrode, time); select with {'roi': ['V4'], 'electrodes': mask, 'timepoints': "
        "mask} or pick along dims: {'electrode': [0, 5], 'time': {'min': 0, 'max': 0.1}}"
    ),
    files=(FileSpec(path=WEIGHTS_FILE), FileSpec(path=METADATA_FILE)),
    references={
        "TVSD": "https://doi.org/10.1016/j.neuron.2024.12.003",
        "BERG": "https://github.com/gifale95/BERG",
    },
)


def metadata_relative(berg_dir: Path, subject: Any) -> str:
    """The metadata file to read: ``metadata_monkey{S}.npy``, else the misnamed one if present.

    The reference's evaluation script saves ``metadata_monkeymonkey{S}.npy`` while its model reads
    ``metadata_monkey{S}.npy``; berg reads the second and falls back to the first.
    """
    relative = METADATA_FILE.format(subject=subject)
    misnamed = METADATA_FILE_MISNAMED.format(subject=subject)
    if not (Path(berg_dir) / relative).exists() and (Path(berg_dir) / misnamed).exists():
        return misnamed
    return relative


def load_metadata(card: ModelCard, berg_dir: Path, subject: Any) -> dict[str, Any]:
    """The monkey's metadata dict, as the reference returns it (read with the safe loader)."""
    relative = metadata_relative(berg_dir, subject)
    data = load_model_file(berg_dir, relative, card.model_id, subject)
    return dict(data) if isinstance(data, dict) else data


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Declare the model."""
    register(CARD, "berg_tvsd.model:load")


@hookimpl
def register_selection_schemas(register: Callable[..., None]) -> None:
    """``roi``, ``electrodes`` and ``timepoints``."""
    register(MODEL_ID, TVSDSelection)


@hookimpl
def register_metadata_loaders(register: Callable[..., None]) -> None:
    """``get_model_metadata`` / ``berg metadata`` without loading the model."""
    register(MODEL_ID, load_metadata)


#: What ``berg check`` encodes (imported only then).
berg_check_fixture = "berg_tvsd.fixture:berg_check_fixture"
