"""The one slide interface every backend implements.

Coordinates: ``location`` is always (x, y) in level-0 pixels; ``size`` is
(width, height) in pixels *at the level or resolution being read*. Images come
back as ``(height, width, 3)`` RGB uint8, with transparency composited over white.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from PIL import Image

from pathda._types import FloatPair, IntPair
from pathda.errors import MppUnknownError

# A level is usable for a target resolution if it is at most this much coarser
# (float noise in reported downsamples, e.g. 3.99997 instead of 4).
_DOWNSAMPLE_TOLERANCE = 1e-3
_THUMBNAIL_STRIP_PX = 512  # output rows per read when making a thumbnail


class Slide(ABC):
    """A multi-resolution whole-slide image.

    Subclasses set the attributes in ``__init__`` and implement ``_read_level``.
    """

    path: Path
    backend: str
    format: str
    vendor: str | None
    level_dimensions: tuple[IntPair, ...]
    level_downsamples: tuple[float, ...]
    properties: dict[str, str]
    _mpp: FloatPair | None

    # -- metadata -----------------------------------------------------------
    @property
    def dimensions(self) -> IntPair:
        """(width, height) of level 0 in pixels."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def mpp(self) -> FloatPair | None:
        """(x, y) microns per pixel at level 0, or None when the file does not say."""
        return self._mpp

    def set_mpp(self, mpp: float | FloatPair) -> None:
        """Override the resolution (µm/px at level 0), e.g. from a ``slide_mpp`` setting."""
        pair = (float(mpp), float(mpp)) if np.isscalar(mpp) else tuple(map(float, mpp))
        if not all(v > 0 and math.isfinite(v) for v in pair):
            raise MppUnknownError(f"{self.path}: mpp must be positive, got {mpp}")
        self._mpp = pair  # type: ignore[assignment]

    def require_mpp(self) -> float:
        """Mean level-0 µm/px; raises a user error naming the file when unknown."""
        if self._mpp is None:
            raise MppUnknownError(
                f"{self.path}: resolution (µm/px) unknown; set it with `slide_mpp` (level-0 µm/px)"
            )
        return float(sum(self._mpp) / 2)

    # -- reading ------------------------------------------------------------
    @abstractmethod
    def _read_level(self, location: IntPair, level: int, size: IntPair) -> np.ndarray:
        """Read ``size`` pixels at ``level`` starting at level-0 ``location``.

        Must return (h, w, 3) uint8 RGB; pixels outside the slide are white.
        Decode failures raise ``SlideReadError`` naming the file and region.
        """

    def read_region(self, location: IntPair, level: int, size: IntPair) -> np.ndarray:
        """Read a region at a pyramid level.

        Args:
            location: (x, y) of the top-left corner in level-0 pixels.
            level: pyramid level index (0 = full resolution).
            size: (width, height) in pixels at ``level``.

        Returns:
            (height, width, 3) uint8 RGB.
        """
        if not 0 <= level < self.level_count:
            raise IndexError(f"{self.path}: level {level} not in 0..{self.level_count - 1}")
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise ValueError(f"region size must be positive, got {size}")
        return self._read_level((int(location[0]), int(location[1])), level, (w, h))

    def best_level_for_downsample(self, downsample: float) -> int:
        """Index of the coarsest level that is still at least as fine as ``downsample``."""
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample * (1 + _DOWNSAMPLE_TOLERANCE):
                best = i if ds >= self.level_downsamples[best] else best
        return best

    def read_at_downsample(self, location: IntPair, size: IntPair, downsample: float) -> np.ndarray:
        """Read ``size`` output pixels at an arbitrary downsample of level 0.

        The region covers level-0 pixels ``location .. location + size * downsample``.
        The best pyramid level is read and resized (area averaging when shrinking).
        """
        level = self.best_level_for_downsample(downsample)
        level_ds = self.level_downsamples[level]
        scale = downsample / level_ds  # >= 1 (up to tolerance): level pixels per output pixel
        out_w, out_h = int(size[0]), int(size[1])
        read_w = max(1, math.ceil(out_w * scale))
        read_h = max(1, math.ceil(out_h * scale))
        img = self.read_region(location, level, (read_w, read_h))
        if (read_w, read_h) == (out_w, out_h):
            return img
        resample = Image.Resampling.BOX if scale >= 1 else Image.Resampling.BILINEAR
        # Resize the exact footprint (out * scale level pixels), not the ceil-padded read.
        box = (0.0, 0.0, out_w * scale, out_h * scale)
        return np.asarray(Image.fromarray(img).resize((out_w, out_h), resample, box=box))

    def read_at_mpp(self, location: IntPair, size: IntPair, mpp: float) -> np.ndarray:
        """Read ``size`` output pixels at a target resolution of ``mpp`` µm/px.

        Args:
            location: (x, y) top-left in level-0 pixels.
            size: (width, height) in output pixels (at ``mpp``).
            mpp: target microns per pixel.
        """
        return self.read_at_downsample(location, size, mpp / self.require_mpp())

    def thumbnail(self, mpp: float | None = None, max_size: int | None = None) -> np.ndarray:
        """Whole-slide image at ``mpp`` µm/px, or fitting in ``max_size`` pixels.

        Exactly one of ``mpp`` and ``max_size`` must be given. The result is never
        enlarged beyond level 0: callers derive the actual scale from its shape.
        """
        if (mpp is None) == (max_size is None):
            raise ValueError("give exactly one of mpp and max_size")
        w0, h0 = self.dimensions
        downsample = (
            mpp / self.require_mpp() if mpp is not None else max(w0, h0) / float(max_size)  # type: ignore[arg-type]
        )
        downsample = max(downsample, 1.0)  # a thumbnail is never larger than level 0
        width, height = max(1, round(w0 / downsample)), max(1, round(h0 / downsample))
        # Read in strips of rows: one read of the whole pyramid level (plus its resized
        # copy) would hold several full-size images at once on large slides.
        out = np.empty((height, width, 3), np.uint8)
        for top in range(0, height, _THUMBNAIL_STRIP_PX):
            rows = min(_THUMBNAIL_STRIP_PX, height - top)
            location = (0, round(top * downsample))
            out[top : top + rows] = self.read_at_downsample(location, (width, rows), downsample)
        return out

    # -- lifecycle ----------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - backends without handles need nothing
        """Release file handles."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mpp = f"{self.require_mpp():.4f}" if self._mpp else "unknown"
        return (
            f"{type(self).__name__}({self.path.name!s}, {self.dimensions[0]}x{self.dimensions[1]}, "
            f"levels={self.level_count}, mpp={mpp})"
        )
