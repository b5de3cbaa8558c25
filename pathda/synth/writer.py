"""Pyramidal tiled JPEG TIFF writer with bounded memory.

Level 0 is written tile by tile from a render callback. While a level is written, each
tile is also block-averaged by 4 into a strip buffer that is appended to a raw temporary
file; the next level is then streamed from that file strip by strip. Peak memory is
therefore a few strips (``tile_size`` rows of one level), not a whole level.

The levels are successive IFDs in the main chain, all tiled with the same tile size and
JPEG-compressed, which is what OpenSlide's ``generic-tiff`` backend requires; tifffile
reads the file as a plain multi-page TIFF (``series[0].levels``).
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import tifffile

from pathda._types import IntPair
from pathda.errors import ConfigError

LEVEL_FACTOR = 4
"""Each pyramid level is this many times smaller than the previous one (per axis)."""

SMALLEST_LEVEL_PX = 1024
"""No further level is added once the longest side of a level is at most this (pixels)."""

RenderTile = Callable[[int, int, int, int], np.ndarray]
"""``render(x0, y0, width, height)`` -> (height, width, 3) uint8 RGB at level 0 (pixels)."""


def pyramid_dimensions(size: IntPair) -> list[IntPair]:
    """(width, height) of every level, level 0 first, each ``LEVEL_FACTOR`` times smaller.

    Levels are added while the previous level's longest side exceeds ``SMALLEST_LEVEL_PX``.

    Example:
        >>> pyramid_dimensions((5000, 3000))
        [(5000, 3000), (1250, 750)]
    """
    dims = [(int(size[0]), int(size[1]))]
    while max(dims[-1]) > SMALLEST_LEVEL_PX:
        w, h = dims[-1]
        dims.append((math.ceil(w / LEVEL_FACTOR), math.ceil(h / LEVEL_FACTOR)))
    return dims


def tiff_description(mpp: float, extra: str = "") -> str:
    """ImageDescription text: says mpp but does not start with a vendor keyword (e.g. 'Aperio')."""
    text = f"pathda synthetic H&E slide|mpp={mpp:.6g}"
    return f"{text}|{extra}" if extra else text


def write_pyramid_tiff(
    path: str | Path,
    size: IntPair,
    render: RenderTile,
    mpp: float,
    tile_size: int = 512,
    quality: int = 90,
    description: str = "",
    on_tile: Callable[[], None] | None = None,
    workers: int | None = None,
) -> list[IntPair]:
    """Write a pyramidal tiled JPEG TIFF whose level 0 comes from ``render``.

    Args:
        path: output file (written directly; wrap in ``atomic_path`` for atomicity).
        size: (width, height) of level 0 in pixels.
        render: called once per level-0 tile in row-major order with full ``tile_size``
            tiles (edge tiles extend past the image; the extra pixels are cropped from
            lower levels).
        mpp: µm per level-0 pixel, stored as X/YResolution = 10000 / mpp per centimetre.
        tile_size: tile edge in pixels at every level; a multiple of 16.
        quality: JPEG quality 1..100.
        description: extra text for the ImageDescription of level 0.
        on_tile: called after each level-0 tile (progress reporting).
        workers: threads rendering tiles and encoding JPEG (default: CPU count, at most
            8); 1 renders in the calling thread. ``render`` must be thread-safe. The file
            does not depend on it.

    Returns:
        (width, height) of every level written.
    """
    if tile_size % 16 or tile_size < 16:
        raise ConfigError(f"tile size must be a positive multiple of 16, got {tile_size}")
    if not 1 <= quality <= 100:
        raise ConfigError(f"JPEG quality must be in 1..100, got {quality}")
    dims = pyramid_dimensions(size)
    res = 10000.0 / mpp  # pixels per centimetre
    common = dict(
        dtype=np.uint8,
        tile=(tile_size, tile_size),
        # RGB input: tifffile stores it as YCbCr JPEG with 2x2 chroma subsampling
        # (Photometric=YCbCr), which both OpenSlide and tifffile decode back to RGB.
        photometric="rgb",
        compression="jpeg",
        compressionargs={"level": int(quality)},
        resolution=(res, res),
        resolutionunit="CENTIMETER",
        metadata=None,
        software="pathda",
    )
    n_workers = max(1, min(8, os.cpu_count() or 1)) if workers is None else max(1, int(workers))
    common["maxworkers"] = n_workers
    # tifffile buffers up to ``buffersize`` bytes of raw tiles to encode them in parallel
    # (default 512 MB); a few tiles per worker keep the threads busy with bounded memory.
    common["buffersize"] = 4 * n_workers * tile_size * tile_size * 3
    with (
        tempfile.TemporaryDirectory(prefix=".pathda-pyramid-", dir=Path(path).parent) as tmp,
        ThreadPoolExecutor(n_workers) if n_workers > 1 else _no_pool() as pool,
    ):
        raw_paths = [Path(tmp) / f"level{i}.raw" for i in range(len(dims))]
        with tifffile.TiffWriter(path, bigtiff=True) as tif:
            for level, (w, h) in enumerate(dims):
                next_raw = raw_paths[level + 1] if level + 1 < len(dims) else None
                with _open_or_none(next_raw) as sink:
                    if level == 0:
                        source = _rendered_tile_rows(render, (w, h), tile_size, on_tile, pool)
                    else:
                        source = _stored_tile_rows(raw_paths[level], (w, h), tile_size)
                    tiles = _tiles_with_downsample(source, (w, h), tile_size, sink)
                    tif.write(
                        tiles,
                        shape=(h, w, 3),
                        subfiletype=0 if level == 0 else 1,
                        description=tiff_description(mpp, description) if level == 0 else None,
                        **common,
                    )
                raw_paths[level].unlink(missing_ok=True)
    return dims


@contextlib.contextmanager
def _no_pool() -> Iterator[None]:
    yield None


class _open_or_none:
    """Context manager: a binary file opened for writing, or None when there is no path."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.file: BinaryIO | None = None

    def __enter__(self) -> BinaryIO | None:
        if self.path is not None:
            self.file = open(self.path, "wb")
        return self.file

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def _rendered_tile_rows(
    render: RenderTile,
    size: IntPair,
    tile_size: int,
    on_tile: Callable[[], None] | None,
    pool: ThreadPoolExecutor | None,
) -> Iterator[Iterator[np.ndarray]]:
    """One lazy iterator of rendered tiles per tile row (rows must be consumed in order)."""
    w, h = size

    def checked(tiles: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for tile in tiles:
            if tile.shape != (tile_size, tile_size, 3) or tile.dtype != np.uint8:
                raise ValueError(f"render returned {tile.shape} {tile.dtype} for a tile")
            if on_tile is not None:
                on_tile()
            yield tile

    for y0 in range(0, h, tile_size):
        starts = range(0, w, tile_size)

        def one(x0: int, y0: int = y0) -> np.ndarray:
            return render(x0, y0, tile_size, tile_size)

        if pool is None:
            yield checked(one(x0) for x0 in starts)
        else:  # numpy releases the GIL in the heavy loops
            yield checked(_ordered_map(pool, one, starts, 2 * pool._max_workers))


def _ordered_map(pool: ThreadPoolExecutor, fn, items, depth: int) -> Iterator:
    """Like ``pool.map`` but with at most ``depth`` results in flight (bounded memory)."""
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _stored_tile_rows(raw: Path, size: IntPair, tile_size: int) -> Iterator[Iterator[np.ndarray]]:
    """Read a raw (h, w, 3) uint8 level strip by strip and cut it into padded tiles."""
    w, h = size
    n_cols = math.ceil(w / tile_size)
    with open(raw, "rb") as f:
        for y0 in range(0, h, tile_size):
            rows = min(tile_size, h - y0)
            strip = np.frombuffer(f.read(rows * w * 3), np.uint8).reshape(rows, w, 3)
            # Edge padding keeps the block means of the last partial blocks unbiased.
            padded = np.pad(
                strip, ((0, tile_size - rows), (0, n_cols * tile_size - w), (0, 0)), mode="edge"
            )
            yield iter([padded[:, i * tile_size : (i + 1) * tile_size] for i in range(n_cols)])


def _tiles_with_downsample(
    rows: Iterator[Iterator[np.ndarray]], size: IntPair, tile_size: int, sink: BinaryIO | None
) -> Iterator[np.ndarray]:
    """Yield tiles row-major; append each row's 4x block mean, cropped, to ``sink``.

    Only the block means of the current row are kept, not its tiles.
    """
    w, h = size
    n_cols = math.ceil(w / tile_size)
    small = tile_size // LEVEL_FACTOR
    next_w, next_h = math.ceil(w / LEVEL_FACTOR), math.ceil(h / LEVEL_FACTOR)
    for row_index, row in enumerate(rows):
        means = []
        for col, tile in enumerate(row):
            if sink is not None:
                means.append(block_mean(tile, LEVEL_FACTOR))
                # Written before the row's last tile is yielded: tifffile stops pulling
                # once it has the last tile of the level.
                if col == n_cols - 1:
                    strip = np.concatenate(means, axis=1)
                    rows_left = min(small, next_h - row_index * small)
                    sink.write(np.ascontiguousarray(strip[:rows_left, :next_w]).tobytes())
            yield tile


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor`` x ``factor`` pixel blocks of an (h, w, c) uint8 image, rounded.

    ``h`` and ``w`` must be multiples of ``factor``.
    """
    h, w, c = image.shape
    blocks = image.reshape(h // factor, factor, w // factor, factor, c)
    total = blocks.sum(axis=(1, 3), dtype=np.uint32)
    return ((total + factor * factor // 2) // (factor * factor)).astype(np.uint8)
