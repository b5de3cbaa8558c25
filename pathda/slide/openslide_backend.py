"""OpenSlide backend: Aperio SVS, Hamamatsu NDPI/VMS, MIRAX, Leica SCN, Philips, Ventana,
DICOM WSI and generic tiled TIFF.

Thread safety: libopenslide handles concurrent ``read_region`` calls on one handle,
so threads may share an ``OpenSlideSlide``. Processes must not: each DataLoader
worker opens its own slide (handles do not survive fork/pickle reliably).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import openslide

from pathda._types import FloatPair, IntPair
from pathda.errors import SlideReadError
from pathda.slide.array_backend import composite_over_white
from pathda.slide.base import Slide
from pathda.slide.registry import open_error, register_backend
from pathda.slide.tifffile_backend import mpp_from_tiff_resolution

OPENSLIDE_FORMATS = (
    "Aperio SVS, Hamamatsu NDPI/VMS/VMU, MIRAX MRXS, Leica SCN, Philips TIFF, "
    "Sakura SVSLIDE, Trestle, Ventana BIF, DICOM WSI, generic tiled TIFF"
)


def detect_openslide_format(path: str | Path) -> str | None:
    """OpenSlide's name for the file's format ("aperio", "dicom", ...), or None."""
    try:
        return openslide.OpenSlide.detect_format(str(path))
    except openslide.OpenSlideError:
        return None


def mpp_from_openslide_properties(properties: dict[str, str]) -> FloatPair | None:
    """Level-0 (x, y) µm/px from OpenSlide properties, or None when absent.

    For generic TIFF, OpenSlide derives ``openslide.mpp-*`` from the TIFF
    resolution tags; that is re-derived here with the same rules as the tifffile
    backend (unit NONE is unknown; 72 dpi is kept with a warning) so both backends
    agree.
    """
    if properties.get("openslide.vendor") == "generic-tiff":
        if "tiff.XResolution" not in properties:
            return None
        unit = properties.get("tiff.ResolutionUnit", "inch")
        return mpp_from_tiff_resolution(
            float(properties["tiff.XResolution"]),
            float(properties.get("tiff.YResolution", properties["tiff.XResolution"])),
            unit,
        )
    try:
        mpp = (float(properties["openslide.mpp-x"]), float(properties["openslide.mpp-y"]))
    except (KeyError, ValueError):
        return None
    return mpp if all(v > 0 for v in mpp) else None


@register_backend("openslide")
class OpenSlideSlide(Slide):
    """A slide read through libopenslide.

    Args:
        path: the slide file (for DICOM, any ``.dcm`` file of the slide; OpenSlide
            finds the other levels in the same folder).

    Raises:
        SlideOpenError: OpenSlide does not recognise or cannot parse the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.backend = "openslide"
        self._lock = threading.Lock()
        self._osr = self._open()
        self.format = detect_openslide_format(self.path) or "unknown"
        self.properties = dict(self._osr.properties)
        self.vendor = self.properties.get("openslide.vendor")
        self.level_dimensions = tuple(tuple(map(int, d)) for d in self._osr.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in self._osr.level_downsamples)
        self._mpp = mpp_from_openslide_properties(self.properties)

    def _open(self) -> openslide.OpenSlide:
        try:
            return openslide.OpenSlide(str(self.path))
        except openslide.OpenSlideUnsupportedFormatError:
            raise open_error(self.path, "not a format OpenSlide knows", OPENSLIDE_FORMATS) from None
        except openslide.OpenSlideError as err:
            raise open_error(self.path, str(err), OPENSLIDE_FORMATS) from None

    def _read_level(self, location: IntPair, level: int, size: IntPair) -> np.ndarray:
        osr = self._osr
        try:
            rgba = osr.read_region(location, level, size)
        except openslide.OpenSlideError as err:
            # libopenslide latches the first error: every later call on this handle
            # fails too. Reopen so the other (good) regions stay readable.
            self._reopen(osr)
            raise SlideReadError(
                f"{self.path}: cannot decode level {level} region x={location[0]} "
                f"y={location[1]} (level-0 px) size {size[0]}x{size[1]}: {err}; "
                "the file is damaged or incompletely copied"
            ) from None
        # openslide-python un-premultiplies: straight alpha, 0 outside the scanned area.
        return composite_over_white(np.asarray(rgba))

    def _reopen(self, broken: openslide.OpenSlide) -> None:
        with self._lock:
            if self._osr is not broken:  # another thread already reopened it
                return
            broken.close()
            self._osr = self._open()

    def close(self) -> None:
        self._osr.close()
