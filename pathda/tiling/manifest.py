"""Inputs of ``pathda tile``: slide paths, globs and CSV manifests -> ``SlideSpec`` list.

A manifest is a CSV file with a header row and the columns ``slide`` (required),
``annotation``, ``domain`` and ``split`` (optional; empty cells take the defaults).
Relative paths in it are resolved against the CSV file's folder. An empty annotation
means an unlabelled (target-domain) slide.

For a plain path or glob the annotation is ``<stem>.xml``, ``<stem>.geojson`` or a GeoJSON
``<stem>.json`` (first found, in that order) in ``annotation_dir``, or next to the slide;
``<stem>`` is the slide stem of ``pathda.slide.naming`` (``X.ome.tif`` -> ``X``).
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from pathda.annotations.read import is_annotation_file
from pathda.errors import ConfigError, InputError
from pathda.slide.naming import OME_INFIX, slide_stem
from pathda.tiling.config import SPLITS

ANNOTATION_SUFFIXES = (".xml", ".geojson", ".json")
MANIFEST_COLUMNS = ("slide", "annotation", "domain", "split")


@dataclasses.dataclass(frozen=True)
class SlideSpec:
    """One slide to tile.

    Attributes:
        slide: absolute slide path.
        annotation: absolute annotation path, or None for an unlabelled slide.
        domain: domain name (e.g. a hospital or scanner).
        split: split name (e.g. "train", "val").
    """

    slide: Path
    annotation: Path | None
    domain: str
    split: str


def resolve_inputs(
    inputs: Sequence[str | Path],
    annotation_dir: Path | None = None,
    domain: str | None = None,
    split: str = "train",
) -> list[SlideSpec]:
    """Expand paths, globs and ``.csv`` manifests into slide specs, in input order.

    Args:
        inputs: slide files, glob patterns, or CSV manifests (suffix ``.csv``).
        annotation_dir: folder holding annotations named after slide stems (path inputs).
        domain: domain of path inputs; None = "source" if annotated, else "target".
        split: split of path inputs.

    Raises:
        InputError: a missing file, a glob matching nothing, a bad manifest, or the
            same slide given twice.
    """
    if annotation_dir is not None and not Path(annotation_dir).is_dir():
        raise InputError(f"{annotation_dir}: annotation folder not found")
    specs: list[SlideSpec] = []
    for item in inputs:
        text = str(item)
        if text.lower().endswith(".csv"):
            specs.extend(read_manifest(Path(text), split=split))
            continue
        for path in _expand(text):
            ann = find_annotation(path, annotation_dir)
            specs.append(SlideSpec(path, ann, domain or _default_domain(ann), split))
    if not specs:
        raise InputError("no slides given; pass slide files, globs or a --manifest CSV")
    _check_unique(specs)
    return specs


def read_manifest(path: Path, split: str = "train") -> list[SlideSpec]:
    """Read a CSV manifest (see the module docstring)."""
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if "slide" not in header:
            raise InputError(
                f"{path}: manifest needs a header row with a 'slide' column "
                f"(optional: annotation, domain, split); got {header or 'no header'}"
            )
        unknown = sorted(set(header) - set(MANIFEST_COLUMNS))
        if unknown:
            raise InputError(
                f"{path}: unknown manifest column(s) {unknown}; use {MANIFEST_COLUMNS}"
            )
        rows = [
            {(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader
        ]
    specs = []
    for line, row in enumerate(rows, start=2):
        if not row.get("slide"):
            raise InputError(f"{path}:{line}: empty 'slide' cell")
        slide = _absolute(row["slide"], path.parent)
        if not slide.is_file():
            raise InputError(f"{path}:{line}: slide {slide} not found")
        ann = _absolute(row["annotation"], path.parent) if row.get("annotation") else None
        if ann is not None and not ann.is_file():
            raise InputError(f"{path}:{line}: annotation {ann} not found")
        dom = row.get("domain") or _default_domain(ann)
        row_split = row.get("split") or split
        if row_split not in SPLITS:
            raise InputError(
                f"{path}:{line}: split {row_split!r} is not one of {', '.join(SPLITS)}"
            )
        specs.append(SlideSpec(slide, ann, dom, row_split))
    if not specs:
        raise InputError(f"{path}: manifest lists no slides")
    return specs


def find_annotation(slide: Path, annotation_dir: Path | None) -> Path | None:
    """The annotation file of ``slide`` by its slide stem, or None (warning if a folder was given).

    Candidates are ``<stem>`` and ``<stem>.ome`` with each of ``ANNOTATION_SUFFIXES``, in
    that order (``pathda.slide.naming``: ``X.ome.tif`` and ``X.tif`` are both slide ``X``);
    a ``.json`` counts only when it holds GeoJSON, so a sidecar is never taken for labels.
    """
    folder = Path(annotation_dir) if annotation_dir is not None else slide.parent
    stem = slide_stem(slide)
    for suffix in ANNOTATION_SUFFIXES:
        for name in (f"{stem}{suffix}", f"{stem}{OME_INFIX}{suffix}"):
            candidate = folder / name
            if candidate != slide and is_annotation_file(candidate):
                return _abspath(candidate)
    if annotation_dir is not None:
        warnings.warn(
            f"{slide}: no {stem}.xml/.geojson/.json (GeoJSON) in {folder}; tiled as unlabelled",
            stacklevel=3,
        )
    return None


def _expand(text: str) -> list[Path]:
    if glob.has_magic(text):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
        files = [_abspath(p) for p in matches if p.is_file()]
        if not files:
            raise InputError(f"{text}: glob matches no files")
        return files
    path = Path(text)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give slide files or a glob such as '{path}/*.svs'")
    if not path.is_file():
        raise InputError(f"{path}: slide not found")
    return [_abspath(path)]


def _absolute(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return _abspath(path if path.is_absolute() else base / path)


def _abspath(path: Path) -> Path:
    # Not resolve(): a symlinked slide keeps its own name, so its annotation is found by it.
    return Path(os.path.abspath(path))


def _default_domain(annotation: Path | None) -> str:
    return "source" if annotation is not None else "target"


def _check_unique(specs: list[SlideSpec]) -> None:
    seen: dict[Path, int] = {}
    for i, spec in enumerate(specs):
        if spec.slide in seen:
            raise ConfigError(
                f"{spec.slide}: given twice (inputs {seen[spec.slide] + 1} and {i + 1}); "
                "list each slide once"
            )
        seen[spec.slide] = i
