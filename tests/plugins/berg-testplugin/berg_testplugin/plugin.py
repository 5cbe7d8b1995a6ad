"""The module the ``berg`` entry point names: registration only, through all four hooks.

Imports berg-core, pydantic (for the options model) and this package's light
:mod:`berg_testplugin.layout`, nothing else: loaders, the selection schemas, the metadata loaders
and the family lister are named by import path and imported by berg only when used.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field, PositiveFloat

from berg_core import Dim, EncodeOptions, ModelCard, Output, hookimpl
from berg_testplugin.layout import (
    HEMISPHERES,
    LINEAR_ID,
    METADATA_FILE,
    SUBJECTS,
    TIMECOURSE_ID,
    TIMECOURSE_METADATA_FILE,
    TIMECOURSE_REPETITIONS,
    TIMES_MS,
    WEIGHTS_FILE,
)

FAMILY_ID = "toy_family"
FAMILY_PREFIX = "toy_family-"

LINEAR_CARD = ModelCard(
    model_id=LINEAR_ID,
    modality="toy",
    training_dataset="Synthetic",
    species="None (synthetic)",
    model_type="Linear map of mean RGB intensity",
    creator="The berg developers",
    description=(
        "A test model: each output vertex is a linear function of the image's mean red, green "
        "and blue intensities (scaled to [0, 1]), with per-subject random weights."
    ),
    subjects=SUBJECTS,
    outputs=HEMISPHERES,
    output_description="One column per selected vertex of each hemisphere.",
    files=(WEIGHTS_FILE, METADATA_FILE),
    options=EncodeOptions,
    references={"berg-core tests": "tests/plugins/berg-testplugin"},
    performance="Not applicable (synthetic).",
)


class TimecourseOptions(EncodeOptions):
    """Options of ``toy-synthetic-timecourse`` (``berg encode -o gain=2``)."""

    gain: PositiveFloat = Field(1.0, description="Multiplies every response.")


TIMECOURSE_CARD = ModelCard(
    model_id=TIMECOURSE_ID,
    modality="toy",
    training_dataset="Synthetic",
    species="None (synthetic)",
    model_type="Time courses of mean RGB intensity",
    creator="The berg developers",
    description=(
        "A time-resolved test model (an EEG stand-in): channel c of repetition r at time t is "
        "gain * (r + 1) * (mean intensity of colour c) * (1 + t / 100 ms) + subject / 10."
    ),
    subjects=SUBJECTS,
    outputs=(
        Output(
            name="responses",
            dims=(
                Dim(
                    name="repetition",
                    size=TIMECOURSE_REPETITIONS,
                    description="Repetition of the trial",
                ),
                Dim(name="channel", size=3, description="EEG channel (names: subject metadata)"),
                Dim(
                    name="time",
                    size=len(TIMES_MS),
                    unit="ms",
                    description="Time from image onset",
                    coords=TIMES_MS,
                ),
            ),
            description="Simulated EEG responses.",
        ),
    ),
    output_description="(repetition, channel, time) responses of every image.",
    files=(TIMECOURSE_METADATA_FILE,),
    options=TimecourseOptions,
    references={"berg-core tests": "tests/plugins/berg-testplugin"},
    performance="Not applicable (synthetic).",
)

FAMILY_CARD = ModelCard(
    model_id=FAMILY_ID,
    modality="toy",
    training_dataset="Synthetic family",
    species="None (synthetic)",
    model_type="Family of fixed linear maps",
    description="A gateway id for many toy models, listed with: berg list --expand toy_family.",
    output_description="Four columns per member.",
)


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Declare the linear and time-resolved models and the family gateway."""
    register(LINEAR_CARD, "berg_testplugin.model:load")
    register(TIMECOURSE_CARD, "berg_testplugin.timecourse:load")
    register(FAMILY_CARD, "berg_testplugin.family:load")


@hookimpl
def register_selection_schemas(register: Callable[..., None]) -> None:
    """Declare the selection schemas (by import path: imported when used)."""
    register(LINEAR_ID, "berg_testplugin.selection:ToySelection")
    register(TIMECOURSE_ID, "berg_testplugin.timecourse:TimecourseSelection")


@hookimpl
def register_metadata_loaders(register: Callable[..., None]) -> None:
    """Declare the per-subject metadata loaders."""
    register(LINEAR_ID, "berg_testplugin.model:load_metadata")
    register(TIMECOURSE_ID, "berg_testplugin.timecourse:load_metadata")


@hookimpl
def register_model_families(register: Callable[..., None]) -> None:
    """Declare ``toy_family``: ids ``toy_family-<member>`` route to its loader."""
    register(FAMILY_ID, FAMILY_PREFIX, "berg_testplugin.family:members")
