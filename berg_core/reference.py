"""Facts of the reference toolkit's recipes that several model families share (torch-free).

The reference trains its NSD, THINGS-fMRI1, THINGS-EEG2, THINGS-MEG1 and TVSD encoders on the
same backbone features: eight nodes of torchvision's AlexNet, or the outputs of the twelve
encoder blocks of ViT-B/32, flattened and concatenated in this order. Its "untrained" AlexNet is
built right after seeding torch's CPU generator with :data:`UNTRAINED_SEED`. Families import these
names instead of spelling them again; cards may import this module (it imports nothing heavy).
"""

from __future__ import annotations

__all__ = ["ALEXNET_NODES", "UNTRAINED_SEED", "VIT_B_32_NODES"]

#: Seed of torch's CPU generator right before the reference builds its untrained AlexNet.
UNTRAINED_SEED = 20200220

#: AlexNet feature nodes (``torchvision.models.feature_extraction`` names), 205,672 features.
ALEXNET_NODES = (
    "features.2",
    "features.5",
    "features.7",
    "features.9",
    "features.12",
    "classifier.2",
    "classifier.5",
    "classifier.6",
)

#: ViT-B/32 feature nodes: the output of each of the 12 encoder blocks, 12 x 50 x 768 features.
VIT_B_32_NODES = tuple(f"encoder.layers.encoder_layer_{i}.add_1" for i in range(12))
