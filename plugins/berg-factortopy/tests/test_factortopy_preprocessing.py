"""FactorTopy preprocesses the whole image (resized to the input size), never a centre crop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from berg_factortopy.backbones import ImageTransform, transform_of, whole_image_transform
from berg_factortopy.layout import preprocessing_of
from berg_factortopy.tokens import token_computer
from berg_factortopy.train import TrainResult
from factortopy_testkit import SIZE, TinyBackbone

from berg_core import BERG, ModelLoadError
from berg_core.torchkit import Preprocessor

CPU = torch.device("cpu")


def corner_images(side: int, corner: int) -> np.ndarray:
    """A blank image and the same image with a bright square in its top-left corner."""
    images = np.full((2, 3, side, side), 128, dtype=np.uint8)
    images[1, :, :corner, :corner] = 255
    return images


def test_whole_image_keeps_the_corner_a_centre_crop_cuts_away():
    preset = torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1.transforms()  # 256 -> crop 224
    images = corner_images(256, 12)  # the crop drops the outer 16 pixels: all of the square
    cropped = Preprocessor(preset, CPU)(images).clone()
    torch.testing.assert_close(cropped[0], cropped[1], rtol=0, atol=0)  # the old preprocessing

    class Holder:
        transform = preset

    whole = Preprocessor(transform_of(Holder(), whole_image=True), CPU)(images).clone()
    assert whole.shape == (2, 3, 224, 224)
    changed = (whole[1] - whole[0]).abs().amax(dim=0) > 0
    rows, cols = torch.nonzero(changed, as_tuple=True)
    # 12 of 256 pixels -> about 10.5 of 224 (plus the bilinear, antialiased edge)
    assert changed.any() and rows.max() < 16 and cols.max() < 16
    assert changed[:8, :8].all()


def test_the_corner_changes_the_tokens():
    backbone = TinyBackbone()
    backbone.transform = ImageTransform(SIZE, resize=SIZE + 8)  # a transform that crops
    images = corner_images(SIZE + 8, 3)
    for whole, differs in ((False, False), (True, True)):
        compute = token_computer(
            backbone, Preprocessor(transform_of(backbone, whole_image=whole), CPU), to_cpu=True
        )
        local, global_ = compute(images)
        first = next(iter(local))
        assert local[first].shape[0] == 2
        assert (not torch.equal(local[first][0], local[first][1])) is differs
        assert (not torch.equal(global_[first][0], global_[first][1])) is differs


def test_whole_image_transform_of_presets_and_callables():
    preset = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()
    whole = whole_image_transform(preset)
    assert isinstance(whole, ImageTransform)
    assert whole.resize_size == [224, 224] and whole.crop_size == [224]
    assert tuple(whole.mean) == tuple(preset.mean) and whole.interpolation == preset.interpolation

    def custom(x):
        return x

    assert whole_image_transform(custom) is custom  # decides its own geometry


def test_checkpoints_record_their_preprocessing(berg: BERG, trained: TrainResult):
    config = json.loads((trained.folder / "config.json").read_text())
    assert config["preprocessing"] == "whole-image"
    model = berg.get_encoding_model(
        "fmri-nsd_fsaverage-factortopy", subject=1, device="cpu", checkpoint=trained.folder
    )
    with model:
        assert model.preprocessor.resize_size == [SIZE, SIZE]
    assert preprocessing_of({}) == "centre-crop"  # checkpoints of berg-factortopy 0.1
    with pytest.raises(ModelLoadError, match="preprocessing = 'squash' is not one of"):
        preprocessing_of({"preprocessing": "squash"})
