"""Gradient reversal, Table 1 domain heads and the WGAN-GP penalty."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pathda.adapt import (
    DomainHead,
    GradientReversal,
    create_method,
    critic_objective,
    default_tap_points,
    gradient_penalty,
    grl_coefficient,
    squeeze,
)
from pathda.errors import ConfigError


@pytest.mark.parametrize("coeff", [1.0, 0.25, 0.0])
def test_grl_is_identity_forward_and_negates_scaled_gradient(coeff):
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 5, dtype=torch.float64)
    grl = GradientReversal(coeff)
    y = grl(x)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.equal(x.grad, -coeff * upstream)


def test_grl_coefficient_is_settable_between_steps():
    x = torch.ones(2, requires_grad=True)
    grl = GradientReversal()
    grl.coeff = 3.0
    grl(x).sum().backward()
    assert x.grad.tolist() == [-3.0, -3.0]


def test_grl_schedules():
    assert grl_coefficient("constant", 0.0) == 1.0
    assert grl_coefficient("constant", 0.7, constant=0.5) == 0.5
    assert grl_coefficient("ganin", 0.0) == 0.0
    assert grl_coefficient("ganin", 0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert grl_coefficient("ganin", 1.0, constant=2.0) == pytest.approx(
        2 * (2 / (1 + math.exp(-10)) - 1)
    )
    assert grl_coefficient("ganin", 7.0) == grl_coefficient("ganin", 1.0)  # clipped
    with pytest.raises(ConfigError, match="ganin"):
        grl_coefficient("cosine", 0.5)


def test_squeeze_pools_maps_and_keeps_vectors():
    maps = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    assert torch.allclose(squeeze(maps), maps.mean(dim=(2, 3)))
    vectors = torch.randn(2, 7)
    assert squeeze(vectors) is vectors
    with pytest.raises(ValueError, match="cannot squeeze"):
        squeeze(torch.randn(2, 3, 4))


def test_head_equals_table1_convolutions():
    head = DomainHead(64, 2, reduction=16)
    maps = torch.randn(3, 64, 5, 5)
    z = maps.mean(dim=(2, 3), keepdim=True)
    expected = head.conv2(torch.relu(head.conv1(z))).flatten(1)
    assert torch.allclose(head(maps), expected, atol=1e-6)
    assert torch.allclose(head(z.flatten(1)), expected, atol=1e-6)  # 2-D input: no squeeze


def test_critic_head_outputs_mean_of_its_c_outputs():
    critic = DomainHead(32, 32, reduction=16, scalar_output=True)
    plain = DomainHead(32, 32, reduction=16)
    plain.load_state_dict(critic.state_dict())
    z = torch.randn(4, 32)
    assert critic(z).shape == (4,)
    assert torch.allclose(critic(z), plain(z).mean(dim=1))


def test_small_heads_keep_one_hidden_unit():
    head = DomainHead(8, 2, reduction=16)
    assert head.conv1.weight.shape == (1, 8, 1, 1)
    with pytest.raises(ValueError, match="positive sizes"):
        DomainHead(0, 2)


@pytest.fixture(scope="module")
def seresnet50():
    import timm

    return timm.create_model("seresnet50", pretrained=False, num_classes=4)


@pytest.mark.parametrize(("method", "n_out"), [("ldann", None), ("lwass", "C")])
def test_seresnet50_block_heads_have_table1_shapes(seresnet50, method, n_out):
    taps = default_tap_points(seresnet50, method, "block")
    assert taps == [
        f"layer{s}.{b}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3), strict=True) for b in range(n)
    ]
    model = create_method(method).build_model(seresnet50, taps, input_size=(3, 64, 64))
    expected_channels = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    assert [model.tap_channels[t] for t in taps] == expected_channels
    for tap, channels in zip(taps, expected_channels, strict=True):
        head = model.head(tap)
        n_outputs = channels if n_out == "C" else 2
        assert head.conv1.weight.shape == (channels // 16, channels, 1, 1)
        assert head.conv2.weight.shape == (n_outputs, channels // 16, 1, 1)
        assert head.conv1.bias is None
        assert head.conv2.bias is None
        assert head.conv1.padding == (0, 0)
        assert head.conv2.padding == (0, 0)
        assert len(list(head.parameters())) == 2


def test_seresnet50_stage_heads(seresnet50):
    taps = default_tap_points(seresnet50, "ldann", "stage")
    assert taps == ["layer1", "layer2", "layer3", "layer4"]
    model = create_method("ldann", granularity="stage", n_domains=3).build_model(
        seresnet50, input_size=(3, 64, 64)
    )
    assert model.tap_points == taps
    for tap, channels in zip(taps, (256, 512, 1024, 2048), strict=True):
        assert model.head(tap).conv1.weight.shape == (channels // 16, channels, 1, 1)
        assert model.head(tap).conv2.weight.shape == (3, channels // 16, 1, 1)


def _finite_difference_grad(critic: nn.Module, z: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    grad = torch.zeros_like(z)
    with torch.no_grad():
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                plus, minus = z.clone(), z.clone()
                plus[i, j] += h
                minus[i, j] -= h
                grad[i, j] = (critic(plus)[i] - critic(minus)[i]) / (2 * h)
    return grad


def test_gradient_penalty_matches_finite_differences():
    torch.manual_seed(0)
    critic = DomainHead(6, 6, reduction=2, scalar_output=True).double()
    z_src, z_tgt = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    eps = torch.rand(5, dtype=torch.float64)
    z_mix = eps[:, None] * z_src + (1 - eps[:, None]) * z_tgt
    grad = _finite_difference_grad(critic, z_mix)
    expected = ((grad.norm(dim=1) - 1) ** 2).mean()
    penalty = gradient_penalty(critic, z_src, z_tgt, eps=eps)
    assert penalty.dtype == torch.float64
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradient_penalty_reaches_critic_weights_and_pairs_unequal_batches():
    critic = DomainHead(4, 4, reduction=1, scalar_output=True)
    penalty = gradient_penalty(critic, torch.randn(6, 4), torch.randn(3, 4))
    penalty.backward()
    assert critic.conv1.weight.grad is not None
    assert critic.conv1.weight.grad.abs().sum() > 0


def test_gradient_penalty_is_float32_under_bf16_autocast():
    torch.manual_seed(0)
    critic = DomainHead(16, 16, reduction=4, scalar_output=True)
    z_src, z_tgt = torch.randn(8, 16), torch.randn(8, 16)
    eps = torch.rand(8)
    reference = gradient_penalty(critic, z_src, z_tgt, eps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = gradient_penalty(critic, z_src.bfloat16(), z_tgt.bfloat16(), eps)
    assert penalty.dtype == torch.float32
    assert penalty.item() == pytest.approx(reference.item(), rel=2e-2)


def test_stacked_heads_match_one_by_one():
    torch.manual_seed(0)
    heads = [DomainHead(32, 32, reduction=8, scalar_output=True) for _ in range(3)]
    assert len({h.shape_key for h in heads}) == 1
    z = torch.randn(3, 5, 32)
    stacked = DomainHead.forward_stacked(heads, z)
    assert stacked.shape == (3, 5)
    for g, head in enumerate(heads):
        assert torch.allclose(stacked[g], head(z[g]), atol=1e-6)
    classifiers = [DomainHead(32, 2, reduction=8) for _ in range(2)]
    assert DomainHead.forward_stacked(classifiers, z[:2]).shape == (2, 5, 2)


def test_grouped_critic_objective_matches_single_critics():
    torch.manual_seed(0)
    heads = [DomainHead(16, 16, reduction=4, scalar_output=True) for _ in range(3)]
    z_src, z_tgt = torch.randn(3, 6, 16), torch.randn(3, 4, 16)
    eps = torch.rand(3, 4)
    estimates, penalties = critic_objective(
        lambda z: DomainHead.forward_stacked(heads, z), z_src, z_tgt, eps
    )
    assert estimates.shape == penalties.shape == (3,)
    for g, head in enumerate(heads):
        estimate, penalty = critic_objective(head, z_src[g], z_tgt[g], eps[g])
        assert estimates[g].item() == pytest.approx(estimate.item(), abs=1e-6)
        assert penalties[g].item() == pytest.approx(penalty.item(), rel=1e-5)
        assert estimate.item() == pytest.approx(
            (head(z_src[g]).mean() - head(z_tgt[g]).mean()).item(), abs=1e-6
        )
