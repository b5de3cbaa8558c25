"""Reading label masks (PNG / TIFF / OME-TIFF) and sampling them onto the scoring grid.

TIFFs are read lazily through tifffile's zarr store, so only the rows and columns the
grid needs are decoded; the full-resolution level (level 0 of the file) is always used.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pathda.errors import ScoreInputError
from pathda.evaluation.labels import check_labels, row_blocks

_TIFF_SUFFIXES = (".tif", ".tiff")
# Grid pixels sampled per read (16 MB of uint8 output): large enough that each TIFF tile
# row is decoded about once rather than once per small block, small enough to stay flat.
SAMPLE_BLOCK_PIXELS = 1 << 24


class LabelImage:
    """A single-channel integer label image, read on demand.

    Attributes:
        path: the file.
        size: (width, height) in pixels of the file's full-resolution level.
    """

    def __init__(self, path: Path, array: Any, yx_index: tuple[Any, ...]) -> None:
        self.path = path
        self._array = array  # numpy array or zarr array with ``oindex``
        self._yx_index = yx_index  # fixes every axis but Y and X
        height, width = (n for n, i in zip(array.shape, yx_index, strict=True) if i is None)
        self.size = (int(width), int(height))

    def sample(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Labels at every (row, col) of two index vectors, as a (len(rows), len(cols)) array."""
        picks = iter((rows, cols))
        index = tuple(next(picks) if i is None else np.asarray([i]) for i in self._yx_index)
        if isinstance(self._array, np.ndarray):
            out = self._array[np.ix_(*index)]
        else:
            out = self._array.oindex[index]
        return out.reshape(len(rows), len(cols))


@contextlib.contextmanager
def open_label_image(path: str | Path) -> Iterator[LabelImage]:
    """Open a label mask for sampling; PNG files are decoded whole, TIFFs lazily.

    Raises:
        ScoreInputError: unreadable file, several channels, or non-integer pixels.
    """
    path = Path(path)
    if path.name.lower().endswith(_TIFF_SUFFIXES):
        with _open_tiff(path) as image:
            yield image
    else:
        yield _open_pillow(path)


def sample_labels(
    image: LabelImage, rows: np.ndarray, cols: np.ndarray, n_classes: int
) -> np.ndarray:
    """``image`` sampled at ``rows`` x ``cols`` as uint8, checked to hold labels 0..n_classes-1.

    Reads in row blocks of about 16 Mi grid pixels; zarr decodes one tile at a time, so
    memory stays near the size of the output.

    Raises:
        LabelRangeError: a label outside 0..n_classes-1, naming the file.
    """
    out = np.empty((len(rows), len(cols)), dtype=np.uint8)
    for block in row_blocks(out.shape, SAMPLE_BLOCK_PIXELS):
        try:
            values = image.sample(rows[block], cols)
        except Exception as exc:  # decoder errors come in many types
            raise ScoreInputError(f"{image.path}: cannot read label mask ({exc})") from None
        check_labels(values, n_classes, str(image.path))
        out[block] = values
    return out


@contextlib.contextmanager
def _open_tiff(path: Path) -> Iterator[LabelImage]:
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # tifffile raises several types for a bad file
        raise ScoreInputError(f"{path}: cannot open TIFF label mask ({exc})") from None
    with tif:
        try:
            series = tif.series[0]
            array = zarr.open(series.aszarr(level=0), mode="r")
        except Exception as exc:
            raise ScoreInputError(f"{path}: cannot read TIFF label mask ({exc})") from None
        yield _label_image(path, array, series.axes)


def _open_pillow(path: Path) -> LabelImage:
    # Label masks of whole slides easily exceed Pillow's decompression-bomb limit.
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            array = np.asarray(image)
    except (OSError, ValueError) as exc:
        raise ScoreInputError(f"{path}: cannot read label mask image ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if array.ndim == 3 and all(np.array_equal(array[..., 0], array[..., c]) for c in (1, 2)):
        array = array[..., 0]  # grey labels saved as RGB(A)
    axes = "YX" if array.ndim == 2 else "YXS"
    return _label_image(path, array, axes)


def _label_image(path: Path, array: Any, axes: str) -> LabelImage:
    """Wrap ``array`` whose axes are named by ``axes``; all but Y and X must have length 1."""
    dtype = np.dtype(array.dtype)
    if not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        raise ScoreInputError(
            f"{path}: label mask must hold integer labels 0..3, got {dtype} pixels"
        )
    if len(axes) != len(array.shape) or not 0 <= axes.find("Y") < axes.find("X"):
        raise ScoreInputError(f"{path}: not a 2-D label mask (axes {axes}, shape {array.shape})")
    index: list[int | None] = []
    for axis, length in zip(axes, array.shape, strict=True):
        if axis in "YX":
            index.append(None)
        elif length == 1:
            index.append(0)
        else:
            raise ScoreInputError(
                f"{path}: label mask must be single-channel, got {length} along axis {axis}; "
                "save labels 0..3 as one 8-bit grey channel"
            )
    return LabelImage(path, array, tuple(index))
