"""Finding prediction and truth inputs on disk and pairing them by slide stem.

An input is one of three kinds:

* ``segment``: a ``pathda segment`` slide folder, found by its ``<stem>.summary.json``
  (level-0 slide size and the mask's downsample are known);
* ``mask``: a label image (PNG / TIFF / OME-TIFF, uint8 labels 0..3) of unknown downsample;
* ``annotations``: ImageScope XML, ASAP XML or GeoJSON polygons in level-0 pixels.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pathda._types import IntPair
from pathda.errors import ScoreInputError
from pathda.slide.naming import slide_stem, strip_ome

SourceKind = Literal["segment", "mask", "annotations"]

SUMMARY_SUFFIX = ".summary.json"
MASK_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png")
ANNOTATION_SUFFIXES = (".xml", ".geojson")
# A ``.json`` is annotations only when it holds GeoJSON (as ``pathda tile`` decides).
GEOJSON_JSON_SUFFIX = ".json"
_MASK_TAILS = (".mask", "_mask", "-mask")
_SEGMENT_MASK_GLOBS = ("*.mask.ome.tif", "*.mask.ome.tiff")


@dataclass(frozen=True)
class LabelSource:
    """One slide's labels on one side (prediction or truth).

    Attributes:
        stem: slide name used for pairing (file name without known suffixes).
        kind: ``segment``, ``mask`` or ``annotations``.
        path: the file that names it (summary JSON, mask image or annotation file).
        mask_path: the label image to read (``None`` for annotations).
        level0_size: (width, height) of the slide's level 0 in pixels, when known.
        mask_downsample: level-0 pixels per mask pixel, when known.
        slide_path: the slide the labels belong to, when known.
        mpp: level-0 µm/px of that slide, when known.
        class_names: what each label id of the mask means (a segment summary's model
            classes); None = the BACH ids (0 normal, 1 benign, 2 in situ, 3 invasive).
    """

    stem: str
    kind: SourceKind
    path: Path
    mask_path: Path | None = None
    level0_size: IntPair | None = None
    mask_downsample: float | None = None
    slide_path: str | None = None
    mpp: float | None = None
    class_names: tuple[str, ...] | None = None


def label_stem(name: str) -> str:
    """Slide of a label file by the one stem rule (``pathda.slide.naming``), mask tag dropped.

    ``A01.xml``, ``A01.ome.xml``, ``A01_mask.png``, ``A01.mask.ome.tif`` and
    ``A01.summary.json`` all give ``A01``.
    """
    if name.lower().endswith(SUMMARY_SUFFIX) and len(name) > len(SUMMARY_SUFFIX):
        stem = strip_ome(name[: -len(SUMMARY_SUFFIX)])
    else:
        stem = slide_stem(name)
    for tail in _MASK_TAILS:
        if stem.lower().endswith(tail) and len(stem) > len(tail):
            return strip_ome(stem[: -len(tail)])
    return stem


def discover_sources(paths: Iterable[str | Path], role: str) -> list[LabelSource]:
    """Every labelled slide in ``paths`` (files or folders), for the ``role`` side.

    Args:
        paths: files, or folders holding files and/or ``pathda segment`` slide folders
            (one level deep).
        role: ``"prediction"`` or ``"truth"``, used in error messages.

    Raises:
        ScoreInputError: a path is missing, of an unknown type, holds nothing usable,
            or is an incomplete segment output.
    """
    sources: list[LabelSource] = []
    for path in map(Path, paths):
        if path.is_dir():
            sources += _scan_folder(path, role)
        elif path.is_file():
            sources.append(_file_source(path, role))
        else:
            raise ScoreInputError(f"{path}: {role} path not found")
    return sources


def pair_sources(
    preds: Sequence[LabelSource], truths: Sequence[LabelSource], allow_missing: bool = False
) -> tuple[list[tuple[LabelSource, LabelSource]], list[LabelSource]]:
    """Pair predictions with truths by stem.

    Returns:
        ``(pairs, unmatched)``: pairs sorted by stem, and the inputs left without a partner.

    Raises:
        ScoreInputError: a stem appears twice on one side; some input has no partner
            (unless ``allow_missing``); no pair at all.
    """
    pred_by_stem = _by_stem(preds, "prediction")
    truth_by_stem = _by_stem(truths, "truth")
    common = sorted(pred_by_stem.keys() & truth_by_stem.keys())
    lonely_pred = [pred_by_stem[s] for s in sorted(pred_by_stem.keys() - truth_by_stem.keys())]
    lonely_truth = [truth_by_stem[s] for s in sorted(truth_by_stem.keys() - pred_by_stem.keys())]
    if (lonely_pred or lonely_truth) and (not allow_missing or not common):
        parts = []
        if lonely_pred:
            parts.append("prediction without truth: " + _names(lonely_pred))
        if lonely_truth:
            parts.append("truth without prediction: " + _names(lonely_truth))
        hint = "" if common else "no slide stem matches; "
        # With --allow-missing already given, only the pairing rule can help.
        fix = "" if allow_missing else "; set `allow_missing` to score only the pairs"
        raise ScoreInputError(
            f"unmatched inputs ({'; '.join(parts)}); {hint}files pair by slide stem "
            f"(e.g. A01.xml with A01_mask.png){fix}"
        )
    if not common:
        raise ScoreInputError("no prediction/truth pairs to score")
    pairs = [(pred_by_stem[s], truth_by_stem[s]) for s in common]
    return pairs, lonely_pred + lonely_truth


def read_segment_summary(summary: Path) -> LabelSource:
    """The ``segment`` source described by a ``<stem>.summary.json``.

    Raises:
        ScoreInputError: unreadable JSON, missing keys, a missing mask file, or no
            ``"complete": true`` (a partial output).
    """
    try:
        data = json.loads(summary.read_text())
    except (OSError, ValueError) as exc:
        raise ScoreInputError(f"{summary}: cannot read segment summary ({exc})") from None
    if not isinstance(data, dict) or data.get("complete") is not True:
        raise ScoreInputError(
            f'{summary}: segment output is incomplete (no "complete": true); '
            "re-run pathda segment for this slide or leave it out"
        )
    try:
        width, height = (int(v) for v in data["slide_dimensions"])
        downsample = float(data["mask_downsample"])
        mask = summary.parent / str(data["mask"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ScoreInputError(
            f"{summary}: segment summary needs slide_dimensions [w, h], mask_downsample and "
            f"mask ({exc!r})"
        ) from None
    if min(width, height) <= 0 or not downsample > 0:
        raise ScoreInputError(f"{summary}: slide_dimensions and mask_downsample must be positive")
    if not mask.is_file():
        raise ScoreInputError(f"{summary}: mask file {mask} not found; re-run pathda segment")
    mpp = data.get("mpp")
    names = data.get("class_names")
    if names is not None and (
        not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names)
    ):
        raise ScoreInputError(f"{summary}: class_names must be a list of class names")
    return LabelSource(
        stem=label_stem(summary.name),
        kind="segment",
        path=summary,
        mask_path=mask,
        level0_size=(width, height),
        mask_downsample=downsample,
        slide_path=str(data["slide"]) if data.get("slide") else None,
        mpp=float(mpp) if isinstance(mpp, (int, float)) else None,
        class_names=tuple(names) if names is not None else None,
    )


def _file_source(path: Path, role: str) -> LabelSource:
    lower = path.name.lower()
    if lower.endswith(SUMMARY_SUFFIX):
        return read_segment_summary(path)
    if lower.endswith(MASK_SUFFIXES):
        return LabelSource(label_stem(path.name), "mask", path, mask_path=path)
    if lower.endswith(ANNOTATION_SUFFIXES) or _is_geojson_json(path):
        return LabelSource(label_stem(path.name), "annotations", path)
    raise ScoreInputError(
        f"{path}: unknown {role} file type; expected a label mask ({', '.join(MASK_SUFFIXES)}), "
        f"annotations ({', '.join(ANNOTATION_SUFFIXES)}, GeoJSON .json) or a segment "
        f"{SUMMARY_SUFFIX}"
    )


def _is_geojson_json(path: Path) -> bool:
    from pathda.annotations import is_annotation_file

    return path.name.lower().endswith(GEOJSON_JSON_SUFFIX) and is_annotation_file(path)


def _scan_folder(folder: Path, role: str) -> list[LabelSource]:
    """Sources in ``folder``: segment summaries in it or in its sub-folders, then loose files.

    A folder holding a summary is one ``pathda segment`` slide folder (``seg/<stem>``): its
    other files (mask, GeoJSON, XML) are that summary's outputs, not more inputs.
    """
    sources = [read_segment_summary(p) for p in sorted(folder.glob(f"*{SUMMARY_SUFFIX}"))]
    if sources:
        return sources
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p)):
        summaries = sorted(sub.glob(f"*{SUMMARY_SUFFIX}"))
        if summaries:
            sources += [read_segment_summary(p) for p in summaries]
        elif any(next(sub.glob(g), None) for g in _SEGMENT_MASK_GLOBS):
            raise ScoreInputError(
                f"{sub}: segment output without a summary.json (incomplete run); "
                "re-run pathda segment for this slide or leave it out"
            )
    claimed = {s.mask_path.resolve() for s in sources if s.mask_path is not None}
    for path in sorted(folder.iterdir()):
        lower = path.name.lower()
        if not path.is_file() or _hidden(path) or path.resolve() in claimed:
            continue
        if lower.endswith(MASK_SUFFIXES + ANNOTATION_SUFFIXES) or _is_geojson_json(path):
            sources.append(_file_source(path, role))
    if not sources:
        raise ScoreInputError(
            f"{folder}: no {role} found (label masks, annotations or pathda segment outputs)"
        )
    return sources


def _hidden(path: Path) -> bool:
    # Hidden names include atomic writes in progress (".name.<pid>.partial").
    return path.name.startswith(".")


def _by_stem(sources: Sequence[LabelSource], role: str) -> dict[str, LabelSource]:
    by_stem: dict[str, LabelSource] = {}
    for source in sources:
        if source.stem in by_stem:
            raise ScoreInputError(
                f"two {role} inputs for slide {source.stem!r}: {by_stem[source.stem].path} and "
                f"{source.path}; keep one"
            )
        by_stem[source.stem] = source
    return by_stem


def _names(sources: Sequence[LabelSource], limit: int = 10) -> str:
    names = [str(s.path) for s in sources[:limit]]
    if len(sources) > limit:
        names.append(f"and {len(sources) - limit} more")
    return ", ".join(names)
