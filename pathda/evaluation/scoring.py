"""``score_predictions``: pair predictions with truths, put each pair on one grid, score it."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.progress import track

from pathda._types import IntPair
from pathda.errors import ConfigError, ScoreInputError
from pathda.evaluation.bach import bach_terms_from_confusion, score_from_terms
from pathda.evaluation.confusion import confusion_matrix
from pathda.evaluation.grid import (
    ASPECT_TOLERANCE,
    aspect_difference,
    grid_shape,
    nearest_indices,
    size_matches,
)
from pathda.evaluation.labels import N_CLASSES, check_labels
from pathda.evaluation.masks import LabelImage, open_label_image, sample_labels
from pathda.evaluation.results import ScoreConfig, ScoreReport, SlideScore
from pathda.evaluation.sources import LabelSource, discover_sources, pair_sources
from pathda.provenance import provenance

if TYPE_CHECKING:
    from pathda.annotations import ClassMap

PathsLike = str | Path | Sequence[str | Path]


@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, int]  # (rows, cols)
    step: float  # level-0 pixels per grid pixel
    level0_size: IntPair  # (width, height) the grid covers, level-0 pixels
    downsample: float | None  # as reported; None on a mask's native grid
    reference: str  # what fixed level0_size, for error messages


def score_predictions(
    pred: PathsLike,
    truth: PathsLike,
    downsample: float = 16.0,
    *,
    slide_size: IntPair | None = None,
    allow_missing: bool = False,
    class_aliases: Sequence[str] = (),
    quiet: bool = True,
) -> ScoreReport:
    """Score predicted label masks against the truth with the BACH Part B metric.

    Inputs pair by slide stem (``A01.xml`` with ``A01_mask.png`` or ``A01/A01.summary.json``).
    Each pair is compared on one grid at ``downsample`` level-0 pixels per grid pixel:
    annotations are rasterised directly on it, masks are sampled onto it by nearest
    neighbour. The level-0 size comes from a ``pathda segment`` summary, else from
    ``slide_size``; when neither exists and both inputs are masks, the finer mask's own
    pixels are the grid (reported with ``downsample`` None).

    Args:
        pred: prediction files or folders (segment outputs, label masks 0..3).
        truth: truth files or folders (ImageScope/ASAP XML, GeoJSON, label masks, segment outputs).
        downsample: level-0 pixels per scoring-grid pixel.
        slide_size: level-0 (width, height) in pixels for inputs whose summary does not give it.
        allow_missing: score only the pairs and list unmatched inputs in the report.
        class_aliases: extra label names of truth annotations, ``"NAME=CLASS"`` each.
        quiet: no progress bar.

    Raises:
        ScoreInputError: inputs cannot be paired, read or put on one grid.
        ConfigError: ``downsample`` is not a positive number.
    """
    if not (isinstance(downsample, (int, float)) and math.isfinite(downsample) and downsample > 0):
        raise ConfigError(f"downsample must be a positive number, got {downsample!r}")
    config = ScoreConfig(float(downsample), slide_size, allow_missing, tuple(class_aliases))
    _class_map(config)  # a malformed alias fails before any slide is read
    preds = discover_sources(_as_paths(pred), "prediction")
    truths = discover_sources(_as_paths(truth), "truth")
    pairs, unmatched = pair_sources(preds, truths, allow_missing)
    slides = tuple(
        score_pair(p, t, config)
        for p, t in track(pairs, description="Scoring slides", transient=True, disable=quiet)
    )
    record = provenance(
        config,
        slides=[s.slide_path or s.pred for s in slides],
        mpp=[s.mpp for s in slides],
    )
    return ScoreReport(config, slides, tuple(str(s.path) for s in unmatched), provenance=record)


def score_pair(pred: LabelSource, truth: LabelSource, config: ScoreConfig) -> SlideScore:
    """Score one prediction against its truth on the grid that ``config`` sets."""
    with contextlib.ExitStack() as stack:
        pred_image, truth_image = (
            stack.enter_context(open_label_image(src.mask_path)) if src.mask_path else None
            for src in (pred, truth)
        )
        images = [image for image in (pred_image, truth_image) if image is not None]
        grid = _scoring_grid(pred, truth, images, config)
        pred_labels = _labels_on_grid(pred, pred_image, grid, config)
        truth_labels = _labels_on_grid(truth, truth_image, grid, config)
    confusion = confusion_matrix(pred_labels, truth_labels, N_CLASSES)
    terms = bach_terms_from_confusion(confusion)
    return SlideScore(
        slide=pred.stem,
        pred=str(pred.path),
        truth=str(truth.path),
        grid_shape=grid.shape,
        downsample=grid.downsample,
        bach=score_from_terms(*terms),
        bach_terms=terms,
        confusion=confusion,
        slide_path=pred.slide_path or truth.slide_path,
        mpp=pred.mpp if pred.mpp is not None else truth.mpp,
    )


def _scoring_grid(
    pred: LabelSource, truth: LabelSource, images: list[LabelImage], config: ScoreConfig
) -> _Grid:
    known = [(s.level0_size, str(s.path)) for s in (pred, truth) if s.level0_size is not None]
    if len(known) == 2 and known[0][0] != known[1][0]:
        raise ScoreInputError(
            f"{known[0][1]} gives slide size {_wxh(known[0][0])} but {known[1][1]} gives "
            f"{_wxh(known[1][0])}; they are not the same slide"
        )
    if config.slide_size is not None:
        if known and known[0][0] != tuple(config.slide_size):
            raise ScoreInputError(
                f"`slide_size` {_wxh(config.slide_size)} disagrees with {known[0][1]} "
                f"({_wxh(known[0][0])}); leave `slide_size` unset for segment outputs"
            )
        known = known or [(tuple(config.slide_size), "the given slide size")]
    if known:
        size, reference = known[0]
        shape = grid_shape(size, config.downsample)
        return _Grid(shape, config.downsample, size, config.downsample, reference)
    for src in (pred, truth):
        if src.kind == "annotations":
            raise ScoreInputError(
                f"{src.path}: annotations need the slide's level-0 size to be rasterised; "
                "set `slide_size` (WIDTHxHEIGHT) or score against pathda segment output"
            )
    finer = max(images, key=lambda image: image.size[0] * image.size[1])
    width, height = finer.size
    return _Grid((height, width), 1.0, finer.size, None, str(finer.path))


def _labels_on_grid(
    source: LabelSource, image: LabelImage | None, grid: _Grid, config: ScoreConfig
) -> np.ndarray:
    if image is None:
        return _rasterise(source, grid, config)
    width0, height0 = grid.level0_size
    width, height = image.size
    if source.mask_downsample is not None:
        expected = (width0 / source.mask_downsample, height0 / source.mask_downsample)
        if not size_matches(image.size, expected, ASPECT_TOLERANCE):
            raise ScoreInputError(
                f"{image.path}: mask is {_wxh(image.size)} px but {source.path} (slide "
                f"{_wxh(grid.level0_size)}, mask_downsample {source.mask_downsample:g}) implies "
                f"{expected[0]:.0f}x{expected[1]:.0f}"
            )
        step_x = step_y = grid.step / source.mask_downsample
    else:
        if aspect_difference(image.size, grid.level0_size) > ASPECT_TOLERANCE:
            raise ScoreInputError(
                f"{image.path} ({_wxh(image.size)} px) and {grid.reference} "
                f"({_wxh(grid.level0_size)} px) differ in aspect ratio by more than "
                f"{ASPECT_TOLERANCE:.0%}; they cannot show the same slide"
            )
        step_x, step_y = grid.step * width / width0, grid.step * height / height0
    rows = nearest_indices(grid.shape[0], step_y, height)
    cols = nearest_indices(grid.shape[1], step_x, width)
    n_classes = len(source.class_names) if source.class_names else N_CLASSES
    labels = sample_labels(image, rows, cols, n_classes)
    return _as_bach_ids(labels, source, config)


def _as_bach_ids(labels: np.ndarray, source: LabelSource, config: ScoreConfig) -> np.ndarray:
    """A mask's labels as BACH ids, mapping its own class names (a model's) by name.

    A 3-class model (normal, benign, invasive) writes invasive as 2, which is "in situ" in
    BACH ids; the summary's class names say what each id means.

    Raises:
        UnknownClassError: a class name that is neither a BACH class nor an alias.
    """
    if source.class_names is None:
        return labels
    class_map = _class_map(config)
    lut = np.array(
        [class_map.id_of(name, f"{source.path} (prediction class)") for name in source.class_names],
        dtype=np.uint8,
    )
    return lut[labels]


def _rasterise(source: LabelSource, grid: _Grid, config: ScoreConfig) -> np.ndarray:
    # Imported here: annotation parsing is only needed when the truth is annotations.
    from pathda.annotations import check_within_slide, rasterise, read_annotations

    annotations = read_annotations(source.path)
    if annotations:  # catches the wrong slide or a wrong --slide-dims
        check_within_slide(annotations, grid.level0_size, str(source.path))
    labels = rasterise(
        annotations, _class_map(config), grid.shape, grid.step, source=str(source.path)
    )
    check_labels(labels, N_CLASSES, str(source.path))
    return labels


def _class_map(config: ScoreConfig) -> ClassMap:
    """BACH classes plus the run's aliases (annotation labels -> ids)."""
    from pathda.annotations import BACH_CLASSES, parse_class_aliases

    return BACH_CLASSES.with_aliases(parse_class_aliases(config.class_aliases))


def _as_paths(paths: PathsLike) -> list[str | Path]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def _wxh(size: IntPair) -> str:
    return f"{size[0]}x{size[1]}"
