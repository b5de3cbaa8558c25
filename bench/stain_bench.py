"""Stain normalisation speed and agreement: pathda against staintools, interleaved.

256 x 256 tiles are cut (with overlap) from the real H&E fixture; the reference is its
central 512 x 512 crop. Each round times staintools (one tile at a time, as its API works) and
then pathda's batched normaliser on the same machine state, so load from other processes hits
both alike; the table gives the medians over rounds and the median of the per-round ratios.
Throughput is given twice: by wall clock, and by process CPU time (tiles per CPU-second x
threads), which a busy machine disturbs less. Agreement is the absolute difference from
staintools' output in 8-bit grey levels (median / p99 / max over all pixels and channels).

Usage:
    python bench/stain_bench.py [--device cuda] [--batch 256] [--methods macenko reinhard]
        [--staintools-tiles 32] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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


def timed(fn, n_tiles: int, sync: bool) -> tuple[float, float]:
    """(wall tiles/s, CPU-time tiles/s x 1 thread) of one call of ``fn``."""
    if sync:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if sync:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n_tiles / wall, n_tiles / max(cpu, 1e-9)


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    return {
        "median": float(np.median(diff)),
        "p99": float(np.percentile(diff, 99)),
        "max": int(diff.max()),
    }


def bench_method(method: str, tiles: np.ndarray, reference: np.ndarray, args) -> dict:
    """Interleaved rounds of staintools and pathda for one method."""
    n_st = args.staintools_tiles // (4 if method == "vahadane" else 1)
    st_tiles = tiles[:n_st]
    theirs = create_normaliser(f"staintools-{method}").fit(reference)
    ours = create_normaliser(method).fit(reference)
    device = torch.device(args.device)
    batch = torch.from_numpy(tiles[: args.batch]).to(device)
    sync = device.type == "cuda"
    ours.transform(batch[:8])  # warm-up (numba compiles or loads its cache, CUDA context)
    st_out = theirs.transform(st_tiles)
    ours_out = ours.transform(torch.from_numpy(st_tiles).to(device)).cpu().numpy()
    rounds = []
    for _ in range(args.rounds):
        st_wall, _ = timed(lambda: theirs.transform(st_tiles), len(st_tiles), sync=False)
        pd_wall, pd_cpu = timed(lambda: ours.transform(batch), len(batch), sync)
        rounds.append({"staintools": st_wall, "pathda": pd_wall, "pathda_cpu": pd_cpu})
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {
        "method": method,
        "device": str(device),
        "batch": len(batch),
        "staintools_tiles": len(st_tiles),
        "staintools_tiles_per_s": med["staintools"],
        "pathda_tiles_per_s": med["pathda"],
        # staintools is single-threaded numpy; pathda's CPU time is spread over its threads.
        "pathda_tiles_per_cpu_s_x_threads": med["pathda_cpu"] * torch.get_num_threads(),
        "ratio": statistics.median(r["pathda"] / r["staintools"] for r in rounds),
        "agreement": agreement(ours_out, st_out),
        "rounds": rounds,
    }


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg": list(os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--methods", nargs="+", default=["macenko", "reinhard"])
    parser.add_argument("--staintools-tiles", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch / kernel threads")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tiles, reference = load_tiles(args.fixture, max(args.batch, args.staintools_tiles))
    before = machine()
    results = [bench_method(m, tiles, reference, args) for m in args.methods]
    report = {"machine": before, "load_avg_after": list(os.getloadavg()), "results": results}

    table = Table(title=f"stain normalisation, 256 x 256 tiles, pathda on {args.device}")
    for column in ("method", "staintools\ntiles/s", "pathda\ntiles/s", "ratio"):
        table.add_column(column, justify="right")
    table.add_column("pathda tiles per\nCPU-s x threads", justify="right")
    table.add_column("vs staintools\nmedian / p99 / max")
    for r in results:
        a = r["agreement"]
        table.add_row(
            r["method"],
            f"{r['staintools_tiles_per_s']:.1f}",
            f"{r['pathda_tiles_per_s']:.1f}",
            f"{r['ratio']:.1f}x",
            f"{r['pathda_tiles_per_cpu_s_x_threads']:.0f}",
            f"{a['median']:.0f} / {a['p99']:.0f} / {a['max']}",
        )
    Console(width=120).print(table)
    print(
        f"threads {args.threads}, batch {args.batch}, staintools tiles {args.staintools_tiles}, "
        f"rounds {args.rounds}; load avg before {before['load_avg']}, "
        f"after {report['load_avg_after']}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
