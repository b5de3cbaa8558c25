"""Registry of slide backends: a name maps to a ``Slide`` subclass that opens a path.

Backends register themselves with ``@register_backend("name")`` when their module
is imported; ``pathda.slide`` imports them all, so importing ``pathda.slide`` is
enough to see every backend.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pathda.errors import SlideOpenError
from pathda.registry import Registry
from pathda.slide.base import Slide

SlideClass = TypeVar("SlideClass", bound=type[Slide])

BACKENDS: Registry[type[Slide]] = Registry("slide backend")


def register_backend(name: str) -> Callable[[SlideClass], SlideClass]:
    """Class decorator: make a ``Slide`` subclass selectable as ``backend=name``.

    The class must take ``(path)`` as its only required constructor argument and
    raise ``SlideOpenError`` when it cannot read the file.
    """

    return BACKENDS.register(name)


def available_backends() -> list[str]:
    """Names accepted by ``open_slide(..., backend=...)``, sorted."""
    return sorted(BACKENDS.names())


def get_backend(name: str) -> type[Slide]:
    """The ``Slide`` class registered as ``name``; unknown names list the valid ones."""
    return BACKENDS.get(name)


def open_error(path: Path, reason: str, formats: str) -> SlideOpenError:
    """A ``SlideOpenError`` saying why one backend refused ``path`` and what it reads.

    The short ``reason`` rides on the exception so ``open_slide`` can list every
    backend's reason on one line when none of them can open the file.
    """
    err = SlideOpenError(f"{path}: {reason}; this reader supports {formats}")
    err.reason = reason  # type: ignore[attr-defined]
    return err
