"""Gradient reversal layer (Ganin & Lempitsky 2015) and its coefficient schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

from pathda.errors import ConfigError

GRL_SCHEDULES = ("constant", "ganin")


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        # view_as keeps autograd from treating the output as the (unchanged) input itself.
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output.neg() * ctx.coeff, None


class GradientReversal(nn.Module):
    """Identity in the forward pass; multiplies the gradient by ``-coeff`` in the backward pass.

    The feature extractor upstream of this layer therefore *maximises* the loss that the
    domain head downstream minimises. ``coeff`` is a plain attribute so the training loop
    can change it every step (see :func:`grl_coefficient`).

    Args:
        coeff: Gradient scale; the paper uses 1 throughout (no annealing).
    """

    def __init__(self, coeff: float = 1.0) -> None:
        super().__init__()
        self.coeff = float(coeff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ReverseGradient.apply(x, self.coeff)

    def extra_repr(self) -> str:
        return f"coeff={self.coeff}"


def grl_coefficient(schedule: str, progress: float, constant: float = 1.0) -> float:
    """Gradient-reversal coefficient for the current point in training.

    Args:
        schedule: ``"constant"`` (the paper: ``constant`` throughout, no annealing) or
            ``"ganin"`` (DANN's ramp ``2 / (1 + exp(-10 p)) - 1`` from 0 to ~1, times ``constant``).
        progress: Fraction of training done, ``p`` in [0, 1] (clipped).
        constant: Overall scale.

    Returns:
        The coefficient to set on :class:`GradientReversal`.

    Examples:
        >>> grl_coefficient("constant", 0.3)
        1.0
        >>> round(grl_coefficient("ganin", 0.0), 6)
        0.0
    """
    p = min(max(float(progress), 0.0), 1.0)
    if schedule == "constant":
        return float(constant)
    if schedule == "ganin":
        return float(constant) * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)
    raise ConfigError(f"unknown GRL schedule {schedule!r}; use one of {', '.join(GRL_SCHEDULES)}")
