"""Label mask as a tiled, pyramidal OME-TIFF (uint8, one grey channel, SubIFD pyramid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

TILE = 256
"""Tile side in pixels (a multiple of 16, as TIFF requires)."""


def pyramid_levels(labels: np.ndarray, min_side: int = TILE) -> list[np.ndarray]:
    """Level 0 and successive 2x nearest-neighbour reductions down to ``min_side`` pixels.

    Nearest neighbour (not averaging) keeps every pixel a valid label.
    """
    levels = [labels]
    while max(levels[-1].shape) > min_side:
        levels.append(levels[-1][::2, ::2])
    return levels


def write_label_ome_tiff(
    path: str | Path, labels: np.ndarray, pixel_size_um: float, class_names: list[str]
) -> Path:
    """Write ``labels`` so QuPath, tifffile and OpenSlide can open it.

    Args:
        path: destination, ending in ``.ome.tif``.
        labels: (height, width) uint8 class ids.
        pixel_size_um: µm per mask pixel (slide level-0 µm/px x mask downsample), written
            as OME PhysicalSizeX/Y and as the TIFF resolution so the mask overlays its slide.
        class_names: names of ids 0..n-1, stored as the OME channel name.

    Returns:
        The path written. Reduced levels live in SubIFDs of the first page (the OME
        pyramid layout), so OpenSlide, which reads top-level pages only, sees level 0.
    """
    path = Path(path)
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    levels = pyramid_levels(labels)
    channel = "labels: " + ", ".join(f"{i}={n}" for i, n in enumerate(class_names))
    metadata = {
        "axes": "YX",
        "PhysicalSizeX": float(pixel_size_um),
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": float(pixel_size_um),
        "PhysicalSizeYUnit": "µm",
        "Channel": {"Name": [channel]},
    }
    common = {
        "tile": (TILE, TILE),
        "compression": "zlib",
        "photometric": "minisblack",
        "resolutionunit": "CENTIMETER",
    }
    with tifffile.TiffWriter(path, bigtiff=labels.size > 2**31, ome=True) as tif:
        tif.write(
            levels[0],
            subifds=len(levels) - 1,
            resolution=_per_cm(pixel_size_um),
            metadata=metadata,
            **common,
        )
        for i, level in enumerate(levels[1:], start=1):
            tif.write(
                level,
                subfiletype=1,
                resolution=_per_cm(pixel_size_um * 2**i),
                metadata=None,
                **common,
            )
    return path


def _per_cm(um_per_px: float) -> tuple[float, float]:
    return (1e4 / um_per_px, 1e4 / um_per_px)
