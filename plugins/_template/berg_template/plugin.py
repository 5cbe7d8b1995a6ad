"""The module the ``berg`` entry point names: the model cards and the hooks, nothing heavy.

``berg list`` imports this module, so it imports berg-core and nothing else (no torch, no
numpy-heavy data): the models are named by import path (``"berg_template.readout:load"``) and
imported only when one is requested. ``berg check berg-template`` verifies all of this.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field

from berg_core import Dim, EncodeOptions, FileSpec, ModelCard, Output, hookimpl

#: Subjects the models have files for.
SUBJECTS = (1, 2)
#: EEG channel names and time bins (ms) of the readout model's output.
CHANNELS = ("O1", "Oz", "O2", "Pz")
TIMES_MS = tuple(range(-20, 100, 10))
#: Features per image of the readout model's base network (rows of its readout weights).
N_FEATURES = 16

READOUT_ID = "eeg-template-readout"
BRAINMODEL_ID = "fmri-template-brainmodel"
#: Files under berg_dir, per subject ({subject:02d} is filled in by card.files_for(subject)).
READOUT_FILE = (
    "encoding_models/modality-eeg/train_dataset-template/model-readout/"
    "weights_subject-{subject:02d}.npy"
)
BRAINMODEL_FILE = (
    "encoding_models/modality-fmri/train_dataset-template/model-brainmodel/"
    "weights_subject-{subject:02d}.npy"
)


class BrainModelOptions(EncodeOptions):
    """Keyword options of the brain model (``get_encoding_model(..., exponent=0.5)``,
    ``berg encode -o exponent=0.5``); ``batch_size`` comes with :class:`EncodeOptions`."""

    exponent: float = Field(
        1.0, gt=0, le=4, description="Output nonlinearity: sign(x) * |x| ** exponent."
    )


READOUT_CARD = ModelCard(
    model_id=READOUT_ID,
    modality="EEG",
    training_dataset="Template (random weights)",
    species="Human",
    model_type="Base network + linear readout",
    creator="Your name",
    description=(
        "Level 1, base network + readout: a small convolutional network gives 16 features per "
        "image; a linear readout stored per subject maps them to every channel and time bin."
    ),
    subjects=SUBJECTS,
    outputs=(
        Output(
            name="eeg",
            dims=(
                Dim(name="channel", size=len(CHANNELS), coords=CHANNELS, description="Electrode"),
                Dim(
                    name="time",
                    size=len(TIMES_MS),
                    unit="ms",
                    coords=TIMES_MS,
                    description="Time from stimulus onset",
                ),
            ),
            description="Voltage (a.u.) per channel and time bin",
        ),
    ),
    output_description="Channels x time bins (select with {'channel': [...], 'time': {...}}).",
    files=(FileSpec(path=READOUT_FILE),),
    references={"Your paper": "https://doi.org/..."},
)

BRAINMODEL_CARD = ModelCard(
    model_id=BRAINMODEL_ID,
    modality="fMRI",
    training_dataset="Template (random weights)",
    species="Human",
    model_type="Brain model (implements EncodingModel directly)",
    creator="Your name",
    description=(
        "Level 2, brain model: computes voxel responses itself, here a linear map of the mean "
        "red, green and blue intensity followed by a power nonlinearity."
    ),
    subjects=SUBJECTS,
    outputs=(Output(name="responses", dims=(Dim(name="voxel", description="Voxel index"),)),),
    output_description="One column per voxel (select with {'voxel': [...]}).",
    files=(BRAINMODEL_FILE,),
    options=BrainModelOptions,
)


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Declare the two models, their loaders named by import path."""
    register(READOUT_CARD, "berg_template.readout:load")
    register(BRAINMODEL_CARD, "berg_template.brainmodel:load")


#: What ``berg check`` encodes: it calls this (imported only then) with an empty folder.
berg_check_fixture = "berg_template.fixture:berg_check_fixture"
