"""``read_annotations``: open any supported annotation file by its extension and root element."""

from __future__ import annotations

import json
from pathlib import Path

from pathda.annotations import asap, imagescope
from pathda.annotations._xml import parse_xml_root
from pathda.annotations.geojson import is_geojson, parse_geojson
from pathda.annotations.model import Annotation
from pathda.errors import AnnotationError

XML_SUFFIXES = {".xml"}
JSON_SUFFIXES = {".geojson", ".json"}


def is_annotation_file(path: str | Path) -> bool:
    """Whether ``path`` is worth reading as annotations when looking for a slide's labels.

    ``.xml`` and ``.geojson`` files are; a ``.json`` file only when it holds GeoJSON (or is
    empty), so a sidecar such as a provenance ``.json`` beside a slide is never taken for
    its annotation. A ``.json`` that is not valid JSON is (reading it then names the
    fault, rather than a broken annotation passing as an unlabelled slide).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in XML_SUFFIXES or suffix == ".geojson":
        return path.is_file()
    if suffix != ".json":
        return False
    try:
        content = path.read_bytes()
    except OSError:
        return False
    try:
        return not content.strip() or is_geojson(json.loads(content))
    except ValueError:
        return True


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
