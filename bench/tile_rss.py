"""Peak memory (RSS) of ``pathda tile`` on synthetic slides of growing size.

Rendering a 50k x 50k slide with ``pathda.synth`` takes hours on a small machine, so
the large slides here are montages: level-0 tiles copied (with random flips) from one
cached 2048 x 2048 ``pathda.synth`` slide, covering the whole slide with tissue (the
worst case: every grid cell becomes a patch). Each tiling runs in a fresh process
(threads, so every worker is inside it) and reports its own peak RSS (VmHWM).

Usage:
    python bench/tile_rss.py [--sizes 5000 10000 20000 35000 50000] [--cache /tmp/pathda-bench]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from pathda.slide import open_slide
from pathda.synth import synthesise_slides
from pathda.synth.writer import write_pyramid_tiff

MPP = 0.467
TILE = 512
_CHILD = """
import sys
from pathda.tiling import TileConfig, TileStore, tile_slides
out = tile_slides([sys.argv[1]], sys.argv[2], TileConfig(workers=int(sys.argv[3])), quiet=True)
# VmHWM: peak RSS of this program only (ru_maxrss would include the parent's RSS at fork).
peak_kib = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(len(TileStore(out)), peak_kib)
"""


def montage_slide(cache: Path, size: int) -> Path:
    """A cached ``size`` x ``size`` px slide tiled from one synthetic 2048 px slide."""
    path = cache / "montage" / f"montage{size}.tiff"
    if path.exists():
        return path
    source_dir = cache / "montage-source"
    sources = sorted(source_dir.glob("*.tiff")) or [
        synthesise_slides(source_dir, n=1, size=(2048, 2048), quiet=True)[0].image
    ]
    with open_slide(sources[0]) as slide:
        texture = slide.read_region((0, 0), 0, (2048, 2048))
    tiles = [
        texture[r : r + TILE, c : c + TILE]
        for r in range(0, 2048, TILE)
        for c in range(0, 2048, TILE)
    ]

    def render(x0: int, y0: int, width: int, height: int) -> np.ndarray:
        rng = np.random.default_rng((x0 * 7919 + y0) % 2**32)
        tile = tiles[rng.integers(len(tiles))]
        return np.ascontiguousarray(tile[:: rng.choice([-1, 1]), :: rng.choice([-1, 1])])

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.tiff")
    print(f"writing a {size} x {size} montage slide (once; cached)...", flush=True)
    write_pyramid_tiff(partial, (size, size), render, mpp=MPP, tile_size=TILE)
    partial.rename(path)
    return path


def peak_rss_of_tiling(slide: Path, out: Path, workers: int) -> tuple[int, float, int]:
    """(tiles, seconds, peak RSS in bytes) of tiling ``slide`` in a child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(slide), str(out), str(workers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    stdout, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"tiling {slide} failed")
    tiles, peak_kib = stdout.split()
    return int(tiles), time.perf_counter() - started, int(peak_kib) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000, 35000, 50000])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/pathda-bench"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    table = Table(
        title=f"peak RSS of pathda tile (threads, {args.workers} workers, 64 px at 1.868 µm/px)"
    )
    for col in ["slide (px)", "tiles", "seconds", "peak RSS (MiB)"]:
        table.add_column(col, justify="right")
    for size in args.sizes:
        slide = montage_slide(args.cache, size)
        out = args.cache / "rss-out" / f"tiles{size}.zarr"
        subprocess.run(["rm", "-rf", str(out), f"{out}.masks"], check=True)
        tiles, seconds, rss = peak_rss_of_tiling(slide, out, args.workers)
        table.add_row(f"{size} x {size}", str(tiles), f"{seconds:.0f}", f"{rss / 2**20:.0f}")
        Console().print(f"{size}: {tiles} tiles, {seconds:.0f} s, {rss / 2**20:.0f} MiB")
    Console().print(table)


if __name__ == "__main__":
    main()
