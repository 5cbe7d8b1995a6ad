"""Backbone adapters: ViT-B/16, ViT-B/32 and the untrained AlexNet; the get_tokens contract."""

from __future__ import annotations

import pytest
import torch
import torchvision
from berg_factortopy.backbones import (
    AlexNetTokens,
    ImageTransform,
    ViTTokens,
    build_backbone,
    check_tokens,
)

from berg_core import InvalidParameterError, ModelLoadError
from berg_core.torchkit import NodeFeatureExtractor


@pytest.mark.parametrize(("builder", "side"), [("vit_b_16", 14), ("vit_b_32", 7)])
def test_vit_tokens_are_the_blocks_outputs(builder: str, side: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = getattr(torchvision.models, builder)(weights=None).eval()
    adapter = ViTTokens(vit)
    captured = []
    hooks = [
        block.register_forward_hook(lambda m, i, o: captured.append(o))
        for block in vit.encoder.layers
    ]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        logits = vit(x)
        local, global_ = check_tokens(adapter.get_tokens(x))
    for hook in hooks:
        hook.remove()
    assert list(local) == [f"encoder_layer_{i}" for i in range(12)]
    for (name, tokens), block_out in zip(local.items(), captured[:12], strict=True):
        assert tokens.shape == (1, 768, side, side)
        assert global_[name].shape == (1, 768)
        torch.testing.assert_close(global_[name], block_out[:, 0])
        # patch (row r, column c) is the token r * side + c
        torch.testing.assert_close(tokens[0, :, 1, 2], block_out[0, 1 + side + 2])
    # the last class token, normalised and classified, is the network's output
    torch.testing.assert_close(vit.heads(vit.encoder.ln(global_["encoder_layer_11"])), logits)


def test_untrained_alexnet_tokens_are_berg_nsd_features():
    backbone = build_backbone("alexnet_untrained")
    assert isinstance(backbone, AlexNetTokens)
    from berg_nsd.cards import ALEXNET_NODES, SPECS
    from berg_nsd.model import build_backbone as nsd_backbone

    reference = NodeFeatureExtractor(
        nsd_backbone(SPECS["fmri-nsd_fsaverage-alexnet_untrained"]),
        ALEXNET_NODES,
        torch.device("cpu"),
    )
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        local, global_ = check_tokens(backbone.get_tokens(x))
        expected = reference(x.clone())
    assert list(local) == list(ALEXNET_NODES)
    assert local["features.2"].shape == (2, 64, 27, 27)
    assert local["classifier.6"].shape == (2, 1000, 1, 1)
    flat = [local[n].flatten(1) if n.startswith("features") else global_[n] for n in ALEXNET_NODES]
    torch.testing.assert_close(torch.cat(flat, dim=1), expected)
    torch.testing.assert_close(global_["features.12"], local["features.12"].mean(dim=(2, 3)))
    # seeded: built again, identical
    again = build_backbone("alexnet_untrained")
    for a, b in zip(backbone.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_builtin_vit_without_weights_needs_no_download():
    backbone = build_backbone("vit_b_32", {"pretrained": False})
    assert isinstance(backbone, ViTTokens)
    assert backbone.transform.crop_size == [224]


def test_build_backbone_errors():
    with pytest.raises(InvalidParameterError, match="neither a built-in"):
        build_backbone("resnet9000")
    with pytest.raises(InvalidParameterError, match="has no get_tokens"):
        build_backbone("factortopy_testkit:NotABackbone")
    with pytest.raises(InvalidParameterError, match="with arguments"):
        build_backbone("vit_b_16", {"patch": 3})
    with pytest.raises(ModelLoadError, match="no attribute 'Missing'"):
        build_backbone("factortopy_testkit:Missing")
    with pytest.raises(ModelLoadError, match="no_such_module"):
        build_backbone("no_such_module:Backbone")


def test_check_tokens_explains_the_contract():
    ok_local = {"a": torch.zeros(2, 4, 3, 3)}
    ok_global = {"a": torch.zeros(2, 4)}
    assert check_tokens((ok_local, ok_global))[0] is not ok_local
    with pytest.raises(InvalidParameterError, match=r"\(local_tokens, global_tokens\)"):
        check_tokens(ok_local)
    with pytest.raises(InvalidParameterError, match="same layers"):
        check_tokens((ok_local, {"b": torch.zeros(2, 4)}))
    with pytest.raises(InvalidParameterError, match=r"\(B, C, H, W\)"):
        check_tokens(({"a": torch.zeros(2, 4)}, ok_global))
    with pytest.raises(InvalidParameterError, match="another batch size"):
        check_tokens((ok_local, {"a": torch.zeros(3, 4)}))


def test_image_transform_matches_torchvision_preset():
    preset = torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1.transforms()
    ours = ImageTransform(224, resize=256)
    images = torch.randint(0, 256, (2, 3, 300, 260), dtype=torch.uint8)
    torch.testing.assert_close(ours(images), preset(images))
