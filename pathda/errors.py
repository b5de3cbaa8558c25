"""User-facing errors.

Every error a user can fix (bad path, unknown class, missing mpp, ...) is a
``PathdaError``. The CLI prints its message on one line and exits with code 2;
anything else is a bug and keeps its traceback.
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
