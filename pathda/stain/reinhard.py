"""Reinhard colour normalisation (LAB mean/std matching), batched in torch.

E. Reinhard et al., "Color transfer between images", IEEE CG&A 2001, as staintools'
``ReinhardColorNormalizer``: in OpenCV's 8-bit LAB, rescaled to L in [0, 100] and a, b centred
on 0, each channel of a tile is shifted and scaled so its mean and standard deviation become the
reference's; the result is truncated back to 8-bit LAB and converted to RGB. The LAB
conversions are bit-exact with OpenCV's and the arithmetic follows staintools' float32/float64
steps, so results match staintools to the grey level.
"""

from __future__ import annotations

import numpy as np
import torch

from pathda.errors import ConfigError
from pathda.stain.base import check_shape
from pathda.stain.batched import BatchedStainNormaliser, SourceStats
from pathda.stain.opencv_lab import lab_u8_to_rgb, lightness_below, rgb_to_lab_u8

_L_SCALE = 2.55  # staintools: 8-bit L / 2.55 is L* in [0, 100]
_AB_OFFSET = 128.0


def _level_values(device: torch.device) -> torch.Tensor:
    """``(3, 256)`` float64: staintools' float32 channel value of each 8-bit LAB level.

    staintools computes ``L / 2.55`` in float32 (numpy's in-place division) and ``a - 128``,
    ``b - 128`` exactly; widening to float64 afterwards keeps those float32 values.
    """
    levels = torch.arange(256, dtype=torch.float32, device=device)
    scale = torch.tensor(_L_SCALE, dtype=torch.float32, device=device)
    return torch.stack([levels / scale, levels - _AB_OFFSET, levels - _AB_OFFSET]).double()


def _level_index(lab: torch.Tensor) -> torch.Tensor:
    """Flat index ``768 * image + 256 * channel + level`` of uint8 LAB ``(N, ..., 3)``."""
    base = torch.arange(lab.shape[0], device=lab.device, dtype=torch.int32) * 768
    channel = torch.arange(3, device=lab.device, dtype=torch.int32) * 256
    view = (-1,) + (1,) * (lab.dim() - 2) + (1,)
    return lab.int() + channel + base.view(view)


def lab_histograms(lab: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 256)`` pixel counts of each 8-bit LAB level, per image and channel."""
    index = _level_index(lab).reshape(-1)
    return torch.bincount(index, minlength=lab.shape[0] * 768).view(-1, 3, 256)


def lab_mean_std(histograms: torch.Tensor) -> torch.Tensor:
    """Channel means and population standard deviations of staintools' LAB values.

    Computed from level histograms: LAB holds 256 levels per channel, so this equals summing
    the pixels (as ``cv2.meanStdDev`` does, in float64) at a fraction of the cost.

    Args:
        histograms: ``(N, 3, 256)`` level counts.

    Returns:
        ``(N, 2, 3)`` float64: means in row 0, standard deviations in row 1.
    """
    counts = histograms.double()
    values = _level_values(histograms.device)
    total = counts.sum(-1).clamp(min=1)
    mean = (counts * values).sum(-1) / total
    var = (counts * values * values).sum(-1) / total - mean * mean  # cv2.meanStdDev's formula
    return torch.stack([mean, var.clamp(min=0).sqrt()], dim=1)


class ReinhardNormaliser(BatchedStainNormaliser):
    """Reinhard LAB statistics matching in batched torch (CPU or CUDA), matching staintools.

    Statistics use all pixels of a tile, as staintools does; the tissue fraction (from the
    lightness histogram) only decides whether a tile is mostly background and left unchanged.

    Args:
        luminosity_threshold: tissue is OpenCV lightness L/255 below this (staintools: 0.8).
        min_tissue_fraction: tiles with less tissue are left unchanged (fallback).
        min_std: tiles with a channel standard deviation below this (flat tiles) are left
            unchanged; in LAB units (L* 0-100, a*, b*).
    """

    method = "reinhard"

    def __init__(
        self,
        *,
        luminosity_threshold: float = 0.8,
        min_tissue_fraction: float = 0.1,
        min_std: float = 1e-3,
    ) -> None:
        if min_std <= 0:
            raise ConfigError(f"min_std must be > 0, got {min_std}")
        super().__init__(
            luminosity_threshold=luminosity_threshold,
            min_tissue_fraction=min_tissue_fraction,
            min_std=min_std,
        )
        self.target_stats: np.ndarray | None = None  # (2, 3): LAB means, LAB stds

    def _fit(self, pixels: np.ndarray) -> None:
        stats = self._stats(rgb_to_lab_u8(torch.from_numpy(pixels)))
        if not bool(stats["valid"][0]):
            raise ConfigError(
                "the reference image is mostly background or flat: choose a tissue region"
            )
        self.target_stats = stats["lab_stats"][0].numpy()
        self._clear_tensor_cache()

    def _params(self) -> dict[str, np.ndarray]:
        return {"lab_mean": self.target_stats[0], "lab_std": self.target_stats[1]}

    def _load_params(self, params: dict[str, np.ndarray]) -> None:
        mean = check_shape(params["lab_mean"], "lab_mean", (3,))
        std = check_shape(params["lab_std"], "lab_std", (3,))
        if (std <= 0).any():
            raise ValueError("lab_std must be positive")
        self.target_stats = np.stack([mean, std])
        self._clear_tensor_cache()

    def _stats(self, lab: torch.Tensor) -> SourceStats:
        return self._stats_from_histograms(lab_histograms(lab))

    def _stats_from_histograms(self, histograms: torch.Tensor) -> SourceStats:
        dark = lightness_below(torch.arange(256, device=histograms.device), self._threshold)
        tissue = histograms[:, 0, dark].sum(-1)
        pixels = histograms[:, 0].sum(-1)
        stats = lab_mean_std(histograms)
        valid = tissue >= self.options["min_tissue_fraction"] * pixels
        valid &= (stats[:, 1] >= self.options["min_std"]).all(-1)
        return {"lab_stats": stats, "valid": valid}

    @property
    def _threshold(self) -> float:
        return self.options["luminosity_threshold"]

    def estimate_source(self, tiles: torch.Tensor) -> SourceStats:
        """LAB channel means and standard deviations ``(N, 2, 3)`` and validity of each tile."""
        return self._stats(rgb_to_lab_u8(tiles))

    def apply_source(self, tiles: torch.Tensor, source: SourceStats) -> torch.Tensor:
        """Match each tile's LAB statistics to the reference's, given the tile's statistics."""
        return self._match(rgb_to_lab_u8(tiles), source)

    def _level_tables(self, source: SourceStats, device: torch.device) -> torch.Tensor:
        """``(N, 3, 256)`` uint8: each tile's output LAB level for every input level.

        staintools, per level: ((x - mean) * (target_std / std) + target_mean) in float64,
        then L * 2.55, a + 128, b + 128, clip, truncate. The output depends on the level only.
        """
        target = self._tensor("target_stats", self.target_stats, source["valid"], torch.float64)
        stats = source["lab_stats"]
        ratio = torch.where(source["valid"][:, None], target[1] / stats[:, 1], 1.0)
        values = _level_values(device)
        mapped = (values - stats[:, 0, :, None]) * ratio[..., None] + target[0][:, None]
        scale = torch.tensor([_L_SCALE, 1.0, 1.0], dtype=torch.float64, device=device)
        offset = torch.tensor([0.0, _AB_OFFSET, _AB_OFFSET], dtype=torch.float64, device=device)
        return (mapped * scale[:, None] + offset[:, None]).clamp_(0, 255).to(torch.uint8)

    def _match(self, lab: torch.Tensor, source: SourceStats) -> torch.Tensor:
        table = self._level_tables(source, lab.device)
        index = _level_index(lab)
        out = table.reshape(-1).index_select(0, index.reshape(-1)).view(lab.shape)
        return lab_u8_to_rgb(out)

    def _transform_chunk(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lab = rgb_to_lab_u8(tiles)  # converted once for both statistics and matching
        source = self._stats(lab)
        return self._match(lab, source), ~source["valid"]

    def _transform_batch(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tiles.device.type != "cpu":
            return super()._transform_batch(tiles)
        # CPU: OpenCV's own LAB conversions (the reference staintools uses; SIMD, ~15x the
        # exact torch tables) and numba histograms / level look-ups; same statistics code.
        import cv2

        from pathda.stain.cpu_kernels import apply_level_tables, count_lab_levels, run_over_tiles

        n = tiles.shape[0]
        rgb = tiles.numpy().reshape(-1, tiles.shape[-2], 3)  # tiles stacked as one image
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(n, -1, 3)
        histograms = np.empty((n, 3, 256), dtype=np.int64)
        workers = torch.get_num_threads()
        run_over_tiles(count_lab_levels, workers, lab, histograms)
        source = self._stats_from_histograms(torch.from_numpy(histograms))
        tables = self._level_tables(source, tiles.device).numpy()
        mapped = np.empty_like(lab)
        run_over_tiles(apply_level_tables, workers, lab, tables, mapped)
        out = cv2.cvtColor(mapped.reshape(rgb.shape), cv2.COLOR_LAB2RGB)
        return torch.from_numpy(out).view(tiles.shape), ~source["valid"]
