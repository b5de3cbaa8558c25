"""``read_annotations``: open any supported annotation file by its extension and root element."""

from __future__ import annotations

import json
from pathlib import Path

from pathda.annotations import asap, imagescope
from pathda.annotations._xml import parse_xml_root
from pathda.annotations.geojson import parse_geojson
from pathda.annotations.model import Annotation
from pathda.errors import AnnotationError

XML_SUFFIXES = {".xml"}
JSON_SUFFIXES = {".geojson", ".json"}


def read_annotations(path: str | Path) -> list[Annotation]:
    """Read polygons (level-0 pixels) from an ImageScope XML, ASAP XML or QuPath GeoJSON file.

    ``.xml`` files are told apart by their root element (``<Annotations>``: ImageScope/BACH,
    ``<ASAP_Annotations>``: ASAP); ``.geojson``/``.json`` are GeoJSON. An empty file is
    valid and gives [] (the whole slide is background, BACH: normal).

    Raises:
        AnnotationError: missing, unreadable or malformed file, or an unsupported extension;
            the message names the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in XML_SUFFIXES | JSON_SUFFIXES:
        raise AnnotationError(
            f"{path}: unsupported annotation file type {suffix or '(none)'!r}; "
            f"use ImageScope/ASAP .xml or QuPath .geojson/.json"
        )
    try:
        # Bytes, so the XML parser honours a declared encoding and JSON detects UTF-8/16/32.
        content = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found") from None
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read annotation file ({exc})") from None
    if not content.strip():
        return []
    if suffix in JSON_SUFFIXES:
        try:
            data = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AnnotationError(f"{path}: not valid JSON ({exc})") from None
        return parse_geojson(path, data)
    root = parse_xml_root(path, content)
    if root.tag == imagescope.ROOT_TAG:
        return imagescope.parse_imagescope(path, root)
    if root.tag == asap.ROOT_TAG:
        return asap.parse_asap(path, root)
    raise AnnotationError(
        f"{path}: XML root is <{root.tag}>, expected <{imagescope.ROOT_TAG}> (ImageScope) "
        f"or <{asap.ROOT_TAG}> (ASAP)"
    )
