"""Stain normalisation speed and agreement: staintools per tile against batched torch.

256 x 256 tiles are cut (with overlap) from the real H&E fixture; the reference is its
central 512 x 512 crop. For each method the table gives staintools' tiles/s (one tile at a
time, as its API works), torch's tiles/s per batch size, the speed-up, and how far torch's
output is from staintools' on the same tiles (absolute difference in 8-bit grey levels).
``staintools run-to-run`` is staintools against itself (non-zero for Vahadane: spams'
dictionary learning is not deterministic).

Usage:
    python bench/stain_bench.py [--device cuda] [--batch-sizes 64 128 256]
        [--methods macenko reinhard vahadane] [--reference-tiles 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from rich.console import Console
from rich.table import Table

from pathda.stain import create_normaliser

FIXTURE = Path(__file__).resolve().parents[1] / "tests/data/he/OS-1-detail.ome.tif"
TILE = 256


def load_tiles(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` overlapping 256-px tiles (flipped copies if more are needed) and the reference."""
    image = tifffile.imread(path)
    side = image.shape[0] - TILE
    starts = np.linspace(0, side, 16).astype(int)
    tiles = np.stack([image[y : y + TILE, x : x + TILE] for y in starts for x in starts])
    while len(tiles) < n:
        tiles = np.concatenate([tiles, tiles[:, ::-1]])
    centre = image.shape[0] // 2
    return tiles[:n].copy(), image[centre - 256 : centre + 256, centre - 256 : centre + 256]


def time_staintools(method: str, reference: np.ndarray, tiles: np.ndarray):
    """(tiles/s, output, second output) of the staintools reference, one tile at a time."""
    normaliser = create_normaliser(f"staintools-{method}").fit(reference)
    started = time.perf_counter()
    out = normaliser.transform(tiles)
    rate = len(tiles) / (time.perf_counter() - started)
    return rate, out, normaliser.transform(tiles)


def time_torch(normaliser, tiles: torch.Tensor, repeats: int) -> float:
    """Best-of-``repeats`` tiles/s of one batched transform (after a warm-up call)."""
    normaliser.transform(tiles)
    best = float("inf")
    for _ in range(repeats):
        if tiles.is_cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        normaliser.transform(tiles)
        if tiles.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return len(tiles) / best


def diff_stats(a: np.ndarray, b: np.ndarray) -> str:
    d = np.abs(a.astype(int) - b.astype(int))
    return f"{np.median(d):.0f} / {np.percentile(d, 99):.0f} / {d.max()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--methods", nargs="+", default=["macenko", "reinhard", "vahadane"])
    parser.add_argument(
        "--reference-tiles", type=int, default=16, help="tiles for staintools (Vahadane: /4)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tiles, reference = load_tiles(args.fixture, max(args.batch_sizes))
    device = torch.device(args.device)
    table = Table(title=f"stain normalisation, 256 x 256 tiles, torch on {device}")
    for column in ("method", "staintools tiles/s", "batch", "torch tiles/s", "speed-up"):
        table.add_column(column, justify="right")
    table.add_column("torch vs staintools\nmedian / p99 / max")
    table.add_column("staintools run-to-run\nmedian / p99 / max")
    for method in args.methods:
        n_ref = args.reference_tiles // (4 if method == "vahadane" else 1)
        st_rate, st_out, st_again = time_staintools(method, reference, tiles[:n_ref])
        normaliser = create_normaliser(method).fit(reference)
        ours = normaliser.transform(torch.from_numpy(tiles[:n_ref]).to(device)).cpu().numpy()
        agreement, self_agreement = diff_stats(ours, st_out), diff_stats(st_again, st_out)
        for batch in args.batch_sizes:
            rate = time_torch(normaliser, torch.from_numpy(tiles[:batch]).to(device), args.repeats)
            table.add_row(
                method,
                f"{st_rate:.1f}",
                str(batch),
                f"{rate:.1f}",
                f"{rate / st_rate:.1f}x",
                agreement,
                self_agreement,
            )
    Console(width=160).print(table)
    print(f"torch threads: {torch.get_num_threads()}; staintools tiles: {args.reference_tiles}")


if __name__ == "__main__":
    main()
