"""Benchmark ``synthesise_slides``: generation speed (Mpx/s) and peak memory per slide size.

Each size runs in a fresh subprocess so that its peak RSS (ru_maxrss) is its own.

Usage:
    python bench/synth_speed.py [SIZE ...] [--domain lab-b] [--workers N] [--out DIR]

Prints a table: size, tiles, wall seconds, CPU seconds, Mpx/s (wall), Mpx/s per CPU
second, peak RSS (MB), file size (MB).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import json, resource, sys, time
from pathda.synth import synthesise_slides
size, domain, workers, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
wall, cpu = time.perf_counter(), time.process_time()
(s,) = synthesise_slides(out, n=1, domain=domain, size=(size, size), seed=1, quiet=True,
                         workers=None if workers == "auto" else int(workers))
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": rss, "bytes": s.image.stat().st_size}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[2048, 8192])
    parser.add_argument("--domain", default="lab-b")
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="keep outputs here")
    args = parser.parse_args()
    print(
        f"{'size':>7} {'tiles':>6} {'wall s':>8} {'cpu s':>8} {'Mpx/s':>7} "
        f"{'Mpx/cpu-s':>9} {'RSS MB':>7} {'file MB':>8}"
    )
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out or Path(tmp)
            res = subprocess.run(
                [sys.executable, "-c", _CHILD, str(size), args.domain, args.workers, str(out)],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(res.stdout.strip().splitlines()[-1])
        mpx = size * size / 1e6
        tiles = math.ceil(size / 512) ** 2
        print(
            f"{size:>7} {tiles:>6} {r['wall']:>8.1f} {r['cpu']:>8.1f} {mpx / r['wall']:>7.2f} "
            f"{mpx / r['cpu']:>9.2f} {r['rss_mb']:>7.0f} {r['bytes'] / 1e6:>8.1f}"
        )


if __name__ == "__main__":
    main()
