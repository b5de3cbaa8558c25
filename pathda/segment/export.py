"""A segmented slide's outputs: mask OME-TIFF, GeoJSON (and XML), overlay, summary fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pathda.annotations import write_geojson, write_imagescope_xml
from pathda.checkpoint import InferenceCheckpoint
from pathda.segment import grid
from pathda.segment.config import SegmentConfig
from pathda.segment.export_geojson import label_regions
from pathda.segment.export_tiff import write_label_ome_tiff
from pathda.segment.overlay import OVERLAY_MAX_SIDE, blend_labels, write_overlay_png
from pathda.segment.plan import SegmentPlan
from pathda.slide import Slide


def export_outputs(
    slide: Slide,
    meta: InferenceCheckpoint,
    cfg: SegmentConfig,
    plan: SegmentPlan,
    labels: np.ndarray,
    prefix: Path,
    warns: list[str],
) -> dict[str, Any]:
    """Write ``<prefix>.mask.ome.tif``, ``.geojson``, ``.overlay.png`` (and ``.xml``).

    Args:
        labels: (rows, columns) uint8 mask at the plan's mask grid.
        prefix: folder / stem of the outputs.
        warns: warnings raised so far (copied into the summary).

    Returns:
        The summary's slide, mask, area (mm², level-0 px inside the slide only) and model
        fields; ``segment_slide`` adds timings and provenance.
    """
    class_map = meta.class_map
    stem, ds, mpp = prefix.name, plan.mask_downsample, plan.slide_mpp
    out = {k: f"{stem}.{k}" for k in ("mask.ome.tif", "geojson", "probs.zarr", "overlay.png")}
    write_label_ome_tiff(prefix.parent / out["mask.ome.tif"], labels, mpp * ds, class_map.names)
    regions = label_regions(
        labels,
        ds,
        class_map,
        min_area_px=cfg.min_region_area_um2 / mpp**2,
        include_normal=cfg.include_normal,
        slide_size=slide.dimensions,
    )
    write_geojson(prefix.parent / out["geojson"], regions, class_map)
    if cfg.write_xml:
        out["xml"] = f"{stem}.xml"
        write_imagescope_xml(prefix.parent / out["xml"], regions, class_map, mpp)
    thumbnail = slide.thumbnail(max_size=min(OVERLAY_MAX_SIDE, max(slide.dimensions)))
    overlay = blend_labels(thumbnail, labels, class_map, include_normal=cfg.include_normal)
    write_overlay_png(prefix.parent / out["overlay.png"], overlay)
    # Areas count only the part of each cell inside the slide (the mask's last row and
    # column stick out), so they never exceed the slide, however coarse the mask.
    px_mm2 = mpp**2 / 1e6
    n = len(class_map)
    counts = grid.label_areas_l0(labels, n, ds, slide.dimensions)
    # normal = tissue, not glass
    counts[0] = grid.label_areas_l0(labels, n, ds, slide.dimensions, where=plan.tissue)[0]
    tissue_px = grid.label_areas_l0(plan.tissue.astype(np.uint8), 2, ds, slide.dimensions)[1]
    return {
        "slide": str(slide.path.resolve()),
        "slide_dimensions": list(slide.dimensions),
        "mpp": mpp,
        "mask_downsample": ds,
        "mask_mpp": mpp * ds,
        "mask": out["mask.ome.tif"],
        "mask_shape": list(labels.shape),
        "outputs": out,
        "class_names": list(class_map.names),
        "area_mm2": {
            name: round(float(c) * px_mm2, 6)
            for name, c in zip(class_map.names, counts, strict=True)
        },
        "tissue_mm2": round(float(tissue_px) * px_mm2, 6),
        "n_regions": len(regions),
        "model": {
            "arch": meta.arch,
            "mpp": meta.mpp,
            "patch_size": meta.patch_size,
            "stride_px": plan.stride_px,
            "stain": meta.stain_method,
            "weights_sha256": meta.weights_sha256,
            "provenance": meta.provenance,
        },
        "warnings": warns,
    }
