"""Tiling throughput: ``tile_slides`` against a naive per-tile loop, plus store read speed.

The naive loop is what a first script does: for every grid cell, one OpenSlide
``read_region`` at the best pyramid level, resize to the patch size, a saturation
tissue check, and one zarr write per kept patch. Both run in this process on the same
synthetic slide (``pathda.synth``, cached between runs), and the table gives tiles/s
and the speed-up. Random reads of the finished store are timed through ``TileStore``
(direct shard reads) and through plain zarr.

Usage:
    python bench/tile_bench.py [--size 20000] [--cache /tmp/pathda-bench] [--workers 1 2]
        [--slide any.svs]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import openslide
import zarr
from PIL import Image
from rich.console import Console
from rich.table import Table
from skimage.color import rgb2hsv

from pathda.synth import synthesise_slides
from pathda.tiling import TileConfig, TileStore, tile_slides
from pathda.tiling.grid import make_grid

MPP = 4 * 0.467
PATCH = 64
MIN_TISSUE = 0.5


def synthetic_slide(cache: Path, size: int) -> Path:
    """A cached synthetic slide of ``size`` x ``size`` px at 0.467 µm/px."""
    folder = cache / f"synth{size}"
    existing = sorted(folder.glob("*.tiff"))
    if existing:
        return existing[0]
    print(f"synthesising a {size} x {size} slide into {folder} (once; cached)...")
    return synthesise_slides(folder, n=1, size=(size, size), prefix=f"bench{size}", quiet=True)[
        0
    ].image


def naive_tiling(slide_path: Path, out: Path) -> tuple[int, float]:
    """Per-tile reads, tissue check and writes; returns (tiles kept, seconds)."""
    started = time.perf_counter()
    slide = openslide.OpenSlide(str(slide_path))
    slide_mpp = float(slide.properties.get(openslide.PROPERTY_NAME_MPP_X, 0.467))
    grid = make_grid(slide.dimensions, slide_mpp, MPP, PATCH, PATCH)
    level = slide.get_best_level_for_downsample(grid.downsample + 1e-6)
    read_px = round(PATCH * grid.downsample / slide.level_downsamples[level])
    store = zarr.open_array(
        out, mode="w", shape=(1024, PATCH, PATCH, 3), chunks=(1, PATCH, PATCH, 3), dtype="uint8"
    )
    kept = 0
    for r in range(grid.rows):
        for c in range(grid.cols):
            x, y = grid.origins(np.array([r]), np.array([c]))
            region = slide.read_region((int(x[0]), int(y[0])), level, (read_px, read_px))
            patch = np.asarray(region.convert("RGB").resize((PATCH, PATCH), Image.BILINEAR))
            if (rgb2hsv(patch)[..., 1] > 0.07).mean() < MIN_TISSUE:
                continue
            if kept == store.shape[0]:
                store.resize((2 * kept, PATCH, PATCH, 3))
            store[kept] = patch
            kept += 1
    store.resize((kept, PATCH, PATCH, 3))
    return kept, time.perf_counter() - started


def pathda_tiling(slide_path: Path, out: Path, parallel: str, workers: int) -> tuple[int, float]:
    config = TileConfig(
        mpp=MPP, patch_size=PATCH, min_tissue=MIN_TISSUE, parallel=parallel, workers=workers
    )
    started = time.perf_counter()
    tile_slides([slide_path], out, config, quiet=True)
    seconds = time.perf_counter() - started
    return len(TileStore(out)), seconds


def read_speed(store_path: Path, n: int = 2000) -> list[tuple[str, float]]:
    """Random patch reads per second: TileStore single/batch, plain zarr single/batch."""
    store = TileStore(store_path)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(store), n)
    plain = zarr.open_array(store_path / "patches", mode="r")
    rows = []
    for name, read in [
        ("TileStore\\[i]", lambda: [store[int(i)] for i in idx]),
        (
            "TileStore.read_patches(50)",
            lambda: [store.read_patches(b) for b in idx.reshape(-1, 50)],
        ),
        ("zarr patches\\[i]", lambda: [plain[int(i)] for i in idx[: n // 10]]),
        (
            "zarr oindex(50)",
            lambda: [plain.oindex[np.sort(b)] for b in idx[: n // 10].reshape(-1, 50)],
        ),
    ]:
        count = n if name.startswith("TileStore") else n // 10
        started = time.perf_counter()
        read()
        rows.append((name, count / (time.perf_counter() - started)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000, help="slide side, level-0 px")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/pathda-bench"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--slide", type=Path, help="tile this slide instead of a synthetic one")
    args = parser.parse_args()
    slide = args.slide or synthetic_slide(args.cache, args.size)
    args.size = openslide.OpenSlide(str(slide)).dimensions[0]
    work = args.cache / "bench-out"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    naive_tiles, naive_s = naive_tiling(slide, work / "naive.zarr")
    table = Table(title=f"tiling a {args.size} x {args.size} px synthetic slide at {MPP} µm/px")
    for col in ["method", "workers", "tiles", "seconds", "tiles/s", "speed-up"]:
        table.add_column(col, justify="right")
    table.add_row(
        "naive loop", "1", str(naive_tiles), f"{naive_s:.1f}", f"{naive_tiles / naive_s:.0f}", "1.0"
    )
    last = None
    # One worker runs inline (no pool), so it is the same for threads and processes.
    runs = [("inline", 1)] if 1 in args.workers else []
    runs += [(kind, w) for kind in ("thread", "process") for w in args.workers if w > 1]
    for parallel, workers in runs:
        out = work / f"{parallel}{workers}.zarr"
        tiles, seconds = pathda_tiling(
            slide, out, "thread" if parallel == "inline" else parallel, workers
        )
        speedup = (tiles / seconds) / (naive_tiles / naive_s)
        table.add_row(
            f"pathda tile ({parallel})",
            str(workers),
            str(tiles),
            f"{seconds:.1f}",
            f"{tiles / seconds:.0f}",
            f"{speedup:.1f}",
        )
        last = out
    console = Console()
    console.print(table)
    reads = Table(title="random patch reads from the store")
    reads.add_column("how")
    reads.add_column("patches/s", justify="right")
    for name, rate in read_speed(last):
        reads.add_row(name, f"{rate:.0f}")
    console.print(reads)


if __name__ == "__main__":
    main()
