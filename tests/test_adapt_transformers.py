"""Layer-wise adaptation on timm families: ViT, EVA, Swin, ConvNeXt, ResNet (tiny configs)."""

from __future__ import annotations

import pytest
import torch

from pathda.adapt import DomainAdaptationModel, build_optimizers, create_method, default_tap_points
from pathda.models import create_backbone

# family -> (arch, tile px, timm kwargs); random weights, shrunk to stay fast.
FAMILIES = {
    "vit": ("vit_tiny_patch16_224", 32, {"depth": 3}),
    "eva": ("eva02_tiny_patch14_224", 28, {"depth": 2}),
    "swin": (
        "swin_tiny_patch4_window7_224",
        32,
        {"window_size": 2, "depths": (1, 1, 2, 1), "embed_dim": 16, "num_heads": (1, 1, 1, 1)},
    ),
    "convnext": ("test_convnext", 32, {}),
    "resnet": ("test_resnet", 32, {}),
}
BLOCK_TAPS = {
    "vit": ["blocks.0", "blocks.1", "blocks.2"],
    "eva": ["blocks.0", "blocks.1"],
    "swin": [
        "layers.0.blocks.0",
        "layers.1.blocks.0",
        "layers.2.blocks.0",
        "layers.2.blocks.1",
        "layers.3.blocks.0",
    ],
    "convnext": [f"stages.{s}.blocks.{b}" for s, n in enumerate((1, 2, 4, 2)) for b in range(n)],
    "resnet": ["layer1.0", "layer2.0", "layer3.0", "layer4.0"],
}
STAGE_TAPS = {
    "vit": BLOCK_TAPS["vit"],  # a plain transformer has no stages
    "eva": BLOCK_TAPS["eva"],
    "swin": ["layers.0", "layers.1", "layers.2", "layers.3"],
    "convnext": ["stages.0", "stages.1", "stages.2", "stages.3"],
    "resnet": ["layer1", "layer2", "layer3", "layer4"],
}
POOLED = {
    "vit": "head_drop",
    "eva": "head_drop",
    "swin": "head.global_pool",
    "convnext": "head.global_pool",
    "resnet": "global_pool",
}


def _net(family: str) -> tuple[torch.nn.Module, int]:
    arch, size, kwargs = FAMILIES[family]
    torch.manual_seed(0)
    return create_backbone(arch, 4, input_size=size, **kwargs), size


@pytest.mark.parametrize("family", FAMILIES)
def test_default_tap_points_per_family(family):
    net, _ = _net(family)
    assert default_tap_points(net, "ldann", "block") == BLOCK_TAPS[family]
    assert default_tap_points(net, "lwass", "stage") == STAGE_TAPS[family]
    assert default_tap_points(net, "dann") == [POOLED[family]]


@pytest.mark.parametrize("family", FAMILIES)
def test_ldann_builds_and_trains_a_step_per_family(family):
    net, size = _net(family)
    adapt = create_method("ldann")
    model = adapt.build_model(net, input_size=(3, size, size))
    for tap, channels in model.tap_channels.items():
        assert model.head(tap).in_channels == channels
    optimizers = build_optimizers(model, adapt, lr=0.01)
    before = {k: v.clone() for k, v in model.heads.state_dict().items()}
    x = torch.rand(4, 3, size, size)
    metrics = adapt.step(model, optimizers, x[:2], torch.tensor([0, 1]), x[2:])
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    after = model.heads.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)  # every head learned


def test_swin_stage_outputs_are_read_channels_last():
    net, size = _net("swin")
    model = DomainAdaptationModel(
        net, STAGE_TAPS["swin"], lambda c: torch.nn.Identity(), (3, size, size)
    )
    assert set(model.tap_layouts.values()) == {"NHWC"}
    # embed_dim 16 doubles per stage; a channels-first misreading would give the map side.
    assert list(model.tap_channels.values()) == [16, 32, 64, 128]
    _, feats = model.forward_train(torch.rand(2, 3, size, size))
    assert feats["layers.1"].shape == (2, 32, 4, 4)


def test_token_taps_average_patch_tokens_only():
    # Class token + 4 register tokens lead the sequence; only the 4 patch tokens count.
    net = create_backbone(
        "vit_small_patch16_224", 4, input_size=32, depth=2, reg_tokens=4, embed_dim=48, num_heads=2
    )
    assert net.num_prefix_tokens == 5
    model = DomainAdaptationModel(net, ["blocks.1"], lambda c: torch.nn.Identity(), (3, 32, 32))
    assert model.tap_layouts == {"blocks.1": "NLC"}
    assert model.tap_channels == {"blocks.1": 48}
    raw = {}
    handle = net.blocks[1].register_forward_hook(lambda m, i, o: raw.setdefault("out", o))
    _, feats = model.forward_train(torch.rand(3, 3, 32, 32))
    handle.remove()
    assert raw["out"].shape == (3, 9, 48)
    assert feats["blocks.1"].shape == (3, 48, 4, 1)
    squeezed = feats["blocks.1"].double().mean(dim=(2, 3))
    expected = raw["out"][:, 5:, :].double().mean(dim=1)
    torch.testing.assert_close(squeezed, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.slow  # ~10 s on two loaded cores
def test_ldann_on_vit_tiny_builds_and_trains_a_step():
    # vit_tiny_patch16_224 at full depth and width (12 blocks, 192 channels), 32 px tiles.
    net = create_backbone("vit_tiny_patch16_224", 4, input_size=32)
    ldann = create_method("ldann")
    model = ldann.build_model(net, input_size=(3, 32, 32))
    assert model.tap_points == [f"blocks.{i}" for i in range(12)]
    assert set(model.tap_channels.values()) == {192}
    optimizers = build_optimizers(model, ldann, lr=0.01)
    x = torch.rand(8, 3, 32, 32)
    metrics = ldann.step(model, optimizers, x[:4], torch.tensor([0, 1, 2, 3]), x[4:])
    assert set(metrics) >= {"loss_cls", "loss_total", "domain_loss/blocks.11"}
    assert torch.isfinite(torch.tensor(metrics["loss_total"]))


@pytest.mark.parametrize(
    ("family", "tap", "channels"), [("swin", "layers.1", 32), ("vit", "blocks.1", 192)]
)
def test_label_free_alignment_features_are_pooled_per_channel(family, tap, channels):
    from pathda.train.labelfree_eval import _features

    net, size = _net(family)
    batches = [(torch.rand(3, 3, size, size), torch.zeros(3, dtype=torch.long), None)]
    feats, _ = _features(net.eval(), batches, lambda x: x, [tap], with_loss=False)
    assert feats[tap].shape == (3, channels)  # not flattened tokens or a mean over channels
