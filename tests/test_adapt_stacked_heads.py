"""L-DANN evaluates same-shaped domain heads together: same losses, metrics and gradients.

Reference: the per-head loop (one ``head(GRL(squeeze(z)))`` and one cross-entropy per tap),
written out here in float64. The stacked step runs the same maths in a different order
(batched products, one GRL per group), so float64 results agree to ~1e-12; metrics come
back as float32-rounded Python floats and are compared at float32 precision.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from pathda.adapt import GradientReversal, build_optimizers, create_method, squeeze
from pathda.adapt.grl import grl_coefficient
from pathda.adapt.heads import DomainHead, group_by_shape
from pathda.models import create_backbone


class MixedTaps(nn.Module):
    """Conv taps of 8 and 16 channels and Linear (2-D) taps of 16 and 8 features, interleaved.

    With r = 4 the heads fall into two shape groups that each mix 4-D and 2-D taps:
    {block1, block2, fc2} (C' = 8) and {block3, fc1} (C' = 16).
    """

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        self.block3 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2), nn.ReLU())
        self.fc1 = nn.Linear(16, 16)
        self.fc2 = nn.Linear(16, 8)
        self.out = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x))).mean(dim=(2, 3))
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


MIXED_TAPS = ["block1", "block3", "block2", "fc1", "fc2"]


def _reference_step(model, taps, x, y, domains, coeff, weights):
    """The per-head loop: metrics (float64) and gradients of every parameter."""
    grl = GradientReversal(coeff)
    n_src = y.shape[0]
    logits, features = model.forward_train(x)
    total = F.cross_entropy(logits[:n_src], y)
    metrics = {}
    for tap in taps:
        domain_logits = model.head(tap)(grl(squeeze(features[tap])))
        loss = F.cross_entropy(domain_logits, domains)
        total = total + weights[tap] * loss
        metrics[f"domain_loss/{tap}"] = loss.item()
        metrics[f"domain_acc/{tap}"] = (domain_logits.argmax(1) == domains).double().mean().item()
    total.backward()
    metrics["loss_total"] = total.item()
    return metrics, {name: p.grad.clone() for name, p in model.named_parameters()}


def _compare(model, method, x_src, y_src, x_tgt, progress, layer_weights, domain_tgt=None):
    reference_model = copy.deepcopy(model)
    # lr 0, no momentum or decay: the step leaves weights alone and its .grad stays readable.
    optimizers = build_optimizers(model, method, lr=0.0, momentum=0.0, weight_decay=0.0)
    metrics = method.step(
        model, optimizers, x_src, y_src, x_tgt, progress, layer_weights, domain_tgt=domain_tgt
    )

    taps = model.tap_points
    n_src = x_src.shape[0]
    tgt = torch.ones(x_tgt.shape[0], dtype=torch.long) if domain_tgt is None else domain_tgt
    domains = torch.cat([torch.zeros(n_src, dtype=torch.long), tgt])
    coeff = grl_coefficient(method.grl_schedule, progress, method.grl_constant)
    weights = method.layer_weights(taps, layer_weights)
    expected, expected_grads = _reference_step(
        reference_model, taps, torch.cat([x_src, x_tgt]), y_src, domains, coeff, weights
    )

    assert metrics["grl_coeff"] == pytest.approx(coeff)
    domain_keys = [k for k in metrics if k.startswith("domain_") and k != "domain_acc_mean"]
    assert domain_keys == [k for k in expected if k.startswith("domain_")]  # names and order
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    accuracies = [expected[f"domain_acc/{t}"] for t in taps]
    assert metrics["domain_acc_mean"] == pytest.approx(sum(accuracies) / len(taps), abs=1e-7)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected_grads[name], rtol=1e-9, atol=1e-12)
    return metrics


def test_group_by_shape_keeps_tap_order_within_and_across_groups():
    heads = {
        "a": DomainHead(8, 2, reduction=4),
        "b": DomainHead(16, 2, reduction=4),
        "c": DomainHead(8, 2, reduction=4),
        "d": DomainHead(8, 3, reduction=4),  # other N': its own group
    }
    groups = group_by_shape(heads)
    assert [taps for taps, _ in groups] == [["a", "c"], ["b"], ["d"]]
    assert all(hs == [heads[t] for t in taps] for taps, hs in groups)


@pytest.mark.parametrize(
    ("schedule", "progress", "layer_weighting", "overrides"),
    [
        ("constant", 0.0, "sum", None),  # equal weights: the no-weight-tensor path
        ("ganin", 0.3, "mean", {"block2": 0.25, "fc1": 3.0}),  # unequal weights in both groups
    ],
)
def test_stacked_ldann_matches_per_head_loop_on_mixed_4d_and_2d_taps(
    schedule, progress, layer_weighting, overrides
):
    torch.manual_seed(0)
    method = create_method(
        "ldann",
        n_domains=3,
        reduction=4,
        grl_schedule=schedule,
        grl_constant=0.7,
        layer_weighting=layer_weighting,
    )
    model = method.build_model(MixedTaps().double(), MIXED_TAPS, input_size=(3, 12, 12))
    groups = group_by_shape({t: model.head(t) for t in model.tap_points})
    assert [taps for taps, _ in groups] == [["block1", "block2", "fc2"], ["block3", "fc1"]]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(10, 3, 12, 12, generator=gen, dtype=torch.float64)
    x[5:] += 0.5
    y_src = torch.randint(0, 3, (5,), generator=gen)
    domain_tgt = torch.tensor([1, 2, 1, 2, 2])  # three domains: 3-way domain heads
    _compare(model, method, x[:5], y_src, x[5:], progress, overrides, domain_tgt)


def test_stacked_ldann_matches_per_head_loop_on_vit_token_taps():
    torch.manual_seed(0)
    net = create_backbone("vit_tiny_patch16_224", 4, input_size=32, depth=3).double()
    method = create_method("ldann", grl_constant=0.5)
    model = method.build_model(net, input_size=(3, 32, 32))
    assert len(group_by_shape({t: model.head(t) for t in model.tap_points})) == 1
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(8, 3, 32, 32, generator=gen, dtype=torch.float64)
    metrics = _compare(
        model, method, x[:4], torch.tensor([0, 1, 2, 3]), x[4:], 0.5, {"blocks.1": 2.0}
    )
    assert set(metrics) >= {f"domain_loss/blocks.{i}" for i in range(3)}


class _MatmulCount(TorchDispatchMode):
    """Counts matrix products dispatched (forward, backward and optimiser alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += str(func.overloadpacket) in ("aten.mm", "aten.addmm", "aten.bmm")
        return func(*args, **(kwargs or {}))


def _matmuls_added_by_ldann(depth: int) -> int:
    """Matrix products of one L-DANN step minus those of a plain step on the same images."""
    counts = {}
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    for name in ("none", "ldann"):
        torch.manual_seed(0)
        net = create_backbone("vit_tiny_patch16_224", 4, input_size=32, depth=depth, embed_dim=48)
        method = create_method(name)
        model = method.build_model(net, input_size=(3, 32, 32))
        optimizers = build_optimizers(model, method)
        xs, ys = (x, torch.cat([y, y])) if name == "none" else (x[:4], y)
        with _MatmulCount() as counter:
            method.step(model, optimizers, xs, ys, x[4:])
        counts[name] = counter.n
    return counts["ldann"] - counts["none"]


def test_ldann_head_matmuls_do_not_grow_with_the_number_of_blocks():
    # One group of same-shaped heads: 2 batched products forward, 4 backward, at any depth
    # (the per-head loop added 6 per block: 12 at depth 2, 24 at depth 4).
    assert _matmuls_added_by_ldann(2) == _matmuls_added_by_ldann(4) == 6
