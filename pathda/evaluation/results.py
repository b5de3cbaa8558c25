"""What scoring produces: per-slide scores and the report over all slides."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pathda import layout
from pathda._types import IntPair
from pathda.annotations.classmap import BACH_CLASSES
from pathda.evaluation.confusion import dice_per_class, iou_per_class, pixel_accuracy
from pathda.provenance import to_jsonable


@dataclass(frozen=True)
class ScoreConfig:
    """Settings of one scoring run.

    Attributes:
        downsample: scoring grid resolution, level-0 pixels per grid pixel.
        slide_size: (width, height) of level 0 in pixels for inputs that do not say
            (plain masks, annotations); ``None`` to take it from segment summaries.
        allow_missing: score the pairs and list unmatched inputs instead of failing.
        class_aliases: extra annotation label names for truth annotations, as
            ``"NAME=CLASS"`` (as ``pathda tile``'s ``class_aliases``).
    """

    downsample: float = 16.0
    slide_size: IntPair | None = None
    allow_missing: bool = False
    class_aliases: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class SlideScore:
    """Scores of one slide on the scoring grid.

    Attributes:
        slide: slide stem both inputs were paired by.
        pred: prediction file (summary JSON, mask or annotations).
        truth: truth file.
        grid_shape: (rows, cols) of the scoring grid.
        downsample: level-0 pixels per grid pixel; ``None`` when no input knew the
            level-0 size and the finer mask's own pixels were the grid.
        bach: BACH Part B score in [0, 1] (1.0 when both are all normal).
        bach_terms: (numerator, denominator) of the score, to pool over slides or tiles.
        confusion: pixel counts, rows = truth, columns = prediction.
        slide_path: the slide, when a segment summary named it.
        mpp: level-0 µm/px of the slide, when a segment summary gave it.
    """

    slide: str
    pred: str
    truth: str
    grid_shape: tuple[int, int]
    downsample: float | None
    bach: float
    bach_terms: tuple[int, int]
    confusion: np.ndarray
    slide_path: str | None = None
    mpp: float | None = None

    @property
    def accuracy(self) -> float:
        """Fraction of grid pixels labelled correctly."""
        return pixel_accuracy(self.confusion)

    @property
    def dice(self) -> np.ndarray:
        """Dice per class; NaN for a class absent from both truth and prediction."""
        return dice_per_class(self.confusion)

    @property
    def iou(self) -> np.ndarray:
        """IoU per class; NaN for a class absent from both truth and prediction."""
        return iou_per_class(self.confusion)

    def to_dict(self, class_names: tuple[str, ...] = BACH_CLASSES.names) -> dict[str, Any]:
        return {
            "slide": self.slide,
            "pred": self.pred,
            "truth": self.truth,
            "slide_path": self.slide_path,
            "mpp": self.mpp,
            "grid": {"shape_hw": list(self.grid_shape), "downsample": self.downsample},
            "bach": _finite_or_none(self.bach),
            "bach_numerator": self.bach_terms[0],
            "bach_denominator": self.bach_terms[1],
            "accuracy": _finite_or_none(self.accuracy),
            "dice": _per_class(self.dice, class_names),
            "iou": _per_class(self.iou, class_names),
            "confusion": self.confusion.tolist(),
        }


@dataclass(frozen=True)
class ScoreReport:
    """Scores of every paired slide, their means, and how they were made.

    Means are over slides (each slide weighs the same, as in the BACH challenge);
    a class's mean Dice/IoU skips slides where it is undefined and is NaN if it
    is undefined on all of them. ``confusion`` pools pixels over all slides.
    """

    config: ScoreConfig
    slides: tuple[SlideScore, ...]
    unmatched: tuple[str, ...] = ()
    class_names: tuple[str, ...] = BACH_CLASSES.names
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_bach(self) -> float:
        return float(np.mean([s.bach for s in self.slides]))

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean([s.accuracy for s in self.slides]))

    @property
    def mean_dice(self) -> np.ndarray:
        return _nanmean_rows([s.dice for s in self.slides])

    @property
    def mean_iou(self) -> np.ndarray:
        return _nanmean_rows([s.iou for s in self.slides])

    @property
    def confusion(self) -> np.ndarray:
        """Pixel counts pooled over all slides (rows = truth, columns = prediction)."""
        return np.sum([s.confusion for s in self.slides], axis=0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (undefined scores become ``None``)."""
        names = self.class_names
        return {
            "format": layout.SCORES_FORMAT,
            "metric": "BACH Part B: 1 - sum|p-g| / sum max(g, 3-g) over pixels where p>0 or g>0",
            "class_names": list(names),
            "slides": [s.to_dict(names) for s in self.slides],
            "mean": {
                "n_slides": len(self.slides),
                "bach": _finite_or_none(self.mean_bach),
                "accuracy": _finite_or_none(self.mean_accuracy),
                "dice": _per_class(self.mean_dice, names),
                "iou": _per_class(self.mean_iou, names),
            },
            "confusion": {
                "rows": "truth",
                "columns": "prediction",
                "counts": self.confusion.tolist(),
                "pooled_dice": _per_class(dice_per_class(self.confusion), names),
            },
            "unmatched": list(self.unmatched),
            "config": to_jsonable(self.config),
            "provenance": self.provenance,
        }


def _nanmean_rows(rows: list[np.ndarray]) -> np.ndarray:
    stack = np.asarray(rows, dtype=np.float64)
    defined = ~np.isnan(stack)
    counts = defined.sum(axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(defined, stack, 0.0).sum(axis=0) / np.where(counts, counts, np.nan)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _per_class(values: np.ndarray, names: tuple[str, ...]) -> dict[str, float | None]:
    return {name: _finite_or_none(v) for name, v in zip(names, values, strict=True)}
