"""Vahadane stain normalisation: sparse non-negative stain separation, batched in torch.

A. Vahadane et al., "Structure-preserving color normalization and sparse stain separation for
histological images", IEEE TMI 2016. staintools learns each image's 2-atom dictionary with
``spams.trainDL`` (non-negative, L1 penalty 0.1 on the codes, atoms of norm <= 1). Here:

* the reference's stain matrix is learnt exactly as staintools does, with spams, once at fit;
* each tile's stain matrix is learnt in torch, for all tiles at once, by alternating
  minimisation of the same objective: exact per-pixel codes (the closed-form two-stain lasso)
  and one block-coordinate pass over the two atoms, projected onto {d >= 0, ||d|| <= 1} (the
  dictionary update spams itself uses), started from the reference stain matrix and run on a
  regular subsample of each tile's tissue pixels.

Concentrations, percentile scaling and reconstruction are shared with Macenko.
"""

from __future__ import annotations

import numpy as np
import torch

from pathda.errors import ConfigError
from pathda.stain.optical_density import (
    hematoxylin_first,
    normalise_rows,
    spans_plane,
    stain_concentrations,
    tissue_covariance,
)
from pathda.stain.stain_separation import StainSeparationNormaliser


def sparse_nmf_stain_matrix(
    od: torch.Tensor,
    tissue: torch.Tensor,
    init: torch.Tensor,
    lam: float = 0.1,
    iterations: int = 30,
) -> torch.Tensor:
    """Two-stain sparse non-negative dictionary of each tile, by alternating minimisation.

    Minimises ``sum_p 0.5 * ||od_p - c_p @ D||^2 + lam * |c_p|_1`` over ``c >= 0`` and
    ``D >= 0`` with rows of norm <= 1, over each tile's tissue pixels.

    Args:
        od: ``(N, P, 3)`` optical densities.
        tissue: ``(N, P)`` bool, the pixels to learn from.
        init: ``(2, 3)`` or ``(N, 2, 3)`` starting dictionary (non-negative).
        lam: L1 penalty on the codes (staintools: 0.1).
        iterations: alternating code/dictionary steps.

    Returns:
        ``(N, 2, 3)`` stain matrices: unit rows, haematoxylin first.
    """
    weight = tissue.to(od.dtype)[..., None]
    dictionary = init.to(od.dtype).expand(od.shape[0], 2, 3).clone()
    for _ in range(iterations):
        codes = stain_concentrations(od, dictionary, lam).mul_(weight)  # background: no vote
        gram = codes.transpose(1, 2) @ codes  # (N, 2, 2)
        corr = codes.transpose(1, 2) @ od  # (N, 2, 3)
        for k in range(2):
            step = (corr[:, k] - (gram[:, k, :, None] * dictionary).sum(1)) / gram[
                :, k, k, None
            ].clamp(min=1e-12)
            atom = (dictionary[:, k] + step).clamp(min=0)
            atom = atom / torch.linalg.vector_norm(atom, dim=-1, keepdim=True).clamp(min=1.0)
            used = gram[:, k, k, None] > 1e-12  # an unused atom keeps its value
            dictionary[:, k] = torch.where(used, atom, dictionary[:, k])
    return normalise_rows(hematoxylin_first(dictionary))


class VahadaneNormaliser(StainSeparationNormaliser):
    """Vahadane normalisation: spams reference at fit, batched torch NMF per tile.

    Args:
        luminosity_threshold: tissue is OpenCV lightness L/255 below this (staintools: 0.8).
        min_tissue_fraction: tiles with less tissue are left unchanged (fallback).
        regulariser: L1 penalty of the concentration lasso (staintools: 0.01).
        concentration_percentile: concentration percentile matched to the reference's (99).
        min_stain_angle_deg: tiles whose two stain vectors are closer are left unchanged.
        max_concentration_scale: tiles needing a larger concentration scaling (a stain
            essentially absent) are left unchanged.
        dictionary_regulariser: L1 penalty on codes while learning stains (staintools: 0.1).
        iterations: alternating-minimisation steps per tile.
        sample_pixels: at most this many pixels per tile (a regular subsample) learn the stains.
    """

    method = "vahadane"

    def __init__(
        self,
        *,
        luminosity_threshold: float = 0.8,
        min_tissue_fraction: float = 0.1,
        regulariser: float = 0.01,
        concentration_percentile: float = 99.0,
        min_stain_angle_deg: float = 5.0,
        max_concentration_scale: float = 10.0,
        dictionary_regulariser: float = 0.1,
        iterations: int = 20,
        sample_pixels: int = 8192,
    ) -> None:
        if iterations < 1 or sample_pixels < 16:
            raise ConfigError("iterations must be >= 1 and sample_pixels >= 16")
        super().__init__(
            luminosity_threshold=luminosity_threshold,
            min_tissue_fraction=min_tissue_fraction,
            regulariser=regulariser,
            concentration_percentile=concentration_percentile,
            min_stain_angle_deg=min_stain_angle_deg,
            max_concentration_scale=max_concentration_scale,
            dictionary_regulariser=dictionary_regulariser,
            iterations=iterations,
            sample_pixels=sample_pixels,
        )

    def _reference_stain_matrix(self, pixels: np.ndarray) -> np.ndarray:
        from staintools import VahadaneStainExtractor  # spams: fit time only

        # staintools overwrites zeros in its input, hence the copy.
        return VahadaneStainExtractor.get_stain_matrix(
            pixels.copy(),
            luminosity_threshold=self.options["luminosity_threshold"],
            regularizer=self.options["dictionary_regulariser"],
        )

    def _source_stain_matrix(
        self, od: torch.Tensor, tissue: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        stride = max(1, od.shape[1] // self.options["sample_pixels"])
        od, tissue = od[:, ::stride], tissue[:, ::stride]
        # NMF always returns two atoms; on one-stain tiles the second is meaningless.
        two_stains = spans_plane(torch.linalg.eigvalsh(tissue_covariance(od, tissue)))
        stains = sparse_nmf_stain_matrix(
            od,
            tissue,
            self._reference(od),
            lam=self.options["dictionary_regulariser"],
            iterations=self.options["iterations"],
        )
        return stains, (tissue.sum(1) >= 2) & two_stains
