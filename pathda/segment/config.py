"""Settings and result of ``segment_slide``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pathda.errors import ConfigError
from pathda.segment import grid
from pathda.tissue import TissueParams

MODES = ("patch", "dense")
"""Inference modes of ``segment_slide`` (see ``SegmentConfig.mode``)."""

PRECISIONS = ("auto", "float32", "bf16")
"""Arithmetic of the model's forward pass (see ``SegmentConfig.precision``)."""


@dataclass(frozen=True)
class SegmentConfig:
    """Settings of ``pathda segment`` (saved in every summary).

    Attributes:
        stride: step between patches in pixels at the model's mpp; None = patch_size // 2.
        batch_size: patches per forward pass.
        num_workers: DataLoader processes reading the slide (0 = read in the main process).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        slide_mpp: level-0 µm/px forced on the slide (for files without, or with wrong, mpp);
            the same setting as ``TileConfig.slide_mpp`` (the old key ``mpp_override`` is
            still read, with a warning, for one release).
        tissue: tissue detection settings (``pathda.tissue.TissueParams``, the same type
            and defaults as tiling's, or a
            mapping of its fields); the thumbnail is made finer than ``tissue.mpp`` when the
            mask is finer.
        min_tissue_fraction: patches with less tissue than this share are skipped (lower
            than tiling's ``min_tissue`` on purpose: every bit of tissue must be labelled).
        output_downsample: level-0 pixels per mask cell; None = a quarter of the stride
            in level-0 pixels (see ``grid.default_mask_downsample``).
        window: overlap blending window, ``gaussian`` or ``uniform`` (``grid.WINDOWS``).
        min_region_area_um2: GeoJSON/XML regions and holes smaller than this are dropped
            (the mask keeps them).
        include_normal: also outline normal-tissue regions in GeoJSON/XML.
        write_xml: also write ImageScope XML.
        mode: ``patch`` (every patch through the network on its own; the reference) or
            ``dense`` (the classifier run fully convolutionally over blocks of patches,
            see ``pathda.segment.dense``; timm ResNets without squeeze-excitation only).
        tile_px: dense mode: side of a block read, px at the model mpp (margins included).
        margin_px: dense mode: context read around each block's patches, px at the model
            mpp (a multiple of 32), so patches at block edges see their real neighbours.
        max_grid_mb: refuse a slide whose output grid needs more working memory than this
            (MB; ``grid.grid_memory_bytes``), before reading it.
        resume_every_s: seconds between commits of finished mask rows, from which a
            killed run resumes (``pathda.segment.resume``); 0 commits every band.
        precision: the forward pass's arithmetic: ``float32``, ``bf16`` (bfloat16 autocast,
            on the CPU too) or ``auto`` (bf16 on CUDA, float32 on the CPU). bf16 on a CPU
            pays only where it has bf16 arithmetic (AVX-512-BF16, AMX) and moves a few
            labels at class boundaries, so it is opt-in there (docs/benchmarks/segment.md).
    """

    stride: int | None = None
    batch_size: int = 64
    num_workers: int = 2
    device: str = "auto"
    slide_mpp: float | None = None
    tissue: TissueParams = field(default_factory=TissueParams)
    min_tissue_fraction: float = 0.05
    output_downsample: int | None = None
    window: str = "gaussian"
    min_region_area_um2: float = 2500.0
    include_normal: bool = False
    write_xml: bool = False
    mode: str = "patch"
    tile_px: int = 1280
    margin_px: int = 64
    max_grid_mb: float = 4096.0
    resume_every_s: float = 30.0
    precision: str = "auto"

    RENAMED: ClassVar[Mapping[str, str]] = {"mpp_override": "slide_mpp"}
    """Old YAML keys still read (with a warning) for one release."""

    def __post_init__(self) -> None:
        if self.stride is not None and self.stride < 1:
            raise ConfigError(f"stride must be >= 1 px, got {self.stride}")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ConfigError("batch_size must be >= 1 and num_workers >= 0")
        if self.output_downsample is not None and self.output_downsample < 1:
            raise ConfigError(f"output_downsample must be >= 1, got {self.output_downsample}")
        if not 0 <= self.min_tissue_fraction <= 1:
            raise ConfigError("min_tissue_fraction must be in [0, 1]")
        if self.min_region_area_um2 < 0:
            raise ConfigError("min_region_area_um2 must be >= 0")
        if isinstance(self.tissue, Mapping):
            try:
                object.__setattr__(self, "tissue", TissueParams(**self.tissue))
            except TypeError as err:
                raise ConfigError(f"tissue: {err}") from None
        grid.get_window(self.window)
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if self.margin_px < 0 or self.margin_px % 32:
            raise ConfigError(f"margin_px must be a multiple of 32 px >= 0, got {self.margin_px}")
        if not self.max_grid_mb > 0:
            raise ConfigError(f"max_grid_mb must be > 0, got {self.max_grid_mb}")
        if self.resume_every_s < 0:
            raise ConfigError(f"resume_every_s must be >= 0, got {self.resume_every_s}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}"
            )
        if self.tile_px < 32:
            raise ConfigError(f"tile_px must be >= 32 px, got {self.tile_px}")


@dataclass(frozen=True)
class SegmentResult:
    """Where a slide's outputs went and the headline numbers.

    Attributes:
        folder: ``<out_dir>/<stem>``.
        summary: the summary JSON path (its content is in ``summary_data``).
        labels: (H, W) uint8 mask, one cell per ``mask_downsample`` level-0 px.
        mask_downsample: level-0 pixels per mask cell.
        n_patches: patches run through the model.
        seconds: wall time for the slide.
    """

    folder: Path
    summary: Path
    labels: np.ndarray
    mask_downsample: int
    n_patches: int
    seconds: float
    summary_data: dict[str, Any]
