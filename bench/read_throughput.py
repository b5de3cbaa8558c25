"""Read throughput of the slide backends: 256 x 256 level-0 tiles per second.

Makes (or takes with --slide) a pyramidal tiled JPEG TIFF (``--source synth``:
pathda.synth's H&E-like slide; ``texture``: a quick tiled noise texture), then for each reader
times N reads at random level-0 locations ("random") and N reads walking a
row-major grid of adjacent tiles ("grid", what a tiler does), one thread.

Readers: raw ``openslide.OpenSlide.read_region`` (the floor: no compositing),
pathda's openslide and tifffile backends, MONAI ``WSIReader`` with its
openslide and tifffile backends, and tifffile's zarr store (a reference for the
tifffile backend's own tile decoding).

MONAI's tifffile reader decodes the whole level for every patch, so each reader
also gets a time budget (--budget-s) and stops early when it runs out.

Usage:
    .venv/bin/python bench/read_throughput.py [--slide S.tif] [--size 20000] [-n 300]
        [--source synth|texture] [--out DIR (keep the made slide)]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openslide
import tifffile
import zarr
from PIL import Image
from rich.console import Console
from rich.table import Table

from pathda.slide import open_slide

TILE = 256  # read size, level-0 px

Reader = Callable[[int, int], np.ndarray]  # (x, y) level-0 px -> (256, 256, 3) uint8


def _texture_bank(count: int, size: int, seed: int) -> list[np.ndarray]:
    """H&E-looking noise tiles: pink stroma, purple blobs, some white glass."""
    rng = np.random.default_rng(seed)
    pink, purple, white = np.array([[233, 150, 190], [110, 60, 150], [245, 245, 245]], float)
    bank = []
    for _ in range(count):
        fields = []
        for cells in (4, 16, 64):
            coarse = rng.random((cells, cells)).astype(np.float32)
            img = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
            fields.append(np.asarray(img))
        tissue = np.clip(fields[0] * 1.6 - 0.3, 0, 1)[..., None]
        nuclei = np.clip((fields[2] - 0.6) * 4, 0, 1)[..., None]
        rgb = white + tissue * (pink - white) + tissue * nuclei * (purple - pink)
        rgb += (fields[1][..., None] - 0.5) * 30 + rng.normal(0, 4, (size, size, 1))
        bank.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return bank


def make_test_slide(path: Path, size: int, tile: int = 512, seed: int = 0) -> Path:
    """Write a ``size`` x ``size`` px pyramidal tiled JPEG TIFF (levels: successive pages).

    Tiles are drawn from a bank of textures, so lower levels are not exact
    downsamples of level 0 (irrelevant for level-0 throughput). 0.25 µm/px.
    """
    bank = _texture_bank(24, tile, seed)
    rng = np.random.default_rng(seed + 1)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        level_size, first = size, True
        while first or level_size >= tile:
            n_tiles = math.ceil(level_size / tile) ** 2
            picks = rng.integers(0, len(bank), n_tiles)
            tif.write(
                (bank[i] for i in picks),
                shape=(level_size, level_size, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": 85},
                subfiletype=0 if first else 1,
                resolution=(1e4 / 0.25, 1e4 / 0.25) if first else None,
                resolutionunit="CENTIMETER" if first else None,
            )
            level_size, first = level_size // 2, False
    return path


def _make_slide(folder: Path, source: str, size: int, seed: int) -> Path:
    if source == "synth":
        from pathda.synth import synthesise_slides

        made = synthesise_slides(
            folder, n=1, size=(size, size), seed=seed, annotate=False, mask_downsample=64
        )
        return made[0].image
    return make_test_slide(folder / f"texture_{size}.tif", size, seed=seed)


def _readers(path: Path) -> dict[str, tuple[Reader, Callable[[], None]]]:
    try:  # the reference readers come from the optional `bench` extra
        from monai.data import WSIReader
    except ImportError:
        WSIReader = None
        print("monai not installed (pip install -e '.[bench]'): its readers are skipped")

    readers: dict[str, tuple[Reader, Callable[[], None]]] = {}
    osr = openslide.OpenSlide(str(path))
    readers["openslide (raw, RGBA)"] = (
        lambda x, y: np.asarray(osr.read_region((x, y), 0, (TILE, TILE))),
        osr.close,
    )
    for backend in ("openslide", "tifffile"):
        slide = open_slide(path, backend=backend)
        readers[f"pathda {backend}"] = (
            lambda x, y, s=slide: s.read_region((x, y), 0, (TILE, TILE)),
            slide.close,
        )
    for backend in ("openslide", "tifffile") if WSIReader is not None else ():
        reader = WSIReader(backend=backend, level=0, channel_dim=-1)
        wsi = reader.read(str(path))
        readers[f"monai {backend}"] = (
            lambda x, y, r=reader, w=wsi: r.get_data(w, location=(y, x), size=(TILE, TILE))[0],
            lambda w=wsi: w.close(),
        )
    tif = tifffile.TiffFile(path)
    level0 = zarr.open(tif.series[0].aszarr(level=0), mode="r")
    readers["tifffile aszarr (ref)"] = (
        lambda x, y: np.asarray(level0[y : y + TILE, x : x + TILE]),
        tif.close,
    )
    return readers


def _locations(pattern: str, count: int, width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if pattern == "random":
        xs = rng.integers(0, width - TILE, count)
        ys = rng.integers(0, height - TILE, count)
        return np.stack([xs, ys], axis=1)
    per_row = min(40, (width - TILE) // TILE)
    x0, y0 = rng.integers(0, width - per_row * TILE), rng.integers(0, height // 2)
    idx = np.arange(count)
    return np.stack([x0 + (idx % per_row) * TILE, y0 + (idx // per_row) * TILE], axis=1)


def _time_reads(read: Reader, locations: np.ndarray, budget_s: float) -> tuple[float, int]:
    read(int(locations[0, 0]), int(locations[0, 1]))  # warm-up: lazy handles, first tile
    done, start = 0, time.perf_counter()
    for x, y in locations:
        tile = read(int(x), int(y))
        assert tile.shape[:2] == (TILE, TILE), tile.shape
        done += 1
        if time.perf_counter() - start > budget_s:
            break
    return done / (time.perf_counter() - start), done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slide", type=Path, help="slide to read (default: make one)")
    parser.add_argument("--size", type=int, default=20000, help="made slide side, level-0 px")
    parser.add_argument("-n", "--reads", type=int, default=300, help="reads per reader/pattern")
    parser.add_argument("--budget-s", type=float, default=15.0, help="time cap per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", choices=("synth", "texture"), default="synth")
    parser.add_argument("--out", type=Path, help="keep the made slide in this folder")
    args = parser.parse_args()
    console = Console()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.slide
        if path is None:
            start = time.perf_counter()
            folder = args.out or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            path = _make_slide(folder, args.source, args.size, args.seed)
            console.print(
                f"made {args.size}x{args.size} {args.source} slide "
                f"({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - start:.1f} s"
            )
        with open_slide(path) as slide:
            width, height = slide.dimensions
            console.print(f"{path.name}: {slide!r}, default backend {slide.backend}")
        readers = _readers(path)
        table = Table(title=f"{TILE}x{TILE} level-0 reads, 1 thread (tiles/s)")
        for column in ("reader", "random", "grid", "reads", "max |Δ| vs raw"):
            table.add_column(column, justify="left" if column == "reader" else "right")
        reference = readers["openslide (raw, RGBA)"][0](1000, 1000)[..., :3].astype(int)
        for name, (read, close) in readers.items():
            rates, counts = [], []
            for pattern in ("random", "grid"):
                where = _locations(pattern, args.reads, width, height, args.seed)
                rate, count = _time_reads(read, where, args.budget_s)
                rates.append(f"{rate:,.1f}")
                counts.append(str(count))
            diff = int(np.abs(read(1000, 1000)[..., :3].astype(int) - reference).max())
            table.add_row(name, *rates, "/".join(counts), str(diff))
            close()
        console.print(table)


if __name__ == "__main__":
    main()
