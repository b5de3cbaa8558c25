"""``read_annotations``: open any supported annotation file by its extension and root element."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from pathda.annotations import asap, imagescope
from pathda.annotations._xml import parse_xml_root
from pathda.annotations.annotation import Annotation
from pathda.annotations.geojson import is_geojson, parse_geojson
from pathda.annotations.repair import repair_annotations
from pathda.errors import AllRegionsSkippedWarning, AnnotationError

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


def read_annotations(path: str | Path, *, strict: bool = False) -> list[Annotation]:
    """Read polygons (level-0 pixels) from an ImageScope XML, ASAP XML or QuPath GeoJSON file.

    ``.xml`` files are told apart by their root element (``<Annotations>``: ImageScope/BACH,
    ``<ASAP_Annotations>``: ASAP); ``.geojson``/``.json`` are GeoJSON. An empty file is
    valid and gives [] (the whole slide is background, BACH: normal). Self-intersecting
    polygons are repaired (``pathda.annotations.repair``) with one warning per file.

    Args:
        path: the annotation file.
        strict: refuse a file whose regions were *all* skipped (lines, points, no label)
            instead of warning; read as [], it would make its slide all background.

    Raises:
        AnnotationError: missing, unreadable or malformed file, or an unsupported extension;
            with ``strict``, a file whose every region was skipped. The message names the file.

    Warns:
        AllRegionsSkippedWarning: the file has regions but none was usable.
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
    annotations, n_regions = _parse(path, suffix, content)
    if n_regions and not annotations:
        message = (
            f"{path}: all {n_regions} region(s) were skipped (see the warnings about them); "
            "read as no annotation, the slide is all background (normal)"
        )
        if strict:
            raise AnnotationError(f"{message}; fix the file or leave the slide out")
        warnings.warn(AllRegionsSkippedWarning(message, str(path)), stacklevel=2)
    annotations, n_repaired = repair_annotations(annotations)
    if n_repaired:
        warnings.warn(
            f"{path}: {n_repaired} self-intersecting polygon(s) repaired (every area the "
            "outline encloses is filled; shapely make_valid, structure method)",
            UserWarning,
            stacklevel=2,
        )
    return annotations


def _parse(path: Path, suffix: str, content: bytes) -> tuple[list[Annotation], int]:
    """The annotations of a non-empty file, and how many regions the file holds."""
    if suffix in JSON_SUFFIXES:
        try:
            data = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AnnotationError(f"{path}: not valid JSON ({exc})") from None
        annotations = parse_geojson(path, data)
        features = data.get("features") if isinstance(data, dict) else data
        return annotations, len(features) if isinstance(features, list) else 1
    root = parse_xml_root(path, content)
    if root.tag == imagescope.ROOT_TAG:
        return imagescope.parse_imagescope(path, root), len(
            root.findall("Annotation/Regions/Region")
        )
    if root.tag == asap.ROOT_TAG:
        return asap.parse_asap(path, root), len(root.findall("Annotations/Annotation"))
    raise AnnotationError(
        f"{path}: XML root is <{root.tag}>, expected <{imagescope.ROOT_TAG}> (ImageScope) "
        f"or <{asap.ROOT_TAG}> (ASAP)"
    )
