"""Stain-separation normalisation (Macenko, Vahadane): OD -> stains -> concentrations -> RGB.

Per tile: optical density, a 2 x 3 stain matrix (method-specific), non-negative lasso
concentrations of all pixels, each stain's 99th-percentile concentration scaled to the
reference's, and reconstruction with the reference stain matrix. This is staintools'
``StainNormalizer`` (without its optional brightness standardisation), batched over tiles.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import numpy as np
import torch

from pathda.errors import ConfigError
from pathda.stain.base import check_shape
from pathda.stain.batched import BatchedStainNormaliser, SourceStats
from pathda.stain.opencv_lab import tissue_mask
from pathda.stain.optical_density import (
    masked_quantile,
    od_to_rgb,
    rgb_to_od,
    stain_concentrations,
)


class StainSeparationNormaliser(BatchedStainNormaliser):
    """Base of the stain-matrix normalisers; subclasses estimate the stain matrix.

    Options (besides the batched ones):
        regulariser: L1 penalty of the concentration lasso (staintools: 0.01).
        concentration_percentile: percentile of each stain's concentration matched to the
            reference's (staintools: 99).
        min_stain_angle_deg: tiles whose two estimated stain vectors are closer than this angle
            (one stain only, or noise) are left unchanged.
        max_concentration_scale: tiles whose percentile concentration of a stain must be scaled
            by more than this (or less than its inverse) to match the reference are left
            unchanged: that stain is essentially absent and scaling would amplify noise
            (staintools has no such guard; real tiles need ~0.5-2).
    """

    def __init__(
        self,
        *,
        luminosity_threshold: float,
        min_tissue_fraction: float,
        regulariser: float,
        concentration_percentile: float,
        min_stain_angle_deg: float,
        max_concentration_scale: float,
        **options: Any,
    ) -> None:
        if regulariser < 0:
            raise ConfigError(f"regulariser must be >= 0, got {regulariser}")
        if max_concentration_scale <= 1:
            raise ConfigError(f"max_concentration_scale must be > 1, got {max_concentration_scale}")
        if not 50 < concentration_percentile <= 100:
            raise ConfigError(
                f"concentration_percentile must be in (50, 100], got {concentration_percentile}"
            )
        super().__init__(
            luminosity_threshold=luminosity_threshold,
            min_tissue_fraction=min_tissue_fraction,
            regulariser=regulariser,
            concentration_percentile=concentration_percentile,
            min_stain_angle_deg=min_stain_angle_deg,
            max_concentration_scale=max_concentration_scale,
            **options,
        )
        self.stain_matrix: np.ndarray | None = None  # (2, 3) unit rows, haematoxylin first
        self.max_concentrations: np.ndarray | None = None  # (2,) percentile concentrations

    @abstractmethod
    def _source_stain_matrix(
        self, od: torch.Tensor, tissue: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-tile stain matrices ``(N, 2, 3)`` (unit rows, H first) and an ok flag ``(N,)``."""

    def _reference_stain_matrix(self, pixels: np.ndarray) -> np.ndarray:
        """Stain matrix ``(2, 3)`` of uint8 reference pixels ``(1, P, 3)``; float64 by default."""
        rgb = torch.from_numpy(pixels)
        od = rgb_to_od(rgb, torch.float64)
        tissue = tissue_mask(rgb, self.options["luminosity_threshold"])
        stains, ok = self._source_stain_matrix(od, tissue)
        if not bool(ok[0]):
            raise ConfigError(
                "the reference image does not show two distinct stains: choose an H&E "
                "reference with both nuclei and stroma"
            )
        return stains[0].numpy()

    # -- fitting ------------------------------------------------------------------------------

    def _fit(self, pixels: np.ndarray) -> None:
        rgb = torch.from_numpy(pixels)
        tissue = tissue_mask(rgb, self.options["luminosity_threshold"])
        if int(tissue.sum()) < 2:
            raise ConfigError("the reference image has no tissue (all pixels are background)")
        stains = self._reference_stain_matrix(pixels)
        od = rgb_to_od(rgb, torch.float64)
        conc = stain_concentrations(od, torch.from_numpy(stains), self.options["regulariser"])
        max_conc = masked_quantile(conc, None, self._quantile)[0].numpy()
        if not (np.isfinite(max_conc).all() and (max_conc > 0).all()):
            raise ConfigError("the reference image has no measurable stain concentration")
        self.stain_matrix, self.max_concentrations = stains, max_conc
        self._clear_tensor_cache()

    def _params(self) -> dict[str, np.ndarray]:
        return {"stain_matrix": self.stain_matrix, "max_concentrations": self.max_concentrations}

    def _load_params(self, params: dict[str, np.ndarray]) -> None:
        self.stain_matrix = check_shape(params["stain_matrix"], "stain_matrix", (2, 3))
        self.max_concentrations = check_shape(
            params["max_concentrations"], "max_concentrations", (2,)
        )
        self._clear_tensor_cache()

    # -- transforming -------------------------------------------------------------------------

    @property
    def _quantile(self) -> float:
        return self.options["concentration_percentile"] / 100.0

    def _separate(self, tiles: torch.Tensor) -> tuple[SourceStats, torch.Tensor]:
        """Per-tile statistics and the ``(N, P, 3)`` concentrations of all pixels."""
        rgb = tiles.reshape(tiles.shape[0], -1, 3)
        od = rgb_to_od(rgb)
        tissue = tissue_mask(rgb, self.options["luminosity_threshold"])
        fraction = tissue.sum(1) / tissue.shape[1]
        enough = (fraction >= self.options["min_tissue_fraction"]) & (tissue.sum(1) >= 2)
        stains, ok = self._source_stain_matrix(od, tissue)
        cos_angle = (stains[:, 0] * stains[:, 1]).sum(-1).abs()
        distinct = cos_angle < math.cos(math.radians(self.options["min_stain_angle_deg"]))
        valid = enough & ok & distinct & torch.isfinite(stains).all(-1).all(-1)
        # Degenerate tiles get the reference matrix so nothing below divides by ~0.
        stains = torch.where(valid[:, None, None], stains, self._reference(od))
        conc = stain_concentrations(od, stains, self.options["regulariser"])
        max_conc = masked_quantile(conc, None, self._quantile)  # (N, 2)
        ref_max = self._tensor("max_concentrations", self.max_concentrations, conc, conc.dtype)
        limit = self.options["max_concentration_scale"]
        scale = ref_max / max_conc
        valid &= (torch.isfinite(scale) & (scale <= limit) & (scale >= 1 / limit)).all(-1)
        return {"stains": stains, "max_concentrations": max_conc, "valid": valid}, conc

    def _reference(self, like: torch.Tensor) -> torch.Tensor:
        return self._tensor("stain_matrix", self.stain_matrix, like, like.dtype)

    def _reconstruct(
        self, conc: torch.Tensor, source: SourceStats, shape: torch.Size
    ) -> torch.Tensor:
        ref_max = self._tensor("max_concentrations", self.max_concentrations, conc, conc.dtype)
        max_conc = torch.where(source["valid"][:, None], source["max_concentrations"], ref_max)
        # Scaling concentrations by ref/source percentile, folded into the stain matrix.
        target = (ref_max / max_conc)[:, :, None] * self._reference(conc)  # (N, 2, 3)
        return od_to_rgb(conc @ target).view(shape)

    def estimate_source(self, tiles: torch.Tensor) -> SourceStats:
        """Stain matrix, percentile concentrations and validity of each tile."""
        self._require_fitted()
        return self._separate(tiles)[0]

    def apply_source(self, tiles: torch.Tensor, source: SourceStats) -> torch.Tensor:
        """Reconstruct tiles with the reference stains from given per-tile statistics."""
        rgb = tiles.reshape(tiles.shape[0], -1, 3)
        od = rgb_to_od(rgb)
        stains = source["stains"].to(od.dtype)
        conc = stain_concentrations(od, stains, self.options["regulariser"])
        return self._reconstruct(conc, source, tiles.shape)

    def _transform_chunk(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Same as estimate_source + apply_source, without computing concentrations twice.
        source, conc = self._separate(tiles)
        return self._reconstruct(conc, source, tiles.shape), ~source["valid"]
