"""XML helpers shared by the ImageScope and ASAP formats."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from pathda.atomic import atomic_path
from pathda.errors import AnnotationError


def parse_xml_root(path: Path, content: bytes) -> ET.Element:
    """Parse ``content`` (read from ``path``) or raise AnnotationError naming the file."""
    try:
        return ET.fromstring(content)
    except ET.ParseError as exc:
        raise AnnotationError(f"{path}: not valid XML ({exc}); is it an annotation file?") from None


def float_attr(el: ET.Element, name: str, path: Path, where: str) -> float:
    """Attribute ``name`` of ``el`` as a float, or AnnotationError naming file and element."""
    value = el.get(name)
    if value is None:
        raise AnnotationError(f"{path}: {where} has no {name} attribute")
    try:
        return float(value)
    except ValueError:
        raise AnnotationError(f"{path}: {where} has {name}={value!r}, not a number") from None


def format_number(value: float) -> str:
    """Shortest decimal text that reads back to the same float ("12" for 12.0)."""
    return np.format_float_positional(float(value), trim="-")


def write_xml(path: str | Path, root: ET.Element) -> None:
    """Write an indented UTF-8 XML document atomically."""
    ET.indent(root, space="  ")
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
