"""WGAN-GP gradient penalty (Gulrajani et al. 2017) for the L-WASS critics."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pathda.errors import ConfigError

Critic = Callable[[torch.Tensor], torch.Tensor]
"""Maps ``[..., n, C']`` features to ``[..., n]`` critic values, each sample on its own."""


def _full_precision(z: torch.Tensor) -> torch.Tensor:
    # bf16/fp16 have too few mantissa bits for a gradient-of-gradient; float64 stays float64.
    return z if z.dtype in (torch.float32, torch.float64) else z.float()


def critic_objective(
    critic: Critic,
    z_src: torch.Tensor,
    z_tgt: torch.Tensor,
    eps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wasserstein estimate and gradient penalty of a critic, from a single critic forward.

    The critic must act on each sample independently (no BatchNorm), which lets source,
    target and interpolates share one forward pass. Runs in float32 (float64 if given)
    with autocast disabled, so it is correct inside a ``torch.autocast`` region; the double
    backward uses ``create_graph=True`` so the penalty's gradient reaches the critic's
    weights. Inputs are detached: this is the critic's objective, not the features'.
    A leading group dimension G evaluates G critics at once (see
    ``DomainHead.forward_stacked``); each gets its own interpolation weights.

    Args:
        critic: Maps ``[(G,) n, C']`` to ``[(G,) n]`` critic values.
        z_src: ``[(G,) n_s, C']`` squeezed source features.
        z_tgt: ``[(G,) n_t, C']`` squeezed target features; the first ``m = min(n_s, n_t)``
            of each are paired for the interpolates.
        eps: ``[(G,) m]`` interpolation weights in [0, 1]; drawn from U[0, 1] when omitted.

    Returns:
        ``(mean D(z_s) - mean D(z_t), mean((||grad_z D(z_b)||_2 - 1)^2))``, scalars (or
        ``[G]``), with ``z_b = eps z_s + (1 - eps) z_t`` (Algorithm 1, lines 6-7).
    """
    n_src, n_tgt = z_src.shape[-2], z_tgt.shape[-2]
    m = min(n_src, n_tgt)
    if m == 0:
        raise ConfigError("gradient penalty needs at least one source and one target sample")
    z_src, z_tgt = _full_precision(z_src.detach()), _full_precision(z_tgt.detach())
    if eps is None:
        eps = torch.rand((*z_src.shape[:-2], m), device=z_src.device, dtype=z_src.dtype)
    eps = eps.to(z_src)[..., None]
    with torch.autocast(device_type=z_src.device.type, enabled=False):
        z_mix = eps * z_src[..., :m, :] + (1.0 - eps) * z_tgt[..., :m, :]
        z_mix.requires_grad_(True)
        values = critic(torch.cat([z_src, z_tgt, z_mix], dim=-2))
        estimate = values[..., :n_src].mean(-1) - values[..., n_src : n_src + n_tgt].mean(-1)
        (grad,) = torch.autograd.grad(values[..., n_src + n_tgt :].sum(), z_mix, create_graph=True)
        penalty = ((grad.norm(2, dim=-1) - 1.0) ** 2).mean(-1)
    return estimate, penalty


def gradient_penalty(
    critic: Critic,
    z_src: torch.Tensor,
    z_tgt: torch.Tensor,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mean((||grad_z D(z_b)||_2 - 1)^2)`` at interpolates ``z_b`` (see :func:`critic_objective`).

    Args:
        critic: Maps ``[n, C']`` to ``[n]`` critic values (e.g. a critic ``DomainHead``).
        z_src: ``[n_s, C']`` squeezed source features.
        z_tgt: ``[n_t, C']`` squeezed target features.
        eps: ``[min(n_s, n_t)]`` interpolation weights; U[0, 1] when omitted.

    Returns:
        Scalar penalty tensor (differentiable w.r.t. the critic's weights).
    """
    return critic_objective(critic, z_src, z_tgt, eps)[1]
