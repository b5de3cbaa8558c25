"""What ``segment_slide`` will compute on a slide: tissue, the patches to run, the mask grid.

Planning reads only the slide's thumbnail, so a slide whose output grid would not fit
in memory is refused before any patch is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pathda.checkpoint import InferenceCheckpoint
from pathda.errors import ConfigError
from pathda.segment import grid
from pathda.segment.config import SegmentConfig
from pathda.slide import Slide
from pathda.slide.resolution import require_not_upsampled
from pathda.tiling.grid import tissue_fractions
from pathda.tissue import detect_tissue


@dataclass(frozen=True)
class SegmentPlan:
    """The geometry of one slide's segmentation.

    Attributes:
        slide_mpp: level-0 µm/px of the slide.
        patch_l0: patch side, level-0 px.
        stride_px: step between patches, px at the model mpp.
        mask_downsample: level-0 px per mask cell.
        mask_shape: (rows, columns) of the mask grid.
        origins: (N, 2) level-0 (x, y) origins of the patches with tissue, row-major.
        tissue: (rows, columns) bool tissue mask at the mask grid.
    """

    slide_mpp: float
    patch_l0: float
    stride_px: int
    mask_downsample: int
    mask_shape: tuple[int, int]
    origins: np.ndarray
    tissue: np.ndarray


def plan_segmentation(slide: Slide, meta: InferenceCheckpoint, cfg: SegmentConfig) -> SegmentPlan:
    """Detect tissue and choose the patches and the mask grid for ``slide``.

    Raises:
        ConfigError: a stride over the patch size, or an output grid over ``max_grid_mb``.
        PathdaError: a slide without mpp, or one the model would need upsampled.
    """
    slide_mpp = slide.require_mpp()
    require_not_upsampled(slide.path, meta.mpp, slide_mpp)  # the same rule as tile's
    patch_px = meta.patch_size
    stride_px = cfg.stride or max(1, patch_px // 2)
    if stride_px > patch_px:
        raise ConfigError(f"stride {stride_px} px must not exceed the patch size {patch_px} px")
    scale = meta.mpp / slide_mpp  # level-0 px per model px
    patch_l0, stride_l0 = patch_px * scale, stride_px * scale
    ds = cfg.output_downsample or grid.default_mask_downsample(stride_l0)
    shape = grid.mask_shape(slide.dimensions, ds)
    _require_grid_fits(slide.path, shape, meta.num_classes, ds, cfg.max_grid_mb)
    # Detect at the finer of the tissue resolution and the mask's, so clipping labels to
    # tissue is not blockier than the mask itself, but never finer than level 0.
    thumb_mpp = max(min(cfg.tissue.mpp, ds * slide_mpp), slide_mpp)
    thumbnail = slide.thumbnail(mpp=thumb_mpp)
    thumb_ds = slide.dimensions[0] / thumbnail.shape[1]
    tissue_thumb = detect_tissue(thumbnail, cfg.tissue, mpp=thumb_ds * slide_mpp)
    origins = grid.patch_origins(slide.dimensions, patch_l0, stride_l0)
    fraction = tissue_fractions(tissue_thumb, thumb_ds, origins[:, 0], origins[:, 1], patch_l0)
    keep = fraction >= max(cfg.min_tissue_fraction, 1e-9)
    return SegmentPlan(
        slide_mpp=slide_mpp,
        patch_l0=patch_l0,
        stride_px=stride_px,
        mask_downsample=ds,
        mask_shape=shape,
        origins=origins[keep],
        tissue=grid.resample_nearest(tissue_thumb, thumb_ds, shape, ds),
    )


def _require_grid_fits(
    slide: Path, shape: tuple[int, int], n_classes: int, ds: int, limit_mb: float
) -> None:
    """Refuse, before any reading, an output grid whose working memory exceeds the limit."""
    need_mb = grid.grid_memory_bytes(shape, n_classes) / 2**20
    if need_mb > limit_mb:
        raise ConfigError(
            f"{slide}: the output grid of {shape[1]} x {shape[0]} cells ({ds} level-0 px per "
            f"cell) needs about {need_mb:.3g} MB, over the {limit_mb:.3g} MB limit; raise "
            "`output_downsample`, or `max_grid_mb` if the memory is there"
        )
