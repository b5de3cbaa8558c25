"""Tiling stage: whole-slide images (+ annotations) -> a zarr v3 tile store.

``tile_slides(inputs, out, config)`` writes the store; ``TileStore(out)`` reads it
(layout in ``pathda.tiling.store``). Tissue detection (shared with segmentation) is
``pathda.tissue``.

Examples:
    >>> from pathda.tiling import TileConfig, TileStore, tile_slides
    >>> tile_slides(["slides/*.svs"], "tiles.zarr", TileConfig(mpp=1.868))  # doctest: +SKIP
    >>> TileStore("tiles.zarr").indices(split="train", labelled=True)        # doctest: +SKIP
"""

from pathda.tiling.config import TileConfig
from pathda.tiling.pipeline import tile_slides
from pathda.tiling.store import SlideRecord, TileStore

__all__ = [
    "SlideRecord",
    "TileConfig",
    "TileStore",
    "tile_slides",
]
