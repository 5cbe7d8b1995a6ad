"""The module the ``berg`` entry point names: registration only, through all four hooks.

Imports berg-core and this package's light :mod:`berg_testplugin.layout`, nothing else: loaders,
the selection schema, the metadata loader and the family lister are named by import path and
imported by berg only when used.
"""

from __future__ import annotations

from collections.abc import Callable

from berg_core import EncodeOptions, ModelCard, hookimpl
from berg_testplugin.layout import (
    HEMISPHERES,
    LINEAR_ID,
    METADATA_FILE,
    SUBJECTS,
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
    """Declare the linear model and the family gateway."""
    register(LINEAR_CARD, "berg_testplugin.model:load")
    register(FAMILY_CARD, "berg_testplugin.family:load")


@hookimpl
def register_selection_schemas(register: Callable[..., None]) -> None:
    """Declare the linear model's selection schema (by import path: imported when used)."""
    register(LINEAR_ID, "berg_testplugin.selection:ToySelection")


@hookimpl
def register_metadata_loaders(register: Callable[..., None]) -> None:
    """Declare the linear model's per-subject metadata loader."""
    register(LINEAR_ID, "berg_testplugin.model:load_metadata")


@hookimpl
def register_model_families(register: Callable[..., None]) -> None:
    """Declare ``toy_family``: ids ``toy_family-<member>`` route to its loader."""
    register(FAMILY_ID, FAMILY_PREFIX, "berg_testplugin.family:members")
