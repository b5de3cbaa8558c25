"""Annotations: read and write polygon files, map labels to classes, rasterise to label images.

Formats: Aperio ImageScope XML (BACH), ASAP XML, QuPath GeoJSON. All coordinates are
level-0 pixels (x, y).

Examples:
    >>> anns = read_annotations("A01.xml")                               # doctest: +SKIP
    >>> labels = rasterise(anns, BACH_CLASSES, (h, w), downsample=16)   # doctest: +SKIP
"""

from pathda.annotations.annotation import Annotation, annotation_bounds, integer_bounds
from pathda.annotations.asap import write_asap_xml
from pathda.annotations.classmap import BACH_CLASSES, ClassMap, parse_class_aliases
from pathda.annotations.geojson import write_geojson
from pathda.annotations.imagescope import write_imagescope_xml
from pathda.annotations.rasterise import check_within_slide, polygon_mask, rasterise
from pathda.annotations.read import is_annotation_file, read_annotations

__all__ = [
    "BACH_CLASSES",
    "Annotation",
    "ClassMap",
    "annotation_bounds",
    "check_within_slide",
    "integer_bounds",
    "is_annotation_file",
    "parse_class_aliases",
    "polygon_mask",
    "rasterise",
    "read_annotations",
    "write_asap_xml",
    "write_geojson",
    "write_imagescope_xml",
]
