"""Segmentation of whole-slide images: sliding-window inference, stitching, QuPath outputs.

Modules follow the workflow: ``plan`` (tissue, the patches to run, the mask grid),
``grid`` and ``blocks`` (pure sliding-window and dense-block geometry, blending
windows), ``modes`` (patch-wise or dense prediction: the units read and how their
outputs reach the stitcher), ``dataset`` and ``engine`` (reading in DataLoader workers,
batched inference), ``dense`` (the fully convolutional classifier), ``inference`` (the
one prediction loop, resumable), ``stitch`` (overlap averaging into the mask grid),
``export`` with ``export_tiff``, ``export_geojson`` and ``overlay`` (outputs), ``config``
(``SegmentConfig``) and ``pipeline`` (``segment_slide``).

Examples:
    >>> from pathda.segment import segment_slide
    >>> result = segment_slide("A01.svs", "model.pt", "out/", stride=112)  # doctest: +SKIP
    >>> result.summary                                  # out/A01/A01.summary.json
"""

from pathda.segment.config import SegmentConfig, SegmentResult
from pathda.segment.pipeline import segment_slide

__all__ = ["SegmentConfig", "SegmentResult", "segment_slide"]
