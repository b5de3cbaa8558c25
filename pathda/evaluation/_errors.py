"""User-fixable errors raised while scoring (candidates to move into ``pathda.errors``)."""

from __future__ import annotations

from pathda.errors import PathdaError


class ScoreInputError(PathdaError):
    """Prediction or truth inputs cannot be paired, read or put on one grid."""


class LabelRangeError(ScoreInputError):
    """A label mask holds values outside 0..n_classes-1."""
