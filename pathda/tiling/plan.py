"""Per-slide tiling plan: which patches to extract, where, with which labels.

Planning reads only a thumbnail (tissue mask) and the annotation file, so it is cheap
and runs before the store exists: bad input fails before anything is written. The plan
is deterministic, so a resumed run re-plans a slide to exactly the same tiles.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from PIL import Image

from pathda.annotations import BACH_CLASSES, ClassMap, check_within_slide, rasterise
from pathda.annotations import read_annotations as read_annotation_file
from pathda.atomic import atomic_path
from pathda.errors import MppUnknownError
from pathda.slide import Slide, open_slide
from pathda.tiling.config import TileConfig
from pathda.tiling.grid import (
    REJECTED,
    TileGrid,
    block_cells_for,
    block_order,
    block_starts,
    make_grid,
    patch_labels,
    tissue_fractions,
)
from pathda.tiling.manifest import SlideSpec
from pathda.tiling.preview import render_preview
from pathda.tiling.store import UNLABELLED
from pathda.tissue import detect_tissue

# Thumbnails for the tissue mask have at least this many pixels on their long side, and
# at most this many (bounds planning memory, ~300 MB at 4096 px, for any slide size).
_MIN_THUMBNAIL_PX = 512
_MAX_THUMBNAIL_PX = 4096
# Label rasters: about this many raster pixels per patch side, and at most this long.
_LABEL_CELLS_PER_PATCH = 16
_MAX_LABEL_RASTER_PX = 8192
# Patches of one read block take at most this many bytes (bounds worker memory).
_BLOCK_BUDGET_BYTES = 32 * 2**20


@dataclasses.dataclass(frozen=True)
class SlidePlan:
    """The tiles of one slide, in store order (read blocks, row-major inside a block).

    Attributes:
        spec: the input.
        mpp: level-0 µm/px used.
        dimensions: level-0 (width, height).
        grid: the slide's tile grid.
        block_cells: grid cells per read-block side.
        rows, cols: (n,) grid cell of each tile.
        x, y: (n,) level-0 top-left corners.
        labels: (n,) int16 class ids, -1 for an unlabelled slide.
        tissue_fraction: (n,) float32.
        blocks: (m + 1,) start index of each read block in the tile arrays, then n.
        n_skipped_label: tiles with enough tissue dropped by the majority label rule.
        tissue_found: False when the tissue mask is empty.
    """

    spec: SlideSpec
    mpp: float
    dimensions: tuple[int, int]
    grid: TileGrid
    block_cells: int
    rows: np.ndarray
    cols: np.ndarray
    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    tissue_fraction: np.ndarray
    blocks: np.ndarray
    n_skipped_label: int
    tissue_found: bool

    @property
    def n_tiles(self) -> int:
        return len(self.x)


def open_for_tiling(path: Path, slide_mpp: float | None) -> Slide:
    """Open a slide and make sure its resolution is known."""
    slide = open_slide(path, mpp=slide_mpp)
    try:
        slide.require_mpp()
    except MppUnknownError:
        slide.close()
        raise MppUnknownError(
            f"{path}: resolution (µm/px) unknown; set `slide_mpp` to its level-0 µm/px"
        ) from None
    return slide


def class_map_for(config: TileConfig) -> ClassMap:
    """BACH classes plus the configured aliases."""
    if not config.class_aliases:
        return BACH_CLASSES
    from pathda.annotations import parse_class_aliases

    return BACH_CLASSES.with_aliases(parse_class_aliases(config.class_aliases))


def load_annotations(
    spec: SlideSpec, dimensions: tuple[int, int], class_map: ClassMap, strict: bool = False
) -> list:
    """Read a slide's annotations, checking class names and that they lie on the slide.

    ``strict`` refuses a file whose regions were all skipped (see ``read_annotations``).
    """
    if spec.annotation is None:
        return []
    annotations = read_annotation_file(spec.annotation, strict=strict)
    for ann in annotations:
        class_map.id_of(ann.label, str(spec.annotation))
    if annotations:
        check_within_slide(annotations, dimensions, str(spec.annotation))
    return annotations


def plan_slide(
    spec: SlideSpec,
    config: TileConfig,
    mask_png: Path | None = None,
    preview_png: Path | None = None,
) -> SlidePlan:
    """Plan the tiles of one slide.

    Args:
        spec: the slide and its annotation.
        config: tiling settings.
        mask_png: where to write the tissue mask (white = tissue), if anywhere.
        preview_png: where to write the tile-grid preview, if anywhere.

    Raises:
        SlideOpenError, MppUnknownError, AnnotationError: bad input, naming the file.
    """
    class_map = class_map_for(config)
    with open_for_tiling(spec.slide, config.slide_mpp) as slide:
        slide_mpp = slide.require_mpp()
        dims = (int(slide.dimensions[0]), int(slide.dimensions[1]))
        annotations = load_annotations(spec, dims, class_map, config.strict)
        params = config.tissue
        long_side_um = max(dims) * slide_mpp
        thumb_mpp = max(slide_mpp, min(params.mpp, long_side_um / _MIN_THUMBNAIL_PX))
        thumb_mpp = max(thumb_mpp, long_side_um / _MAX_THUMBNAIL_PX)
        thumbnail = slide.thumbnail(mpp=thumb_mpp)
        # Pixels read from the pyramid per target pixel (> 1 when no level matches the
        # target): read blocks shrink by this so one read stays ~block_px level pixels.
        target_ds = config.mpp / slide_mpp
        read_scale = max(
            1.0, target_ds / slide.level_downsamples[slide.best_level_for_downsample(target_ds)]
        )
    mask = detect_tissue(thumbnail, params, mpp=thumb_mpp)
    if preview_png is None:
        del thumbnail  # large for big slides; only the preview needs it
    if mask_png is not None:
        save_png(mask_png, mask.astype(np.uint8) * 255)

    stride = config.effective_stride
    grid = make_grid(dims, slide_mpp, config.mpp, config.patch_size, stride)
    rows, cols = (a.ravel() for a in np.mgrid[0 : grid.rows, 0 : grid.cols])
    x, y = grid.origins(rows, cols)
    fraction = tissue_fractions(mask, thumb_mpp / slide_mpp, x, y, grid.footprint)
    keep = (fraction >= config.min_tissue) & (fraction > 0)
    rows, cols, x, y, fraction = rows[keep], cols[keep], x[keep], y[keep], fraction[keep]

    n_skipped = 0
    if spec.annotation is None:
        labels = np.full(len(x), UNLABELLED, np.int16)
    else:
        labels = _label_tiles(
            annotations, class_map, dims, grid, x, y, config, str(spec.annotation)
        )
        accepted = labels != REJECTED
        n_skipped = int((~accepted).sum())
        rows, cols, x, y = rows[accepted], cols[accepted], x[accepted], y[accepted]
        fraction, labels = fraction[accepted], labels[accepted]

    block_px = max(1, int(config.block_px / read_scale))
    block_cells = block_cells_for(config.patch_size, stride, block_px, _BLOCK_BUDGET_BYTES)
    order = block_order(rows, cols, block_cells)
    rows, cols = rows[order].astype(np.int32), cols[order].astype(np.int32)
    plan = SlidePlan(
        spec=spec,
        mpp=slide_mpp,
        dimensions=dims,
        grid=grid,
        block_cells=block_cells,
        rows=rows,
        cols=cols,
        x=x[order],
        y=y[order],
        labels=labels[order],
        tissue_fraction=fraction[order],
        blocks=block_starts(rows, cols, block_cells),
        n_skipped_label=n_skipped,
        tissue_found=bool(mask.any()),
    )
    if preview_png is not None:
        colours = np.asarray(class_map.colors, np.uint8)
        save_png(preview_png, render_preview(thumbnail, thumb_mpp / slide_mpp, plan, colours))
    return plan


def _label_tiles(annotations, class_map, dims, grid, x, y, config, source) -> np.ndarray:
    """Labels of tiles from a whole-slide label raster at a modest downsample."""
    cells = max(1.0, config.patch_size / _LABEL_CELLS_PER_PATCH)
    downsample = max(grid.downsample * cells, max(dims) / _MAX_LABEL_RASTER_PX)
    shape = (math.ceil(dims[1] / downsample), math.ceil(dims[0] / downsample))
    raster = rasterise(annotations, class_map, shape, downsample, source=source)
    return patch_labels(
        raster,
        downsample,
        x,
        y,
        grid.footprint,
        config.label_rule,
        len(class_map),
        config.label_min_fraction,
    )


def save_png(path: Path, image: np.ndarray) -> None:
    """Write a PNG atomically (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
