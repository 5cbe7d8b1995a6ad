"""berg hook implementations of berg-brainscore: declarations only.

Imports berg-core and this package's light modules; never ``brainscore_vision`` or ``torch``, which
are imported when a model is loaded (:mod:`berg_brainscore.model`).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field, StrictBool

from berg_brainscore.benchmarks import BENCHMARKS
from berg_brainscore.catalog import PREFIX
from berg_core import Dim, EncodeOptions, ModelCard, Output, hookimpl

GATEWAY_ID = "brainscore_vision"

_REGIONS = "; ".join(
    f"{roi}: {spec.benchmark} ({spec.n_neurons} neuroids)" for roi, spec in BENCHMARKS.items()
)


class BrainScoreOptions(EncodeOptions):
    """Options of the Brain-Score vision models (keywords of ``get_encoding_model``)."""

    allow_layer_selection: StrictBool = Field(
        False,
        description="For a model that commits no layer to the region, let Brain-Score pick one "
        "by scoring every layer on the public benchmarks (hours, several GB of downloads).",
    )


CARD = ModelCard(
    model_id=GATEWAY_ID,
    modality="ephys",
    training_dataset="BrainScore",
    species="Macaque",
    model_type="BrainScore Vision Models (External)",
    creator="Martin Schrimpf",
    description=(
        "Every model of the Brain-Score vision registry as an encoding model of macaque V1, V2, "
        "V4 or IT. Model ids are 'brainscore_vision-<identifier>', where identifier is a "
        "Brain-Score registry id (list them with: berg list --expand brainscore_vision). The "
        "model's submitter committed one layer to each region; berg records that layer's "
        "activations to the benchmark images of the selected region and fits Brain-Score's PLS "
        "regression (25 components, no scaling) from them to the recorded responses, once per "
        "model and region, caching the regression under berg_dir. Needs an environment with "
        "brainscore-vision (Python 3.11, numpy<2) and the benchmark's public data files in "
        "$BRAINIO_HOME (downloaded by Brain-Score when there is network). Selection 'roi' is "
        f"required. {_REGIONS}."
    ),
    outputs=(
        Output(
            name="responses",
            dims=(
                Dim(
                    name="neuroid",
                    description="Recording site of the region's benchmark (coordinate: neuroid id)",
                ),
            ),
            description="Predicted responses of the benchmark's neuroids.",
        ),
    ),
    output_description=(
        "One column per neuroid of the selected region's benchmark, in the benchmark's neuroid "
        "order (V1 102, V2 103, V4 88, IT 168 with the public data); "
        "their coordinates (model.coords(), metadata['output']['coords']) are the neuroid ids; "
        "pick some with selection={'roi': ..., 'neuroid': [ids]}."
    ),
    selection_required=True,
    options=BrainScoreOptions,
    references={
        "Brain-Score": "https://www.brain-score.org/",
        "Brain-Score vision models": "https://github.com/brain-score/vision",
        "Schrimpf et al. 2018": "https://www.biorxiv.org/content/10.1101/407007v1",
        "Freeman et al. 2013": "https://doi.org/10.1038/nn.3402",
        "Majaj et al. 2015": "https://doi.org/10.1523/JNEUROSCI.5181-14.2015",
    },
    performance="See the Brain-Score vision leaderboard: https://www.brain-score.org/vision/",
)


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Register the gateway ``brainscore_vision``; its loader loads every member."""
    register(CARD, "berg_brainscore.model:load")


@hookimpl
def register_selection_schemas(register: Callable[..., None]) -> None:
    """Register the ``roi`` schema for the gateway (and so for every member)."""
    register(GATEWAY_ID, "berg_brainscore.selection:BrainScoreSelection")


@hookimpl
def register_model_families(register: Callable[..., None]) -> None:
    """Declare the family: ``brainscore_vision-<identifier>`` for every registry identifier."""
    register(GATEWAY_ID, PREFIX, "berg_brainscore.catalog:member_names")
