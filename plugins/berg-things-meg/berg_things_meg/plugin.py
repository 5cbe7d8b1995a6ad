"""The module the ``berg`` entry point names: card, selection schema, hooks (nothing heavy).

The reference toolkit's ``meg-things_meg_1-vit_b_32``: subjects 1-4 (files ``P1``..``P4``),
returning ``(N, 271, 281)`` float32: image, sensor, time. The loader is named by import path and
imported only when a model is requested (it imports torch).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from berg_core import Dim, EncodeOptions, FileSpec, ModelCard, Output, SelectionSchema, hookimpl
from berg_core.files import load_model_file
from berg_core.schemas import binary_mask, names_from

MODEL_ID = "meg-things_meg_1-vit_b_32"
#: Subjects with model files; subject ``s`` is the file token ``P{s}``.
SUBJECTS = (1, 2, 3, 4)
#: Sensors (CTF 275 system, 271 working) and time points (-0.1 to 1.3 s at 200 Hz).
N_SENSORS = 271
N_TIMES = 281
#: Features per image: the outputs of ViT-B/32's 12 encoder blocks, 12 x 50 x 768.
N_FEATURES = 12 * 50 * 768
REGIONS = ("Central", "Frontal", "Occipital", "Parietal", "Temporal")
SENSOR_PREFIXES = tuple("MLC MLF MLO MLP MLT MRC MRF MRO MRP MRT MZC MZF MZO MZP".split())
ROOT = "encoding_models/modality-meg/train_dataset-things_meg_1/model-vit_b_32"
#: The "all" model's weights (one scaler, PCA and regression trained on all 22,248 trials).
WEIGHTS_FILE = ROOT + "/encoding_models_weights/weights_P{subject}_all_training_splits.npy"
METADATA_FILE = ROOT + "/metadata/metadata_P{subject}.npy"

RESPONSES = Output(
    name="responses",
    dims=(
        Dim(
            name="sensor",
            size=N_SENSORS,
            description="MEG sensor (the subject's metadata['sensors']['sensor_names'])",
        ),
        Dim(
            name="time",
            size=N_TIMES,
            unit="s",
            description="Time from stimulus onset (the subject's metadata['meg']['times'])",
        ),
    ),
    description="Predicted MEG signal per sensor and time point",
)


class MEGOptions(EncodeOptions):
    """Keyword options of the THINGS MEG1 model."""

    train_splits: Literal["all", "single"] = Field(
        "all",
        description=(
            "'all': the model trained on all training trials. 'single' (four models trained on "
            "random quarters, 4 repetitions per image) is not available in berg yet."
        ),
    )

    @field_validator("train_splits")
    @classmethod
    def _single_is_not_available(cls, value: str) -> str:
        if value == "single":
            raise ValueError(
                "'single' is not available: the reference's code for the four single-split "
                "models (file names weights_P{s}_single_training_split_{1..4}.npy, how their "
                "predictions are stacked) was not published when berg's model was written; "
                "use 'all'"
            )
        return value


class MEGSelection(SelectionSchema):
    """The reference toolkit's selection keys of the THINGS MEG1 model.

    The sensors kept are the union of those in ``region``, those whose name starts with one of
    ``sensors`` (prefixes) and those of ``sensor_index`` (a 0/1 vector of length 271), in
    ascending sensor order without repeats (the reference's rule); ``timepoints`` is a 0/1
    vector of length 281. They slice the regression before encoding.
    """

    region: names_from(REGIONS, what="a MEG sensor region") | None = None
    sensors: names_from(SENSOR_PREFIXES, what="a MEG sensor prefix") | None = None
    sensor_index: binary_mask(N_SENSORS) | None = None
    timepoints: binary_mask(N_TIMES) | None = None


CARD = ModelCard(
    model_id=MODEL_ID,
    modality="MEG",
    training_dataset="THINGS MEG1",
    species="Human",
    model_type="Vision transformer (ViT-B/32, ImageNet)",
    creator="Domenic Bersch",
    description=(
        "ViT-B/32 encoder-block outputs (460,800 features) -> StandardScaler -> PCA (250 "
        "components) -> one linear regression predicting the MEG of 271 sensors x 281 time "
        "points (-0.1 to 1.3 s, 200 Hz). Input: integers 0-255, square images of at least 224 "
        "pixels."
    ),
    subjects=SUBJECTS,
    outputs=(RESPONSES,),
    output_description=(
        "(sensor, time); select with {'region': [...], 'sensors': [prefixes], 'sensor_index': "
        "mask, 'timepoints': mask} or pick along dims: {'sensor': ['MLO11'], 'time': {'min': 0, "
        "'max': 0.2}}"
    ),
    files=(FileSpec(path=WEIGHTS_FILE), FileSpec(path=METADATA_FILE)),
    options=MEGOptions,
    references={
        "THINGS-data": "https://doi.org/10.7554/eLife.82580",
        "BERG": "https://github.com/gifale95/BERG",
    },
)


def load_metadata(card: ModelCard, berg_dir: Path, subject: Any) -> dict[str, Any]:
    """The subject's metadata dict, as the reference returns it (read with the safe loader)."""
    data = load_model_file(berg_dir, METADATA_FILE.format(subject=subject), card.model_id, subject)
    return dict(data) if isinstance(data, dict) else data


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Declare the model."""
    register(CARD, "berg_things_meg.model:load")


@hookimpl
def register_selection_schemas(register: Callable[..., None]) -> None:
    """``region``, ``sensors``, ``sensor_index`` and ``timepoints``."""
    register(MODEL_ID, MEGSelection)


@hookimpl
def register_metadata_loaders(register: Callable[..., None]) -> None:
    """``get_model_metadata`` / ``berg metadata`` without loading the model."""
    register(MODEL_ID, load_metadata)


#: What ``berg check`` encodes (imported only then).
berg_check_fixture = "berg_things_meg.fixture:berg_check_fixture"
