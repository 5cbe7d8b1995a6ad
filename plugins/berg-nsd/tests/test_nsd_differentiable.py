"""The differentiable path of the NSD AlexNet model equals encode (issue 16, synthesis)."""

from __future__ import annotations

import numpy as np
import torch
from error_bounds import assert_within
from nsd_reference import UNTRAINED, Model

from berg_core import BERG


def test_differentiable_path_equals_encode(berg: BERG, untrained: Model) -> None:
    """256 x 256 images: the preset's resize is the identity, so encode's uint8 path and the
    float path feed the network the same float32 tensor; the rest differs by float32 rounding
    only, within twice the derived bound of one float32 computation (error_bounds)."""
    images = np.random.default_rng(4).integers(0, 256, (2, 3, 256, 256), dtype=np.uint8)
    lh_index, rh_index = untrained.rois("V1v")
    selection = {"roi": "V1v"}
    with berg.get_encoding_model(UNTRAINED, subject=1, device="cpu", selection=selection) as model:
        encoded = berg.encode(model, images, show_progress=False)
        x = (torch.from_numpy(images).float() / 255).requires_grad_(True)
        got = model.differentiable()(x)
        sum(out.mean() for out in got).backward()
    lh_columns = np.flatnonzero(lh_index)
    rh_columns = np.flatnonzero(rh_index)
    tolerances = untrained.tolerance(images, lh_columns, rh_columns)
    for tensor, wanted, tolerance in zip(got, encoded, tolerances, strict=True):
        assert tensor.shape == wanted.shape and tensor.dtype == torch.float32
        assert_within(tensor.detach().numpy(), wanted, tolerance)
    assert torch.isfinite(x.grad).all() and (x.grad != 0).any()
