"""Shared machinery of the batched torch normalisers: estimate source statistics, then apply.

Splitting ``transform`` into ``estimate_source`` (per-image statistics: stain matrix and
concentration percentiles, or LAB mean/std) and ``apply_source`` lets a large image be
normalised with one estimate for the whole image while its pixels are processed block by block.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch

from pathda.errors import ConfigError
from pathda.stain.base import StainNormaliser, Tiles, _as_batch

SourceStats = dict[str, torch.Tensor]
"""Per-image statistics, each ``(N, ...)``; always holds ``"valid"``, a bool ``(N,)``."""

MAX_CHUNK_PIXELS = 1 << 23
"""Pixels processed at once (128 tiles of 256 x 256): bounds memory, results are unchanged."""

MAX_ESTIMATE_PIXELS = 1 << 22
"""Pixels used to estimate one large image's statistics (a regular grid subsample above it)."""


class BatchedStainNormaliser(StainNormaliser):
    """A normaliser implemented in pure tensor ops, batched over tiles, on CPU or CUDA.

    Options shared by every batched method:
        luminosity_threshold: pixels whose OpenCV 8-bit lightness L/255 is below this are
            tissue (staintools' rule; 0.8).
        min_tissue_fraction: tiles with fewer tissue pixels than this fraction are left
            unchanged and counted as fallbacks.
    """

    def __init__(self, *, luminosity_threshold: float, min_tissue_fraction: float, **options: Any):
        if not 0.0 < luminosity_threshold <= 1.0:
            raise ConfigError(f"luminosity_threshold must be in (0, 1], got {luminosity_threshold}")
        if not 0.0 <= min_tissue_fraction <= 1.0:
            raise ConfigError(f"min_tissue_fraction must be in [0, 1], got {min_tissue_fraction}")
        super().__init__(
            luminosity_threshold=luminosity_threshold,
            min_tissue_fraction=min_tissue_fraction,
            **options,
        )
        self._tensors: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    @abstractmethod
    def estimate_source(self, tiles: torch.Tensor) -> SourceStats:
        """Per-tile statistics of uint8 ``(N, H, W, 3)`` tiles (or ``(N, P, 3)`` pixels)."""

    @abstractmethod
    def apply_source(self, tiles: torch.Tensor, source: SourceStats) -> torch.Tensor:
        """Normalise uint8 ``(N, H, W, 3)`` tiles with given per-tile statistics."""

    def _transform_batch(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_chunk = max(1, MAX_CHUNK_PIXELS // max(1, tiles.shape[1] * tiles.shape[2]))
        outs, fallbacks = [], []
        for chunk in torch.split(tiles, per_chunk):
            out, fallback = self._transform_chunk(chunk)
            outs.append(out)
            fallbacks.append(fallback)
        return torch.cat(outs), torch.cat(fallbacks)

    def _transform_chunk(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised tiles and fallback flags; subclasses may fuse the two steps."""
        source = self.estimate_source(tiles)
        return self.apply_source(tiles, source), ~source["valid"]

    def transform_image(self, image: Tiles, block_px: int = 1024) -> Tiles:
        """Normalise a large image with one estimate, applied in ``block_px`` square blocks.

        The statistics come from the whole image (a regular subsample of at most
        ``MAX_ESTIMATE_PIXELS`` pixels), so block seams cannot appear.
        """
        self._require_fitted()
        batch, restore = _as_batch(image)
        if batch.shape[0] != 1:
            raise ValueError("transform_image takes one (H, W, 3) image; use transform for tiles")
        full = batch[0]
        stride = max(1, int(np.ceil(np.sqrt(full.shape[0] * full.shape[1] / MAX_ESTIMATE_PIXELS))))
        source = self.estimate_source(full[::stride, ::stride].reshape(1, -1, 1, 3))
        if not bool(source["valid"][0]):
            self.fallback_count += 1
            return restore(batch)
        out = torch.empty_like(batch)
        for y in range(0, full.shape[0], block_px):
            for x in range(0, full.shape[1], block_px):
                block = batch[:, y : y + block_px, x : x + block_px]
                out[:, y : y + block_px, x : x + block_px] = self.apply_source(block, source)
        return restore(out)

    def _tensor(self, name: str, value: np.ndarray, like: torch.Tensor, dtype: torch.dtype):
        """``value`` as a tensor on ``like``'s device, cached per (name, device, dtype)."""
        key = (name, like.device, dtype)
        if key not in self._tensors:
            self._tensors[key] = torch.as_tensor(value, dtype=dtype, device=like.device)
        return self._tensors[key]

    def _clear_tensor_cache(self) -> None:
        self._tensors.clear()

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers unpickle the normaliser; device copies are rebuilt on demand.
        state = self.__dict__.copy()
        state["_tensors"] = {}
        return state
