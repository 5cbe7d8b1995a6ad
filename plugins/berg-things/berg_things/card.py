"""The model card and file layout of ``fmri-things_fmri_1-vit_b_32`` (no heavy imports)."""

from __future__ import annotations

from pathlib import Path

from berg_core import Dim, ModelCard, Output

MODEL_ID = "fmri-things_fmri_1-vit_b_32"
SUBJECTS = (1, 2, 3)
N_VOXELS = 211_339
#: Features the readout expects: 12 ViT-B/32 encoder blocks x 50 tokens x 768 channels.
N_FEATURES = 12 * 50 * 768
MODEL_DIR = "encoding_models/modality-fmri/train_dataset-things_fmri_1/model-vit_b_32"
WEIGHTS_FILE = MODEL_DIR + "/encoding_models_weights/weights_sub-{subject:02d}.npy"
METADATA_FILE = MODEL_DIR + "/metadata/metadata_sub-{subject:02d}.npy"

#: ROI names of the metadata's ``roi`` dict, in the reference card's order.
ROIS = (
    "V1", "V2", "V3", "hV4", "VO1", "VO2", "LO1_prf", "LO2_prf", "TO1", "TO2", "V3b", "V3a",
    "lFFA", "rFFA", "lOFA", "rOFA", "lEBA", "rEBA", "lPPA", "rPPA", "lRSC", "rRSC", "lTOS",
    "rTOS", "lLOC", "rLOC", "IT", "lSTS", "rSTS",
)  # fmt: skip

CARD = ModelCard(
    model_id=MODEL_ID,
    modality="fMRI",
    training_dataset="THINGS fMRI1",
    species="Human",
    stimuli="Images",
    model_type="Vision transformer (ViT-B/32)",
    creator="Domenic Bersch",
    description=(
        "Linear regression from ViT-B/32 (torchvision, IMAGENET1K_V1) features onto whole-brain "
        "fMRI responses of THINGS-fMRI1 (Hebart et al., eLife 2023). Features are the outputs "
        "of all 12 transformer blocks, every token (50 x 768 per block, 460,800 in all), "
        "standardised and reduced to 250 principal components. Trained on single-trial "
        "responses to ~8,640 images; tested on 100 images averaged over 12 repetitions. "
        "Responses are in the z-scored space of the training data (z-scored per session)."
    ),
    subjects=SUBJECTS,
    outputs=(
        Output(
            name="responses",
            dims=(
                Dim(
                    name="voxel",
                    size=N_VOXELS,
                    description=(
                        "Voxel of the subject's THINGS-fMRI1 brain mask (coordinate: its index; "
                        "its position in the volume: metadata['fmri']['voxel_coords'])"
                    ),
                ),
            ),
            description="In silico fMRI responses (z-scored space).",
        ),
    ),
    output_description=(
        "float32 (N, selected voxels). Without selection, all 211,339 voxels in file order. "
        "With selection, ROI voxels ROI by ROI in the order given, then the voxel_index mask's "
        "voxels in ascending order, duplicates kept as in the reference toolkit; "
        "metadata['output']['columns']['responses'] gives the voxel index of every column."
    ),
    files=(WEIGHTS_FILE, METADATA_FILE),
    references={
        "THINGS-data (Hebart et al., 2023)": "https://doi.org/10.7554/eLife.82580",
        "ViT (Dosovitskiy et al., 2020)": "https://arxiv.org/abs/2010.11929",
        "Reference toolkit": "https://github.com/gifale95/BERG",
    },
    performance=(
        "Accuracy plots: brain-encoding-response-generator/encoding_models/modality-fmri/"
        "train_dataset-things_fmri_1/model-vit_b_32/encoding_models_accuracy"
    ),
)


def model_file(berg_dir: Path, template: str, subject: int) -> Path:
    """Absolute path of a per-subject file of this model."""
    return Path(berg_dir) / template.format(subject=subject)
