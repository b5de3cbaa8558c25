"""Domain classifier / Wasserstein critic attached to one tapped layer (paper, Table 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def squeeze(features: torch.Tensor) -> torch.Tensor:
    """The paper's ``f_tr``: global average pool of a feature map to one vector per sample.

    Args:
        features: ``[B, C', H', W']`` feature map (pooled over H', W') or ``[B, C']``
            features (returned as they are, e.g. a Linear layer's output).

    Returns:
        ``[B, C']``.
    """
    if features.ndim == 4:
        return features.mean(dim=(2, 3))
    if features.ndim == 2:
        return features
    raise ValueError(
        f"cannot squeeze a tapped feature of shape {tuple(features.shape)}; "
        "tap a module whose output is [B, C, H, W] or [B, C]"
    )


class DomainHead(nn.Module):
    """Table 1 head: squeeze, 1x1 conv C'->C'/r, ReLU, 1x1 conv C'/r->N' (no bias, no padding).

    As an L-(DANN) domain classifier ``n_outputs`` is the number of domains and the output
    is ``[B, N]`` logits. As an L-WASS critic the paper sets ``N' = C'``; a Wasserstein
    critic must however give one real number per sample (its expectation difference over
    the two domains estimates W1, and the gradient penalty constrains the gradient of a
    scalar), so with ``scalar_output=True`` the head returns the mean of its ``C'``
    outputs, ``[B]``. The mean is itself a linear map, so the critic remains the paper's
    network followed by a fixed averaging layer.

    Args:
        in_channels: C', channels of the tapped feature.
        n_outputs: N' (number of domains, or C' for the critic).
        reduction: r; the hidden width is ``max(1, C' // r)``.
        scalar_output: Average the N' outputs to one critic value per sample.
    """

    def __init__(
        self, in_channels: int, n_outputs: int, reduction: int = 16, scalar_output: bool = False
    ) -> None:
        super().__init__()
        if in_channels < 1 or n_outputs < 1 or reduction < 1:
            raise ValueError(
                f"DomainHead needs positive sizes, got C'={in_channels}, N'={n_outputs}, "
                f"r={reduction}"
            )
        hidden = max(1, in_channels // reduction)
        self.in_channels = in_channels
        self.n_outputs = n_outputs
        self.scalar_output = scalar_output
        self.conv1 = nn.Conv2d(in_channels, hidden, kernel_size=1, padding=0, bias=False)
        self.conv2 = nn.Conv2d(hidden, n_outputs, kernel_size=1, padding=0, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map ``[B, C', H', W']`` or ``[B, C']`` to ``[B, N']`` logits or ``[B]`` critic values."""
        # A 1x1 conv on a 1x1 map is a matrix product: F.linear on the conv weights is the same
        # maths without conv2d's per-call overhead, and its double backward (gradient
        # penalty) is cheap.
        z = squeeze(features)
        hidden = F.relu(F.linear(z, self.conv1.weight.flatten(1)))
        out = F.linear(hidden, self.conv2.weight.flatten(1))
        return out.mean(dim=1) if self.scalar_output else out

    @property
    def shape_key(self) -> tuple[int, int, int, bool]:
        """Heads with equal keys can be evaluated together by :meth:`forward_stacked`."""
        hidden = self.conv1.weight.shape[0]
        return (self.in_channels, hidden, self.n_outputs, self.scalar_output)

    @staticmethod
    def forward_stacked(heads: Sequence[DomainHead], z: torch.Tensor) -> torch.Tensor:
        """Evaluate G same-shaped heads, each on its own squeezed features, in one go.

        Same maths as :meth:`forward` but batched matrix products over the group: a
        handful of kernels instead of G times as many (the L-WASS critic loop runs every
        critic ``n_critic`` times per step, so launches add up on a GPU).

        Args:
            heads: G heads with equal :attr:`shape_key`.
            z: ``[G, n, C']`` squeezed features, ``z[g]`` for ``heads[g]``.

        Returns:
            ``[G, n, N']`` logits, or ``[G, n]`` critic values.
        """
        w1 = torch.stack([h.conv1.weight.flatten(1) for h in heads])  # [G, C'/r, C']
        w2 = torch.stack([h.conv2.weight.flatten(1) for h in heads])  # [G, N', C'/r]
        hidden = F.relu(torch.bmm(z, w1.transpose(1, 2)))
        out = torch.bmm(hidden, w2.transpose(1, 2))
        return out.mean(dim=2) if heads[0].scalar_output else out

    def extra_repr(self) -> str:
        return f"scalar_output={self.scalar_output}"


def group_by_shape(heads: Mapping[str, DomainHead]) -> list[tuple[list[str], list[DomainHead]]]:
    """Taps grouped by their heads' :attr:`~DomainHead.shape_key`, one group per stacked call.

    One group per distinct shape, in order of first appearance, taps in their given order
    within a group (4 groups for the 16 SE-ResNet-50 blocks, 1 for the 12 blocks of a ViT).

    Args:
        heads: Tap name -> its head, in tap order.

    Returns:
        ``[(taps, heads), ...]`` with ``heads[i]`` the head of ``taps[i]``.
    """
    groups: dict[tuple, list[str]] = {}
    for tap, head in heads.items():
        groups.setdefault(head.shape_key, []).append(tap)
    return [(taps, [heads[t] for t in taps]) for taps in groups.values()]
