"""Slide reading: ``open_slide`` picks a backend for a whole-slide image file.

Backends (see ``available_backends()``):

- ``openslide``: Aperio SVS, Hamamatsu NDPI, MIRAX, Leica SCN, Philips, Ventana,
  DICOM WSI and generic tiled TIFF.
- ``tifffile``: OME-TIFF (e.g. QuPath / Bio-Formats exports with the pyramid in
  SubIFDs), plain and pyramidal TIFF, and TIFFs OpenSlide refuses.

``ArraySlide`` wraps a numpy array as a slide for tests.

Examples:
    >>> from pathda.slide import open_slide
    >>> with open_slide("slide.svs") as slide:  # doctest: +SKIP
    ...     patch = slide.read_at_mpp((1000, 2000), (256, 256), mpp=1.0)
"""

from __future__ import annotations

from pathlib import Path

from pathda.errors import SlideOpenError
from pathda.slide.array_backend import ArraySlide
from pathda.slide.base import Slide
from pathda.slide.openslide_backend import OPENSLIDE_FORMATS, detect_openslide_format
from pathda.slide.registry import available_backends, get_backend
from pathda.slide.tifffile_backend import TIFF_FORMATS

__all__ = ["ArraySlide", "Slide", "available_backends", "open_slide"]

# For a generic tiled JPEG TIFF both backends work; bench/read_throughput.py measured
# the tifffile backend at ~2x OpenSlide's rate for random 256 px reads and 3.5-8x for
# grid reads (decoded-tile cache), so it goes first. Vendor formats stay with
# OpenSlide, which knows their quirks.
_GENERIC_TIFF_BACKENDS = ("tifffile", "openslide")


def open_slide(path: str | Path, backend: str | None = None, mpp: float | None = None) -> Slide:
    """Open a whole-slide image.

    Args:
        path: slide file (for DICOM WSI, any ``.dcm`` file of the slide).
        backend: a name from ``available_backends()``; None picks one from the
            file's format and falls back to the others if it cannot open the file.
        mpp: level-0 µm/px overriding what the file says (or filling in when it
            says nothing).

    Returns:
        An open ``Slide``; close it, or use it as a context manager.

    Raises:
        SlideOpenError: missing file, or no backend can read it.
        ConfigError: unknown backend name.
    """
    path = Path(path)
    if backend is not None:
        backend_class = get_backend(backend)  # unknown names fail before touching the file
    if not path.exists():
        raise SlideOpenError(f"{path}: no such file")
    if path.is_dir():
        raise SlideOpenError(
            f"{path}: is a folder; give the slide file (for DICOM, any .dcm file of the slide)"
        )
    slide = backend_class(path) if backend is not None else _open_auto(path)
    if mpp is not None:
        slide.set_mpp(mpp)
    return slide


def _backend_order(path: Path) -> tuple[str, ...]:
    """Backends to try for ``path``, best first."""
    vendor = detect_openslide_format(path)
    if vendor is None:
        return ("tifffile",)
    if vendor == "generic-tiff":
        return _GENERIC_TIFF_BACKENDS
    return ("openslide", "tifffile")


def _open_auto(path: Path) -> Slide:
    reasons = []
    for name in _backend_order(path):
        try:
            return get_backend(name)(path)
        except SlideOpenError as err:
            reasons.append(f"{name}: {getattr(err, 'reason', err)}")
    raise SlideOpenError(
        f"{path}: cannot open as a slide ({'; '.join(reasons)}). Supported: "
        f"{OPENSLIDE_FORMATS} (OpenSlide); {TIFF_FORMATS} (tifffile)"
    )
