"""What happens to a uint8 patch batch before the model, identically in training and inference."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

StainTransform = Callable[[torch.Tensor], torch.Tensor]
"""(B, 3, H, W) uint8 -> same shape uint8, on the model's device."""


@dataclass(frozen=True)
class InputPipeline:
    """What happens to a uint8 patch batch before the model, exactly as in training.

    Attributes:
        mean: per-channel mean of float images in [0, 1].
        std: per-channel standard deviation (> 0).
        stain: batched stain normaliser on the device, or None.
    """

    mean: Sequence[float]
    std: Sequence[float]
    stain: StainTransform | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.stain is not None:
            batch = self.stain(batch)
        scale, shift = self._affine(batch.device)
        return batch.float() * scale + shift  # == (batch / 255 - mean) / std

    def _affine(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Made once per device: a fresh host->device copy every batch would wait for the
        # queued kernels and stall the pipeline.
        cache = self.__dict__.setdefault("_cache", {})
        if device not in cache:
            mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
            cache[device] = ((1 / (255.0 * std)).to(device), (-mean / std).to(device))
        return cache[device]


def stain_transform(params: Mapping[str, Any] | None) -> StainTransform | None:
    """A fitted stain normaliser (``to_dict()`` form) as a (B, 3, H, W) uint8 transform."""
    if params is None:
        return None
    from pathda.stain import normaliser_from_dict

    normaliser = normaliser_from_dict(params)

    def transform(batch: torch.Tensor) -> torch.Tensor:
        # Normalisers take (N, H, W, 3) tiles on any device and return the same layout.
        tiles = batch.permute(0, 2, 3, 1).contiguous()
        return normaliser.transform(tiles).permute(0, 3, 1, 2)

    return transform
