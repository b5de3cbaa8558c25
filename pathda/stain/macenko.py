"""Macenko stain normalisation, batched in torch.

M. Macenko et al., "A method for normalizing histology slides for quantitative analysis",
ISBI 2009, as implemented by staintools' ``MacenkoStainExtractor``: the two leading eigenvectors
of the tissue pixels' OD covariance span the stain plane; the stains are the directions at the
1st and 99th percentiles of the pixels' angle in that plane.

Background is excluded the way staintools does it, with OpenCV's lightness (L/255 < 0.8). The
paper's own rule, dropping pixels with any OD below beta = 0.15, is available as ``od_threshold``
(default 0, i.e. off, which keeps agreement with staintools).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pathda.errors import ConfigError
from pathda.stain.opencv_lab import _dark_y_limit as dark_y_limit
from pathda.stain.opencv_lab import _device_tables as lab_tables
from pathda.stain.optical_density import (
    _od_table,
    hematoxylin_first,
    masked_quantile,
    normalise_rows,
    spans_plane,
    tissue_covariance,
)
from pathda.stain.stain_separation import StainSeparationNormaliser


def macenko_stain_matrix(
    od: torch.Tensor, tissue: torch.Tensor, angular_percentile: float = 99.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Macenko stain matrices of a batch of tiles.

    Args:
        od: ``(N, P, 3)`` optical densities.
        tissue: ``(N, P)`` bool, the pixels to estimate from.
        angular_percentile: upper angle percentile; the lower one is ``100 - it``.

    Returns:
        ``(N, 2, 3)`` stain matrices (unit rows, haematoxylin first) and ``(N,)`` bool, False
        where the tile has too few tissue pixels or its OD spans no plane (one stain).
    """
    cov = tissue_covariance(od, tissue)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    plane = evecs[..., [2, 1]]  # (N, 3, 2): principal, then second eigenvector
    # eigh's signs are arbitrary; staintools makes each vector's red component non-negative.
    plane = plane * torch.where(plane[:, :1, :] < 0, -1.0, 1.0).to(od.dtype)
    coords = od @ plane  # (N, P, 2)
    angle = torch.atan2(coords[..., 1], coords[..., 0])
    lowest = masked_quantile(angle, tissue, 1.0 - angular_percentile / 100.0)
    highest = masked_quantile(angle, tissue, angular_percentile / 100.0)
    ends = torch.stack([lowest, highest], dim=1)  # (N, 2)
    directions = torch.stack([torch.cos(ends), torch.sin(ends)], dim=-1)  # (N, 2 stains, 2)
    stains = directions @ plane.transpose(1, 2)  # (N, 2, 3)
    ok = (tissue.sum(1) >= 2) & spans_plane(evals)
    return normalise_rows(hematoxylin_first(stains)), ok


class MacenkoNormaliser(StainSeparationNormaliser):
    """Macenko normalisation in batched torch (CPU or CUDA), matching staintools.

    Args:
        luminosity_threshold: tissue is OpenCV lightness L/255 below this (staintools: 0.8).
        min_tissue_fraction: tiles with less tissue are left unchanged (fallback).
        regulariser: L1 penalty of the concentration lasso (staintools: 0.01).
        concentration_percentile: concentration percentile matched to the reference's (99).
        min_stain_angle_deg: tiles whose two stain vectors are closer are left unchanged.
        max_concentration_scale: tiles needing a larger concentration scaling (a stain
            essentially absent) are left unchanged.
        angular_percentile: stain directions at these angle percentiles (staintools: 99, 1).
        od_threshold: also drop pixels with any OD channel at or below this (paper's beta =
            0.15); 0 keeps staintools' rule alone.
    """

    method = "macenko"

    def __init__(
        self,
        *,
        luminosity_threshold: float = 0.8,
        min_tissue_fraction: float = 0.1,
        regulariser: float = 0.01,
        concentration_percentile: float = 99.0,
        min_stain_angle_deg: float = 5.0,
        max_concentration_scale: float = 10.0,
        angular_percentile: float = 99.0,
        od_threshold: float = 0.0,
    ) -> None:
        if not 50 < angular_percentile <= 100:
            raise ConfigError(f"angular_percentile must be in (50, 100], got {angular_percentile}")
        if od_threshold < 0 or not math.isfinite(od_threshold):
            raise ConfigError(f"od_threshold must be >= 0, got {od_threshold}")
        super().__init__(
            luminosity_threshold=luminosity_threshold,
            min_tissue_fraction=min_tissue_fraction,
            regulariser=regulariser,
            concentration_percentile=concentration_percentile,
            min_stain_angle_deg=min_stain_angle_deg,
            max_concentration_scale=max_concentration_scale,
            angular_percentile=angular_percentile,
            od_threshold=od_threshold,
        )

    def _transform_batch(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tiles.device.type != "cpu":
            return super()._transform_batch(tiles)
        # CPU: one fused numba pass per stage and tile (~10x the torch path, same results).
        from pathda.stain.cpu_kernels import macenko_tiles, run_over_tiles

        rgb = tiles.reshape(tiles.shape[0], -1, 3).numpy()
        out = np.empty_like(rgb)
        fallback = np.empty(len(rgb), dtype=bool)
        opts = self.options
        args = (
            _od_table(tiles.device, torch.float32).numpy(),
            lab_tables(tiles.device)["xyz_shares"][1].numpy(),
            dark_y_limit(float(opts["luminosity_threshold"])),
            np.asarray(self.stain_matrix, dtype=np.float64),
            np.asarray(self.max_concentrations, dtype=np.float64),
            float(opts["min_tissue_fraction"]),
            float(opts["od_threshold"]),
            opts["angular_percentile"] / 100.0,
            self._quantile,
            float(opts["regulariser"]),
            math.cos(math.radians(opts["min_stain_angle_deg"])),
            float(opts["max_concentration_scale"]),
        )
        run_over_tiles(macenko_tiles, torch.get_num_threads(), rgb, out, fallback, args=args)
        return torch.from_numpy(out).view(tiles.shape), torch.from_numpy(fallback)

    def _source_stain_matrix(
        self, od: torch.Tensor, tissue: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.options["od_threshold"] > 0:
            tissue = tissue & (od > self.options["od_threshold"]).all(-1)
        return macenko_stain_matrix(od, tissue, self.options["angular_percentile"])
