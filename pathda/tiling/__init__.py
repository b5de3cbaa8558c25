"""Tiling stage: whole-slide images (+ annotations) -> a zarr v3 tile store.

``tile_slides(inputs, out, config)`` writes the store; ``TileStore(out)`` reads it
(layout in ``pathda.tiling.store``). ``detect_tissue`` is shared with segmentation.

Examples:
    >>> from pathda.tiling import TileConfig, TileStore, tile_slides
    >>> tile_slides(["slides/*.svs"], "tiles.zarr", TileConfig(mpp=1.868))  # doctest: +SKIP
    >>> TileStore("tiles.zarr").indices(split="train", labelled=True)        # doctest: +SKIP
"""

from pathda.tiling.config import TileConfig
from pathda.tiling.pipeline import tile_slides
from pathda.tiling.store import SlideRecord, TileStore
from pathda.tiling.tissue import TissueParams, detect_tissue

__all__ = [
    "SlideRecord",
    "TileConfig",
    "TileStore",
    "TissueParams",
    "detect_tissue",
    "tile_slides",
]
