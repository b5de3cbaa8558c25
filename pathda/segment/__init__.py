"""Segmentation of whole-slide images: sliding-window inference, stitching, QuPath outputs.

Modules follow the workflow: ``grid`` (pure sliding-window geometry and blending
windows), ``dataset`` and ``engine`` (reading patches in DataLoader workers, batched
inference), ``stitch`` (overlap averaging into the mask grid), ``export_tiff``,
``export_geojson`` and ``overlay`` (outputs), ``config`` (``SegmentConfig``) and
``pipeline`` (``segment_slide``).

Examples:
    >>> from pathda.segment import segment_slide
    >>> result = segment_slide("A01.svs", "model.pt", "out/", stride=112)  # doctest: +SKIP
    >>> result.summary                                  # out/A01/A01.summary.json
"""

from pathda.segment.config import SegmentConfig, SegmentResult
from pathda.segment.pipeline import segment_slide

__all__ = ["SegmentConfig", "SegmentResult", "segment_slide"]
