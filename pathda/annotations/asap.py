"""ASAP XML (CAMELYON style): read and write.

Layout: ``ASAP_Annotations/Annotations/Annotation@PartOfGroup`` with
``Coordinates/Coordinate@Order,X,Y`` in level-0 pixels. The label is the annotation's
own group (the most specific one when groups nest: alias parent-group names through the
class map if needed). Polygon, Spline and Rectangle annotations are read as polygons
(splines by their control points); dots, point sets and measurements are skipped with a
warning. ASAP has no holes: pathda writes a hole as an annotation of the same group with
an extra ``HoleOf="<name of its polygon>"`` attribute, which it reads back as a hole.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pathda.annotations._xml import float_attr, format_number, write_xml
from pathda.annotations.annotation import Annotation, as_ring
from pathda.annotations.classmap import BACH_CLASSES, ClassMap
from pathda.errors import AnnotationError

ROOT_TAG = "ASAP_Annotations"
_AREA_TYPES = {"polygon", "spline", "rectangle"}
_NO_GROUP = {"", "none"}


def parse_asap(path: Path, root: ET.Element) -> list[Annotation]:
    """Annotations of a parsed ASAP document (see the module docstring)."""
    polygons: dict[str, Annotation] = {}
    unnamed: list[Annotation] = []
    holes: list[tuple[str, np.ndarray]] = []
    for i, el in enumerate(root.findall("Annotations/Annotation")):
        name = el.get("Name") or f"#{i}"
        where = f"Annotation {name!r}"
        kind = (el.get("Type") or "Polygon").strip()
        if kind.lower() not in _AREA_TYPES:
            warnings.warn(f"{path}: {where} is a {kind}, not an area; skipped", UserWarning, 2)
            continue
        ring = _ring(path, el, where)
        if el.get("HoleOf") is not None:
            holes.append((el.get("HoleOf", ""), ring))
            continue
        group = (el.get("PartOfGroup") or "").strip()
        if group.lower() in _NO_GROUP:
            warnings.warn(f"{path}: {where} is in no group (no class); skipped", UserWarning, 2)
            continue
        ann = Annotation(group, ring)
        if el.get("Name") and el.get("Name") not in polygons:
            polygons[el.get("Name", "")] = ann
        else:
            unnamed.append(ann)
    for parent, ring in holes:
        if parent not in polygons:
            raise AnnotationError(f"{path}: hole of {parent!r}, but no annotation has that name")
        p = polygons[parent]
        polygons[parent] = Annotation(p.label, p.exterior, (*p.holes, ring))
    return [*polygons.values(), *unnamed]


def write_asap_xml(
    path: str | Path, annotations: Sequence[Annotation], class_map: ClassMap = BACH_CLASSES
) -> None:
    """Write annotations as ASAP XML (one group per class present), atomically.

    Groups are named by the class's canonical name in ``class_map``; holes are written as
    annotations with a ``HoleOf`` attribute (see the module docstring).

    Raises:
        UnknownClassError: a label is not in ``class_map``.
    """
    ids = [class_map.id_of(a.label, str(path)) for a in annotations]
    root = ET.Element(ROOT_TAG)
    items = ET.SubElement(root, "Annotations")
    for i, (ann, cid) in enumerate(zip(annotations, ids, strict=True)):
        name = f"Annotation {i}"
        group, color = class_map.names[cid], _hex(class_map.colors[cid])
        _add(items, name, group, color, ann.exterior)
        for j, hole in enumerate(ann.holes):
            _add(items, f"{name} hole {j}", group, color, hole).set("HoleOf", name)
    groups = ET.SubElement(root, "AnnotationGroups")
    for cid in sorted(set(ids)):
        group = ET.SubElement(
            groups,
            "Group",
            Name=class_map.names[cid],
            PartOfGroup="None",
            Color=_hex(class_map.colors[cid]),
        )
        ET.SubElement(group, "Attributes")
    write_xml(path, root)


def _add(parent: ET.Element, name: str, group: str, color: str, ring: np.ndarray) -> ET.Element:
    el = ET.SubElement(
        parent, "Annotation", Name=name, Type="Polygon", PartOfGroup=group, Color=color
    )
    coords = ET.SubElement(el, "Coordinates")
    for order, (x, y) in enumerate(ring):
        ET.SubElement(
            coords, "Coordinate", Order=str(order), X=format_number(x), Y=format_number(y)
        )
    return el


def _ring(path: Path, el: ET.Element, where: str) -> np.ndarray:
    coords = el.findall("Coordinates/Coordinate")
    rows = [
        (
            float_attr(c, "Order", path, where) if c.get("Order") is not None else float(k),
            float_attr(c, "X", path, where),
            float_attr(c, "Y", path, where),
        )
        for k, c in enumerate(coords)
    ]
    rows.sort(key=lambda row: row[0])
    try:
        return as_ring(np.array([r[1:] for r in rows], dtype=np.float64).reshape(-1, 2), where)
    except AnnotationError as exc:
        raise AnnotationError(f"{path}: {exc}") from None


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)
