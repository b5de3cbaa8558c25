"""Scoring stage: BACH Part B score, confusion matrix, Dice and IoU of predicted label masks.

Public entry point: :func:`score_predictions`. The metric maths (:func:`bach_terms`,
:func:`bach_score`, :func:`confusion_matrix`, ...) are pure numpy on label arrays.
"""

from pathda.evaluation.bach import (
    bach_score,
    bach_terms,
    bach_terms_from_confusion,
    score_from_terms,
)
from pathda.evaluation.confusion import (
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    pixel_accuracy,
)
from pathda.evaluation.outputs import score_table, write_report
from pathda.evaluation.results import ScoreConfig, ScoreReport, SlideScore
from pathda.evaluation.scoring import score_predictions

__all__ = [
    "ScoreConfig",
    "ScoreReport",
    "SlideScore",
    "bach_score",
    "bach_terms",
    "bach_terms_from_confusion",
    "confusion_matrix",
    "dice_per_class",
    "iou_per_class",
    "pixel_accuracy",
    "score_from_terms",
    "score_predictions",
    "score_table",
    "write_report",
]
