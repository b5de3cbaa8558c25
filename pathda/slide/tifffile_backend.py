"""tifffile backend: OME-TIFF (QuPath/Bio-Formats pyramids in SubIFDs), plain TIFF and
pyramidal TIFF (SubIFDs or successive pages), and any TIFF OpenSlide refuses.

A region read decodes only the tiles (or strips) it overlaps, straight from their
byte ranges in the file, never a whole level. Decoded tiles sit in a small LRU
cache because tilers read neighbouring regions that share tiles.

Thread safety: file reads take a lock and the cache is locked, so threads may
share a ``TiffFileSlide``; processes (DataLoader workers) each open their own.
"""

from __future__ import annotations

import math
import threading
import warnings
import xml.etree.ElementTree as ET
from collections import OrderedDict
from pathlib import Path

import numpy as np
import tifffile
from tifffile.tifffile import svs_description_metadata

from pathda._types import FloatPair, IntPair
from pathda.errors import SlideReadError
from pathda.slide.array_backend import WHITE, as_rgb
from pathda.slide.base import Slide
from pathda.slide.registry import open_error, register_backend

TIFF_FORMATS = "OME-TIFF, tiled or stripped 8-bit grey/RGB/RGBA TIFF (pyramid optional)"

# Micrometres per unit for OME-XML PhysicalSize*Unit and TIFF ResolutionUnit names.
_UM_PER_UNIT = {
    "pm": 1e-6, "nm": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4,
    "m": 1e6, "Å": 1e-4, "inch": 25400.0, "centimeter": 1e4, "millimeter": 1e3,
    "micrometer": 1.0,
}  # fmt: skip
_TIFF_UNIT_NAMES = {2: "inch", 3: "centimeter", 4: "millimeter", 5: "micrometer"}
# Image writers (libtiff tools, PIL, Photoshop) stamp 72 dpi when they know nothing.
_DEFAULT_DPI = 72.0
# Format names as OpenSlide spells them, so both backends agree on what a file is.
_KIND_TO_FORMAT = {"ome": "ome-tiff", "svs": "aperio", "ndpi": "hamamatsu", "scn": "leica"}
_JPEG_CODES = (7, 34892)  # JPEG, lossy JPEG (DNG)
_TILE_CACHE_BYTES = 64 * 2**20


def mpp_from_tiff_resolution(
    x_resolution: float, y_resolution: float, unit: int | str
) -> FloatPair | None:
    """(x, y) µm/px from TIFF XResolution/YResolution (pixels per ``unit``).

    Returns None for what carries no physical meaning: unit NONE (1), zero or
    negative resolution. Exactly 72 dpi is kept, as OpenSlide does (it is what the
    file says), but warns: image writers stamp it when they know nothing, so such
    a slide usually needs an explicit ``slide_mpp``.

    Examples:
        >>> mpp_from_tiff_resolution(40000.0, 40000.0, "centimeter")
        (0.25, 0.25)
        >>> mpp_from_tiff_resolution(72.0, 72.0, 2)  # doctest: +SKIP  (warns)
        (352.77777777777777, 352.77777777777777)
    """
    name = _TIFF_UNIT_NAMES.get(unit, "none") if isinstance(unit, int) else unit.lower()
    um_per_unit = _UM_PER_UNIT.get(name)
    if um_per_unit is None or x_resolution <= 0 or y_resolution <= 0:
        return None
    mpp = (um_per_unit / x_resolution, um_per_unit / y_resolution)
    dpi = 25400.0 / mpp[0]
    if math.isclose(dpi, _DEFAULT_DPI, rel_tol=1e-4):
        warnings.warn(
            f"TIFF resolution is {_DEFAULT_DPI:g} dpi ({mpp[0]:.2f} µm/px), the default that "
            "image writers stamp; if that is not the real resolution set `slide_mpp`",
            stacklevel=2,
        )
    return mpp


def mpp_from_ome_xml(ome_xml: str) -> FloatPair | None:
    """(x, y) µm/px of the first image in OME-XML (PhysicalSizeX/Y, µm unless a unit says)."""
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    mpp = []
    for axis in ("X", "Y"):
        value = pixels.get(f"PhysicalSize{axis}")
        factor = _UM_PER_UNIT.get(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        try:
            size = float(value) * factor if value is not None and factor else None
        except ValueError:
            size = None
        if size is None or not size > 0:
            return None
        mpp.append(size)
    return (mpp[0], mpp[1])


def _mpp_from_file(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> FloatPair | None:
    if tif.is_ome and tif.ome_metadata:
        mpp = mpp_from_ome_xml(tif.ome_metadata)
        if mpp is not None:
            return mpp
    if tif.is_svs:
        try:
            svs_mpp = float(svs_description_metadata(page.description).get("MPP", 0))
        except ValueError:  # a description that only looks like Aperio's
            svs_mpp = 0.0
        if svs_mpp > 0:
            return (svs_mpp, svs_mpp)
    tags = page.tags
    if "XResolution" not in tags:
        return None
    x_num, x_den = tags["XResolution"].value
    y_num, y_den = tags["YResolution"].value if "YResolution" in tags else (x_num, x_den)
    if not x_den or not y_den:
        return None
    unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    return mpp_from_tiff_resolution(x_num / x_den, y_num / y_den, unit)


def _level_pages(path: Path, tif: tifffile.TiffFile) -> list[tifffile.TiffPage]:
    """First page of every pyramid level of the main image, checked to be decodable."""
    if not tif.series:
        raise open_error(path, "TIFF holds no image", TIFF_FORMATS)
    pages = []
    for level in tif.series[0].levels:
        if len(level.pages) != 1:
            reason = f"{len(level.pages)} planes per level (axes {level.axes}), not one RGB plane"
            raise open_error(path, reason, TIFF_FORMATS)
        page = level.pages[0]
        page = page.aspage() if isinstance(page, tifffile.TiffFrame) else page
        _check_decodable(path, page)
        pages.append(page)
    return pages


def _check_decodable(path: Path, page: tifffile.TiffPage) -> None:
    problem = None
    if page.dtype != np.uint8:
        problem = f"{page.dtype} samples (need 8-bit)"
    elif page.samplesperpixel not in (1, 3, 4) or page.imagedepth != 1:
        problem = f"{page.samplesperpixel} samples per pixel, depth {page.imagedepth}"
    elif page.planarconfig != 1 and page.samplesperpixel > 1:
        problem = "separate colour planes (PlanarConfiguration 2)"
    elif page.compression != 1 and page.compression not in tifffile.TIFF.DECOMPRESSORS:
        problem = f"unsupported TIFF compression {int(page.compression)}"
    elif page.photometric not in (0, 1, 2, 6):  # MINISWHITE, MINISBLACK, RGB, YCBCR
        problem = f"photometric interpretation {page.photometric!s}"
    if problem:
        raise open_error(path, f"cannot decode {problem}", TIFF_FORMATS)


@register_backend("tifffile")
class TiffFileSlide(Slide):
    """A TIFF slide read tile by tile with tifffile + imagecodecs.

    Args:
        path: a TIFF / OME-TIFF file. Levels are tifffile's pyramid levels of the
            first image series.

    Raises:
        SlideOpenError: not a TIFF, or samples/compression it cannot decode.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.backend = "tifffile"
        try:
            self._tif = tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, OSError, ValueError) as err:
            raise open_error(self.path, f"not a readable TIFF ({err})", TIFF_FORMATS) from None
        try:
            self._pages = _level_pages(self.path, self._tif)
        except BaseException:
            self._tif.close()
            raise
        page0 = self._pages[0]
        kind = self._tif.series[0].kind
        self.format = _KIND_TO_FORMAT.get(kind, "generic-tiff" if page0.is_tiled else "tiff")
        self.vendor = {"svs": "aperio", "ndpi": "hamamatsu", "scn": "leica"}.get(kind)
        self.properties = {"tifffile.series-kind": kind}
        if page0.description:
            self.properties["tiff.ImageDescription"] = page0.description[:1000]
        w0, h0 = page0.imagewidth, page0.imagelength
        self.level_dimensions = tuple((p.imagewidth, p.imagelength) for p in self._pages)
        # OpenSlide's convention: mean of the x and y size ratios.
        self.level_downsamples = tuple((w0 / w + h0 / h) / 2 for w, h in self.level_dimensions)
        self._mpp = _mpp_from_file(self._tif, page0)
        self._file_lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()
        self._cache_bytes = 0
        self._cache_lock = threading.Lock()

    def _read_level(self, location: IntPair, level: int, size: IntPair) -> np.ndarray:
        page = self._pages[level]
        downsample = self.level_downsamples[level]
        # Snap to the nearest level pixel (OpenSlide interpolates the sub-pixel rest).
        x = math.floor(location[0] / downsample + 0.5)
        y = math.floor(location[1] / downsample + 0.5)
        width, height = size
        out = np.full((height, width, 3), WHITE, dtype=np.uint8)
        # Clip to the level; what lies outside stays white.
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, page.imagewidth), min(y + height, page.imagelength)
        if x1 <= x0 or y1 <= y0:
            return out
        seg_h, seg_w = (page.tilelength, page.tilewidth) if page.is_tiled else (
            page.rowsperstrip, page.imagewidth)  # fmt: skip
        seg_h = min(seg_h, page.imagelength)
        per_row = math.ceil(page.imagewidth / seg_w)
        for row in range(y0 // seg_h, (y1 - 1) // seg_h + 1):
            for col in range(x0 // seg_w, (x1 - 1) // seg_w + 1):
                tile = self._segment(level, row * per_row + col, location, size)
                if tile is None:  # absent tile: nothing scanned there
                    continue
                tx, ty = col * seg_w, row * seg_h
                sx0, sy0 = max(x0, tx), max(y0, ty)
                sx1 = min(x1, tx + tile.shape[1])
                sy1 = min(y1, ty + tile.shape[0])
                part = tile[sy0 - ty : sy1 - ty, sx0 - tx : sx1 - tx]
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = part
        return out

    def _segment(
        self, level: int, index: int, location: IntPair, size: IntPair
    ) -> np.ndarray | None:
        """Decoded tile/strip ``index`` of ``level`` as (h, w, 3) RGB, None when absent."""
        key = (level, index)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        page = self._pages[level]
        offset, count = page.dataoffsets[index], page.databytecounts[index]
        if not offset or not count:
            tile = None
        else:
            with self._file_lock:
                self._tif.filehandle.seek(offset)
                data = self._tif.filehandle.read(count)
            try:
                tile = self._decode(page, index, data, count)
            except Exception as err:  # imagecodecs raises codec-specific classes
                raise SlideReadError(
                    f"{self.path}: cannot decode level {level} tile {index} while reading "
                    f"region x={location[0]} y={location[1]} (level-0 px) size "
                    f"{size[0]}x{size[1]}: {err}; the file is damaged or incompletely copied"
                ) from None
        self._remember(key, tile)
        return tile

    @staticmethod
    def _decode(page: tifffile.TiffPage, index: int, data: bytes, count: int) -> np.ndarray:
        # Codecs happily decode truncated data into grey garbage; refuse it up front.
        if len(data) < count:
            raise ValueError(f"tile data ends at end of file ({len(data)} of {count} bytes)")
        if page.compression in _JPEG_CODES and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
            raise ValueError("JPEG tile has no end-of-image marker (truncated or overwritten)")
        segment, _, shape = page.decode(
            data, index, jpegtables=page.jpegtables, jpegheader=page.jpegheader
        )
        if segment is None or segment.ndim != 4 or segment.shape[-1] != page.samplesperpixel:
            got = None if segment is None else segment.shape
            raise ValueError(f"decoded to shape {got}, expected {shape}")
        pixels = segment[0]
        if page.photometric == 0:  # MINISWHITE: 0 is white
            pixels = WHITE - pixels
        premultiplied = bool(page.extrasamples) and page.extrasamples[0] == 1
        return np.ascontiguousarray(as_rgb(pixels, premultiplied=premultiplied))

    def _remember(self, key: tuple[int, int], tile: np.ndarray | None) -> None:
        nbytes = 0 if tile is None else tile.nbytes
        with self._cache_lock:
            if key in self._cache:
                return
            self._cache[key] = tile
            self._cache_bytes += nbytes
            while self._cache_bytes > _TILE_CACHE_BYTES and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= 0 if old is None else old.nbytes

    def close(self) -> None:
        self._tif.close()
        self._cache.clear()
