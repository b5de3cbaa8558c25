"""``TileConfig``: every setting of ``pathda tile`` (YAML section ``tile`` sets defaults)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pathda.errors import ConfigError
from pathda.tiling.grid import LabelRule
from pathda.tissue import TissueParams

SPLITS = ("train", "val", "test")
"""The split names a slide can have (training uses train and val; test is held out)."""

BACH_BASE_MPP = 0.467  # µm/px of BACH slides at full resolution; the paper tiles at k * this


@dataclasses.dataclass(frozen=True)
class TileConfig:
    """Settings of the tiling stage.

    Attributes:
        mpp: µm/px of the stored patches (default 4 x 0.467 = 1.868).
        patch_size: patch side, pixels at ``mpp``.
        stride: grid step, pixels at ``mpp``; None = ``patch_size`` (no overlap).
        min_tissue: keep a patch when at least this share of its area is tissue (0..1].
            Higher than segmentation's ``min_tissue_fraction`` (0.05) on purpose: a
            training patch should show tissue, while segmentation must cover every bit
            of tissue and skips only patches that are nearly all glass.
        label_rule: "centre" (class at the patch centre) or "majority" (most common class,
            kept only if it covers ``label_min_fraction`` of the patch).
        label_min_fraction: see ``label_rule``.
        tissue: tissue detection (``pathda.tissue.TissueParams``, or a mapping of its
            fields), the same settings type and defaults as segmentation's. The flat YAML
            keys of earlier versions (``tissue_method``, ``tissue_mpp``, ``closing_um``,
            ``min_object_um2``, ``max_hole_um2``) are still read, with a warning.
        slide_mpp: level-0 µm/px for slides whose files do not say (or say wrongly).
        class_aliases: extra annotation label names, as "NAME=CLASS".
        annotation_dir: where to look for ``<slide stem>.xml|.geojson|.json`` (path inputs);
            None = next to each slide.
        domain: domain of path inputs; None = "source" if annotated, else "target".
        split: split of path inputs (e.g. "train", "val").
        stain: stain normalisation method, or None.
        stain_reference: reference image the normaliser is fitted to.
        workers: parallel readers; 0 = one per CPU core.
        parallel: "thread" or "process" workers.
        block_px: side of one slide read, pixels at ``mpp`` (dense tissue is read in
            blocks of this size and cut into patches).
        append: add slides to an existing store.
        preview: write a PNG per slide with the tile grid coloured by label.
        strict: refuse an annotation file whose regions were all skipped (else it is
            read as no annotation, making its slide all normal, with a warning).
        verify: on an existing store, check every committed slide's checksums (reads the
            whole store) and rebuild the damaged ones; without it only files, sizes and
            counts are checked.
    """

    mpp: float = 4 * BACH_BASE_MPP
    patch_size: int = 64
    stride: int | None = None
    min_tissue: float = 0.5
    label_rule: LabelRule = "centre"
    label_min_fraction: float = 0.5
    tissue: TissueParams = dataclasses.field(default_factory=TissueParams)
    slide_mpp: float | None = None
    class_aliases: tuple[str, ...] = ()
    annotation_dir: Path | None = None
    domain: str | None = None
    split: str = "train"
    stain: str | None = None
    stain_reference: Path | None = None
    workers: int = 0
    parallel: Literal["thread", "process"] = "thread"
    block_px: int = 2048
    append: bool = False
    preview: bool = False
    strict: bool = False
    verify: bool = False

    RENAMED: ClassVar[Mapping[str, str]] = {
        "tissue_method": "tissue.method",
        "tissue_mpp": "tissue.mpp",
        "closing_um": "tissue.closing_um",
        "min_object_um2": "tissue.min_object_um2",
        "max_hole_um2": "tissue.max_hole_um2",
    }
    """Old YAML keys still read (with a warning) for one release."""

    def __post_init__(self) -> None:
        if isinstance(self.tissue, Mapping):
            try:
                object.__setattr__(self, "tissue", TissueParams(**self.tissue))
            except TypeError as err:
                raise ConfigError(f"tissue: {err}") from None
        if not self.mpp > 0:
            raise ConfigError(f"`mpp` must be > 0 µm/px, got {self.mpp}")
        if self.patch_size < 1 or (self.stride is not None and self.stride < 1):
            raise ConfigError("`patch_size` and `stride` must be >= 1 px")
        if not 0 < self.min_tissue <= 1:
            raise ConfigError(f"`min_tissue` must be in (0, 1], got {self.min_tissue}")
        if not 0 < self.label_min_fraction <= 1:
            raise ConfigError(
                f"`label_min_fraction` must be in (0, 1], got {self.label_min_fraction}"
            )
        if self.label_rule not in ("centre", "majority"):
            raise ConfigError(f"`label_rule` must be centre or majority, got {self.label_rule!r}")
        if self.workers < 0 or self.block_px < 1:
            raise ConfigError("`workers` must be >= 0 and `block_px` >= 1")
        if self.split not in SPLITS:
            raise ConfigError(f"`split` {self.split!r} is not one of {', '.join(SPLITS)}")
        if (self.stain is None) != (self.stain_reference is None):
            raise ConfigError("`stain` and `stain_reference` go together: give both or neither")

    @property
    def effective_stride(self) -> int:
        """Grid step in pixels at ``mpp``."""
        return self.stride if self.stride is not None else self.patch_size

    def grid_settings(self) -> dict[str, Any]:
        """Settings that decide which tiles exist and what they hold; appends must match."""
        return {
            "mpp": self.mpp,
            "patch_size": self.patch_size,
            "stride": self.effective_stride,
            "min_tissue": self.min_tissue,
            "label_rule": self.label_rule,
            "label_min_fraction": self.label_min_fraction,
            "tissue": dataclasses.asdict(self.tissue),
            "slide_mpp": self.slide_mpp,
            "class_aliases": list(self.class_aliases),
            "stain": self.stain,
            "stain_reference": str(self.stain_reference) if self.stain_reference else None,
        }
