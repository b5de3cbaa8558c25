"""Aperio ImageScope XML (the BACH challenge format): read and write.

Layout: ``Annotations/Annotation/Regions/Region/Vertices/Vertex@X,Y`` in level-0 pixels.
A region's label is the first non-empty ``Region/Attributes/Attribute@Value``, else
``Region@Text``, else its layer's ``Annotation@Name``, else the layer's first non-empty
``Annotation/Attributes/Attribute@Value``. Regions with ``NegativeROA="1"`` are holes cut
out of the region of the same layer they lie in (ImageScope's convention). Arrow and ruler
regions (``Type`` 3 and 4) are lines and are skipped with one warning per file.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pathda.annotations._xml import float_attr, format_number, write_xml
from pathda.annotations.annotation import Annotation, as_ring, attach_holes, ring_area
from pathda.annotations.classmap import BACH_CLASSES, ClassMap
from pathda.errors import AnnotationError

ROOT_TAG = "Annotations"
_ELLIPSE_TYPE = "2"  # ImageScope stores an ellipse as the 2 corners of its bounding box.
_ELLIPSE_VERTICES = 64
# Region types that mark a line, not an area (ImageScope's arrow and ruler tools):
# they label no pixels, so they are skipped, not refused.
_LINE_TYPES = frozenset({"3", "4"})


def parse_imagescope(path: Path, root: ET.Element) -> list[Annotation]:
    """Annotations of a parsed ImageScope document (see the module docstring)."""
    annotations: list[Annotation] = []
    orphans: list[np.ndarray] = []
    lines = 0
    for layer_no, layer in enumerate(root.findall("Annotation"), start=1):
        where = f"Annotation Id={layer.get('Id', layer_no)}"
        regions = layer.find("Regions")
        if regions is None:
            raise AnnotationError(f"{path}: {where} has no <Regions>; not an ImageScope file?")
        layer_label = (layer.get("Name") or "").strip() or _first_value(layer)
        polygons: list[Annotation] = []
        holes: list[np.ndarray] = []
        for region_no, region in enumerate(regions.findall("Region"), start=1):
            rwhere = f"{where} Region Id={region.get('Id', region_no)}"
            if (region.get("Type") or "0").strip() in _LINE_TYPES:
                lines += 1
                continue
            ring = _region_ring(path, region, rwhere)
            if region.get("NegativeROA", "0").strip() == "1":
                holes.append(ring)
                continue
            label = _first_value(region) or (region.get("Text") or "").strip() or layer_label
            if not label:
                warnings.warn(f"{path}: {rwhere} has no label; skipped", UserWarning, stacklevel=2)
                continue
            polygons.append(Annotation(label, ring))
        polygons, rest = attach_holes(polygons, holes)
        annotations.extend(polygons)
        orphans.extend(rest)
    if orphans:
        # Negative regions drawn in a different layer from their positive region.
        annotations, orphans = attach_holes(annotations, orphans)
    if lines:
        warnings.warn(
            f"{path}: {lines} ruler/arrow region(s) (Type 3/4, lines, not areas) skipped",
            UserWarning,
            stacklevel=2,
        )
    if orphans:
        warnings.warn(
            f"{path}: {len(orphans)} negative (NegativeROA) region(s) lie in no region; ignored",
            UserWarning,
            stacklevel=2,
        )
    return annotations


def write_imagescope_xml(
    path: str | Path,
    annotations: Sequence[Annotation],
    class_map: ClassMap = BACH_CLASSES,
    mpp: float | None = None,
) -> None:
    """Write annotations as BACH-like ImageScope XML, atomically.

    One ``Annotation`` layer per class present (``Attribute Name="Description"`` and
    ``Region@Text`` = the class's canonical name in ``class_map``); holes become
    ``NegativeROA="1"`` regions in the same layer.

    Args:
        path: output ``.xml`` file.
        annotations: polygons in level-0 pixels.
        class_map: maps labels to classes (names and line colours).
        mpp: level-0 microns per pixel, written as ``MicronsPerPixel`` (and used for
            the ``*Microns`` region sizes) when given.

    Raises:
        UnknownClassError: a label is not in ``class_map``.
    """
    ids = [class_map.id_of(a.label, str(path)) for a in annotations]
    root = ET.Element(ROOT_TAG)
    if mpp is not None:
        root.set("MicronsPerPixel", format_number(mpp))
    region_id = 0
    for layer_id, cid in enumerate(sorted(set(ids)), start=1):
        name = class_map.names[cid]
        r, g, b = class_map.colors[cid]
        layer = ET.SubElement(
            root,
            "Annotation",
            Id=str(layer_id),
            Name=name,
            ReadOnly="0",
            Incremental="0",
            Type="4",
            LineColor=str(r + 256 * g + 65536 * b),  # Windows COLORREF: 0x00BBGGRR
            Visible="1",
            Selected="0",
        )
        attrs = ET.SubElement(layer, "Attributes")
        ET.SubElement(attrs, "Attribute", Name="Description", Id="0", Value=name)
        regions = ET.SubElement(layer, "Regions")
        for ann, ann_cid in zip(annotations, ids, strict=True):
            if ann_cid != cid:
                continue
            for ring, negative in ((ann.exterior, "0"), *((h, "1") for h in ann.holes)):
                region_id += 1
                _add_region(regions, region_id, ring, name, negative, mpp)
        ET.SubElement(layer, "Plots")
    write_xml(path, root)


def _add_region(
    regions: ET.Element,
    region_id: int,
    ring: np.ndarray,
    text: str,
    negative: str,
    mpp: float | None,
) -> None:
    area = ring_area(ring)
    length = float(np.linalg.norm(np.diff(ring, axis=0, append=ring[:1]), axis=1).sum())
    sizes = {"Length": format_number(round(length, 3)), "Area": format_number(round(area, 3))}
    if mpp is not None:
        sizes["LengthMicrons"] = format_number(round(length * mpp, 3))
        sizes["AreaMicrons"] = format_number(round(area * mpp * mpp, 3))
    region = ET.SubElement(
        regions,
        "Region",
        Id=str(region_id),
        Type="0",
        Text=text,
        NegativeROA=negative,
        **sizes,
        DisplayId=str(region_id),
    )
    ET.SubElement(region, "Attributes")
    vertices = ET.SubElement(region, "Vertices")
    for x, y in ring:
        ET.SubElement(vertices, "Vertex", X=format_number(x), Y=format_number(y), Z="0")


def _first_value(el: ET.Element) -> str:
    for attr in el.findall("Attributes/Attribute"):
        value = (attr.get("Value") or "").strip()
        if value:
            return value
    return ""


def _region_ring(path: Path, region: ET.Element, where: str) -> np.ndarray:
    vertices = region.find("Vertices")
    if vertices is None:
        raise AnnotationError(f"{path}: {where} has no <Vertices>")
    points = np.array(
        [
            (float_attr(v, "X", path, where), float_attr(v, "Y", path, where))
            for v in vertices.findall("Vertex")
        ],
        dtype=np.float64,
    ).reshape(-1, 2)
    if region.get("Type") == _ELLIPSE_TYPE and len(points) == 2:
        points = _ellipse(points)
    try:
        return as_ring(points, where)
    except AnnotationError as exc:
        raise AnnotationError(f"{path}: {exc}") from None


def _ellipse(corners: np.ndarray) -> np.ndarray:
    centre = corners.mean(axis=0)
    radii = np.abs(corners[1] - corners[0]) / 2
    theta = np.linspace(0, 2 * np.pi, _ELLIPSE_VERTICES, endpoint=False)
    return centre + radii * np.stack([np.cos(theta), np.sin(theta)], axis=1)
