"""The model card of ``fmri-nsd_fsaverage-factortopy`` (no torch here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from berg_nsd.fsaverage import OUTPUTS
from pydantic import Field, PositiveInt, field_validator

from berg_core import EncodeOptions, ModelCard
from berg_factortopy.layout import MODEL_ID, NSD_METADATA_CARD

__all__ = ["CARD"]

_DESCRIPTION = (
    "A FactorTopy encoding model (Yang, Gee & Shi, 2023, 'Brain Decodes Deep Nets') that you "
    "train yourself on a subject's fMRI data (berg train factortopy), for any image backbone "
    "with a get_tokens(x) method (built in: ViT-B/16, ViT-B/32, AlexNet, untrained AlexNet). "
    "The backbone is frozen. Each layer's tokens are reduced to a common width (channel "
    "bottleneck); then, for every fsaverage vertex, small networks of the vertex's position on "
    "FreeSurfer's fsaverage sphere choose a softmax mixture of layers, a location in the "
    "feature maps (bilinear sampling) and a mix of that local token with the layer's global "
    "token; a per-vertex linear readout of the selected feature predicts the response. Because "
    "the choices are functions of cortical position, neighbouring vertices choose alike, and "
    "the choices themselves are brain maps of the network (berg maps CHECKPOINT --out DIR).\n"
    "Load a trained checkpoint with get_encoding_model(..., checkpoint=DIR), or put it in "
    "berg_dir at encoding_models/modality-fmri/train_dataset-nsd_fsaverage/model-factortopy/"
    "checkpoints/subject-SS/ (then berg encode finds it too). Only the vertices the checkpoint "
    "was trained on can be predicted: a selection keeps those of its vertices, and the "
    "output's column indices say which they are. ROI selections read the subject's NSD "
    "metadata file (berg fetch downloads it)."
)

_OUTPUT = (
    "A tuple (lh, rh) of float32 arrays of shape (N, selected LH vertices) and (N, selected RH "
    "vertices): predicted fMRI responses, in the units of the training data, of the fsaverage "
    "vertices the checkpoint was trained on (all of them, or those of the selection), columns in "
    "ascending vertex order. Input: RGB images (N, 3, H, W), integers 0-255 or floats in [0, 1]; "
    "they are preprocessed with the backbone's own transform."
)


#: Card of the FactorTopy model.
class FactorTopyOptions(EncodeOptions):
    """Options of ``fmri-nsd_fsaverage-factortopy`` (keywords of ``get_encoding_model``)."""

    checkpoint: Path | None = Field(
        None,
        description="Checkpoint folder written by 'berg train factortopy' (default: the "
        "subject's folder in the berg_dir layout).",
    )
    threads: PositiveInt | None = Field(
        None,
        description="torch's intra-op threads while encoding, restored afterwards (default: "
        "torch's own setting). On busy shared cores 1 thread can be several times faster than 2.",
    )

    @field_validator("threads", mode="before")
    @classmethod
    def _threads_not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True is an int to Python, not a thread count
            raise ValueError("a thread count is an integer, not a bool")
        return value


CARD = ModelCard(
    model_id=MODEL_ID,
    modality="fMRI",
    training_dataset="Natural Scenes Dataset (NSD) (fsaverage surface space)",
    species="Human",
    stimuli="Images",
    model_type="FactorTopy on a frozen image backbone (trained by the user)",
    creator="berg (after Huzheng Yang, James Gee and Jianbo Shi)",
    description=_DESCRIPTION,
    subjects=tuple(range(1, 9)),
    outputs=OUTPUTS,
    output_description=_OUTPUT,
    selection_required=False,
    # the only file of the public bucket it reads: the subject's NSD metadata (ROI definitions)
    files=(NSD_METADATA_CARD.files[1],),
    options=FactorTopyOptions,
    references={
        "Brain Decodes Deep Nets (Yang, Gee & Shi, 2023)": "https://arxiv.org/abs/2312.01280",
        "Brain Decodes Deep Nets code": "https://github.com/huzeyann/BrainDecodesDeepNets",
        "Algonauts 2023 challenge": "http://algonauts.csail.mit.edu",
        "NSD paper (Allen et al., 2022)": "https://doi.org/10.1038/s41593-021-00962-x",
    },
    performance=(
        "Per-vertex validation R² of a trained checkpoint: accuracy.npz in the checkpoint folder, "
        "metadata['encoding_models'] ({lh,rh}_r2_val), and the val_r2 brain map of berg maps."
    ),
)
