"""Fine-tuning regimes: linear probe, last-K blocks, full; heads only on trainable layers;
layer-wise learning-rate decay; gradient checkpointing leaves the gradients unchanged."""

from __future__ import annotations

import copy

import pytest
import torch

from pathda.adapt import build_optimizers, create_method
from pathda.errors import ConfigError
from pathda.models import create_backbone
from pathda.models.structure import block_names
from pathda.train import TrainConfig, train
from pathda.train.regime import (
    backbone_param_groups,
    count_parameters,
    enable_grad_checkpointing,
    freeze_backbone,
    trainable_taps,
)


def _vit(depth: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone(
        "vit_tiny_patch16_224", 4, input_size=32, depth=depth, embed_dim=32, num_heads=2
    )


def _train_steps(model, method, steps: int = 2, size: int = 32) -> None:
    optimizers = build_optimizers(
        model, method, lr=0.1, backbone_groups=backbone_param_groups(model.backbone, 0.1, 1e-4)
    )
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.rand(8, 3, size, size, generator=gen)
        method.step(model, optimizers, x[:4], torch.tensor([0, 1, 2, 3]), x[4:])


def test_linear_probe_trains_only_the_classifier_and_keeps_batchnorm_statistics():
    torch.manual_seed(0)
    net = create_backbone("test_resnet", 4)
    assert freeze_backbone(net, "linear") == "fc"
    before = copy.deepcopy(net.state_dict())
    method = create_method("none")
    _train_steps(method.build_model(net), method)
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # running means/vars untouched too
    assert net.training  # the model is in train mode; only frozen BatchNorms are not


def test_partial_trains_the_last_k_blocks_and_everything_after():
    net = _vit(depth=3)
    assert freeze_backbone(net, "partial", 1) == "blocks.2"
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert all(n.startswith(("blocks.2.", "norm.", "fc_norm.", "head.")) for n in trainable)
    assert any(n.startswith("blocks.2.") for n in trainable)
    assert "head.weight" in trainable
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight"}.isdisjoint(trainable)
    counts = count_parameters(net)
    assert counts["trainable"] > 0
    assert counts["frozen"] > counts["trainable"]
    with pytest.raises(ConfigError, match=r"finetune_blocks must be 1\.\.3"):
        freeze_backbone(_vit(depth=3), "partial", 4)


def test_heads_only_on_trainable_blocks():
    net = _vit(depth=3)
    first = freeze_backbone(net, "partial", 2)
    taps = [f"blocks.{i}" for i in range(3)]
    assert trainable_taps(net, taps, first, explicit=False) == ["blocks.1", "blocks.2"]
    assert trainable_taps(net, ["head_drop"], first, explicit=True) == ["head_drop"]
    with pytest.raises(ConfigError, match=r"blocks\.0 lie in the frozen part"):
        trainable_taps(net, taps, first, explicit=True)
    probe = _vit(depth=3)
    assert trainable_taps(probe, taps, freeze_backbone(probe, "linear"), explicit=False) == []


def test_layer_decay_scales_learning_rate_per_block():
    net = _vit(depth=3)  # timm groups: embeddings 0, blocks 1..3, norm + head 4
    groups = backbone_param_groups(net, lr=1.0, weight_decay=1e-4, layer_decay=0.5)
    lr_of = {}
    names = {id(p): n for n, p in net.named_parameters()}
    for group in groups:
        assert group["weight_decay"] == 1e-4  # no decay exemptions: the paper's weight decay
        for p in group["params"]:
            lr_of[names[id(p)]] = group["lr"]
    assert lr_of["head.weight"] == pytest.approx(1.0)
    assert lr_of["blocks.2.attn.qkv.weight"] == pytest.approx(0.5)
    assert lr_of["blocks.0.attn.qkv.weight"] == pytest.approx(0.125)
    assert lr_of["pos_embed"] == pytest.approx(0.0625)
    assert len(lr_of) == sum(1 for _ in net.parameters())
    assert backbone_param_groups(net, 1.0, 0.0)[0]["lr"] == 1.0  # decay 1: one group


@pytest.mark.parametrize(("arch", "first_block"), [("vit", "blocks.0"), ("cnn", "layer1.0")])
def test_grad_checkpointing_gives_the_same_ldann_step(arch, first_block):
    plain = _vit() if arch == "vit" else create_backbone("test_resnet", 4)
    initial = copy.deepcopy(plain.state_dict())
    checkpointed = copy.deepcopy(plain)
    enable_grad_checkpointing(checkpointed)
    results = []
    for net in (plain, checkpointed):
        method = create_method("ldann")
        torch.manual_seed(2)  # same head initialisation for both
        model = method.build_model(net, input_size=(3, 32, 32))
        _train_steps(model, method, steps=1)
        # Parameters only: the recomputation updates BatchNorm running statistics a second
        # time (a known property of checkpointing, documented on the switch).
        results.append({k: v.detach().clone() for k, v in net.named_parameters()})
    assert checkpointed.grad_checkpointing
    assert not plain.grad_checkpointing
    for key, value in results[0].items():
        torch.testing.assert_close(results[1][key], value, rtol=1e-4, atol=1e-5)
    # The step moved the first block in both (its gradient came through the taps).
    moved = [k for k in initial if k.startswith(first_block) and k.endswith("weight")]
    assert moved
    assert all(not torch.equal(initial[k], results[1][k]) for k in moved)


def test_regime_config_is_validated():
    with pytest.raises(ConfigError, match="finetune_blocks"):
        TrainConfig(finetune="partial")
    with pytest.raises(ConfigError, match="finetune_blocks"):
        TrainConfig(finetune="full", finetune_blocks=2)
    with pytest.raises(ConfigError, match="layer_decay"):
        TrainConfig(layer_decay=0.0)


@pytest.mark.slow
def test_train_partial_vit_with_ldann_layer_decay_and_checkpointing(synthetic_store, tmp_path):
    base = {"store": synthetic_store, "arch": "test_vit", "method": "ldann", "epochs": 1}
    base |= {"steps_per_epoch": 1, "batch_size": 4, "num_workers": 0}
    cfg = TrainConfig(
        **base, finetune="partial", finetune_blocks=1, layer_decay=0.75, grad_checkpointing=True
    )
    (result,) = train(cfg, tmp_path / "partial", quiet=True)
    history = result.history[0]
    last_block = block_names(create_backbone("test_vit", 4, input_size=32))[-1]
    assert [k for k in history if k.startswith("domain_loss/")] == [f"domain_loss/{last_block}"]
    with pytest.raises(ConfigError, match="no trainable layer to adapt"):
        train(TrainConfig(**base, finetune="linear"), tmp_path / "linear", quiet=True)
