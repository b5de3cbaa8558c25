"""QuPath GeoJSON: read and write.

Reads a FeatureCollection, a bare list of Features or a single Feature (QuPath exports
all three). The label is ``properties.classification.name`` (QuPath 0.2-0.5; ``colorRGB``
or ``color`` beside it are ignored) or ``properties.classification`` when it is a string.
Polygon and MultiPolygon (each part one annotation) keep their holes; points and lines
are skipped with a warning. Coordinates are level-0 pixels.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pathda.annotations.annotation import Annotation
from pathda.annotations.classmap import BACH_CLASSES, ClassMap
from pathda.atomic import write_json
from pathda.errors import AnnotationError

_AREA_TYPES = {"Polygon", "MultiPolygon"}


def parse_geojson(path: Path, data: Any) -> list[Annotation]:
    """Annotations of decoded GeoJSON ``data`` read from ``path`` (see the module docstring)."""
    features = _features(path, data)
    annotations: list[Annotation] = []
    for i, feature in enumerate(features):
        where = f"feature {i}" + (f" (id {feature['id']})" if "id" in feature else "")
        geometry = feature.get("geometry")
        if not isinstance(geometry, Mapping):
            raise AnnotationError(f"{path}: {where} has no geometry")
        polygons = _polygons(path, geometry, where)
        if not polygons:
            continue
        label = _label(feature.get("properties") or {})
        if not label:
            warnings.warn(f"{path}: {where} has no classification; skipped", UserWarning, 2)
            continue
        for rings in polygons:
            if not isinstance(rings, list) or not rings:
                raise AnnotationError(f"{path}: {where} has a polygon without rings")
            try:
                annotations.append(Annotation(label, rings[0], tuple(rings[1:])))
            except AnnotationError as exc:
                raise AnnotationError(f"{path}: {where}: {exc}") from None
    return annotations


def is_geojson(data: Any) -> bool:
    """Whether decoded JSON has the shape ``parse_geojson`` reads (Features, however wrapped)."""
    if isinstance(data, Mapping):
        return data.get("type") in {"FeatureCollection", "Feature"}
    return isinstance(data, list) and all(
        isinstance(f, Mapping) and f.get("type") == "Feature" for f in data
    )


def write_geojson(
    path: str | Path,
    annotations: Sequence[Annotation],
    class_map: ClassMap = BACH_CLASSES,
    properties: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """Write annotations as a QuPath-readable GeoJSON FeatureCollection, atomically.

    Each Feature gets a fresh uuid4 ``id``, a Polygon with closed rings in level-0 pixels
    and ``properties = {objectType: "annotation", classification: {name, color}, isLocked:
    false}``; the colour is the class's in ``class_map`` and the name its canonical name
    written as QuPath names classes, first letter upper case (``qupath_class_name``:
    "Normal", "Benign", "In situ", "Invasive"). Reading is case-insensitive, so the file
    reads back to the same classes.

    Args:
        path: output ``.geojson`` file.
        annotations: polygons in level-0 pixels.
        class_map: maps labels to class names and RGB colours.
        properties: extra properties added to every feature (a mapping) or one mapping
            per annotation (a sequence of the same length).

    Raises:
        UnknownClassError: a label is not in ``class_map``.
        AnnotationError: ``properties`` is a sequence of the wrong length.
    """
    if properties is None or isinstance(properties, Mapping):
        extras: Sequence[Mapping[str, Any]] = [properties or {}] * len(annotations)
    else:
        extras = properties
        if len(extras) != len(annotations):
            raise AnnotationError(
                f"{path}: {len(extras)} property sets for {len(annotations)} annotations"
            )
    features = []
    for ann, extra in zip(annotations, extras, strict=True):
        cid = class_map.id_of(ann.label, str(path))
        rings = [_closed(ring) for ring in (ann.exterior, *ann.holes)]
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid4()),
                "geometry": {"type": "Polygon", "coordinates": rings},
                "properties": {
                    "objectType": "annotation",
                    "classification": {
                        "name": qupath_class_name(class_map.names[cid]),
                        "color": list(class_map.colors[cid]),
                    },
                    "isLocked": False,
                    **extra,
                },
            }
        )
    write_json(path, {"type": "FeatureCollection", "features": features})


def qupath_class_name(name: str) -> str:
    """A class name as QuPath users write one: first letter upper case ("in situ" -> "In situ").

    QuPath's own classes ("Tumor", "Stroma", "Immune cells") and the BACH annotations
    ("Benign", "Carcinoma in situ") are capitalised this way; the rest is left as it is.
    """
    return name[:1].upper() + name[1:]


def _features(path: Path, data: Any) -> list[Mapping[str, Any]]:
    if isinstance(data, Mapping) and data.get("type") == "FeatureCollection":
        features = data.get("features")
    elif isinstance(data, Mapping) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, list):
        features = data
    else:
        raise AnnotationError(
            f"{path}: not GeoJSON annotations (expected a FeatureCollection, a Feature or a "
            f"list of Features)"
        )
    if not isinstance(features, list) or not all(
        isinstance(f, Mapping) and f.get("type") == "Feature" for f in features
    ):
        raise AnnotationError(f"{path}: 'features' must be a list of GeoJSON Features")
    return features


def _polygons(path: Path, geometry: Mapping[str, Any], where: str) -> list[Any]:
    """Polygon coordinate lists ([exterior, *holes]) of a geometry; [] for points and lines."""
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        return [coords]
    if kind == "MultiPolygon":
        if not isinstance(coords, list):
            raise AnnotationError(f"{path}: {where} has malformed MultiPolygon coordinates")
        return list(coords)
    if kind == "GeometryCollection":
        parts = geometry.get("geometries") or []
        return [p for g in parts for p in _polygons(path, g, where)]
    if kind in {"Point", "MultiPoint", "LineString", "MultiLineString"}:
        warnings.warn(f"{path}: {where} is a {kind}, not an area; skipped", UserWarning, 3)
        return []
    raise AnnotationError(f"{path}: {where} has unknown geometry type {kind!r}")


def _label(properties: Mapping[str, Any]) -> str:
    classification = properties.get("classification")
    if isinstance(classification, Mapping):
        classification = classification.get("name")
    return str(classification).strip() if classification else ""


def _closed(ring: Any) -> list[list[float]]:
    points = [[float(x), float(y)] for x, y in ring]
    return [*points, points[0]]
