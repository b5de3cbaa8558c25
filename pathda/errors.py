"""User-facing errors: every exception class of pathda, in one module.

Every error a user can fix (bad path, unknown class, missing mpp, ...) is a
``PathdaError``; its message names the file or the configuration field and the fix.
The CLI prints it on one line and exits with code 2. A broken programming invariant
(a tensor of the wrong rank, an empty batch, a hook returning the wrong type) raises
``ValueError``/``TypeError`` instead: the CLI shows its traceback as a bug to report.
"""

from __future__ import annotations


class PathdaError(Exception):
    """An error caused by the user's input; its message says what to do."""


class SlideOpenError(PathdaError):
    """A slide file cannot be opened by any backend."""


class SlideReadError(PathdaError):
    """A region of an opened slide cannot be decoded."""


class MppUnknownError(PathdaError):
    """The slide has no resolution metadata and none was given."""


class AnnotationError(PathdaError):
    """An annotation file is malformed or does not fit its slide."""


class UnknownClassError(AnnotationError):
    """An annotation names a class that the class map does not know.

    Attributes:
        label: the unknown label, so a command that takes ``--class-alias`` can advise it.
    """

    def __init__(self, message: str, label: str | None = None) -> None:
        super().__init__(message)
        self.label = label


class ConfigError(PathdaError):
    """A configuration value is invalid."""


class PretrainedWeightsError(PathdaError):
    """Pretrained weights cannot be fetched (gated, offline and not cached, unknown name)."""


class AllRegionsSkippedWarning(UserWarning):
    """An annotation file has regions but none was usable: its slide reads as all background.

    A warning, not an error, because an annotator may mean it; commands collect it into
    their run summary, and strict reading turns it into an ``AnnotationError``.

    Attributes:
        path: the annotation file.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


# -- inputs -----------------------------------------------------------------------------
class InputError(PathdaError):
    """A slide, glob or manifest given to ``pathda tile`` is missing or malformed."""


class ImageReadError(PathdaError):
    """An image file is missing, unreadable, or not an 8-bit RGB(A)/grey image."""


class StainInputError(PathdaError, ValueError):
    """Tiles or reference images that are not uint8 RGB."""


# -- artefacts handed between stages ----------------------------------------------------
class TileStoreError(PathdaError):
    """A tile store is missing, unfinished, or of another format."""


class StoreDamageError(TileStoreError):
    """A tile store's files do not hold what its writer committed (missing, cut, altered)."""


class StoreLockedError(PathdaError):
    """Another process is writing the same store."""


class CheckpointError(PathdaError):
    """An inference checkpoint is missing, malformed, damaged or of an old format."""


class NonFiniteOutputError(PathdaError):
    """A model produced NaN or infinite outputs (broken weights or input)."""


# -- training and scoring ---------------------------------------------------------------
class TrainingDivergedError(PathdaError):
    """The loss became NaN or infinite."""


class ScoreInputError(PathdaError):
    """Prediction or truth inputs cannot be paired, read or put on one grid."""


class LabelRangeError(ScoreInputError):
    """A label mask holds values outside 0..n_classes-1."""
