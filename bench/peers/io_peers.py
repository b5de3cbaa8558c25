"""Slide reading and tiling: pathda against its peers on the same slide, interleaved.

Runs in the peers' own virtualenv (``bench/peers/make_venv.sh``), never in pathda's: the peers
are not pathda dependencies. The slide is a pyramidal tiled JPEG TIFF (512 px tiles) made by
``pathda.synth`` at ``--size`` px square, 0.467 µm/px, cached in ``--cache`` (the same cache as
``bench/tile_bench.py``).

1. Slide reading: ``--reads`` random 256 x 256 level-0 reads per reader and round, one thread:
   pathda's ``open_slide`` with each backend (tifffile is its default for generic TIFF),
   tiffslide (``read_region(..., as_array=True)``) and OpenSlide (``read_region``, RGBA image
   turned into an array, no alpha compositing). Every reader reads the same seeded locations
   (new ones each round); each round times every reader in turn, so load from other processes
   hits all alike; reads/s is the median over rounds. Readers keep their own caches of
   decoded tiles (pathda tifffile 64 MiB, OpenSlide its default; tiffslide none), which
   random reads on a small slide sometimes hit. Agreement: max |difference| of each reader's
   RGB from OpenSlide's on ``--check-regions`` other random regions.
2. Tiling: every tissue tile, 256 x 256 at level 0 without overlap, written to disk, each tool
   in a subprocess of its own (``--tile-worker``) with ``--threads`` threads: pathda
   (``tile_slides``: Otsu on saturation at 8 µm/px, tiles with >= 50 % tissue, one zstd-1
   zarr store), TIAToolbox (``SlidingWindowPatchExtractor``, its Otsu mask at 1.25x,
   ``min_mask_ratio`` 0.5) and lazyslide (``find_tissues`` + ``tile_tissues`` with
   ``background_fraction`` 0.5, tiles read with ``wsi.iter.tile_images``). The peers write
   one PNG per tile (OpenCV's default compression) or one ``.npy`` of all tiles. Tissue
   detection differs per tool, so each tool's tile count is reported; tiles/s counts the
   tool's own work (slide opening, tissue mask, reads, writes), "wall" adds interpreter
   start and imports, peak RSS is the subprocess's (``os.wait4``). Rounds are interleaved
   as for reading.

Usage (from the repository root):
    PYTHONPATH=$PWD /tmp/peers-venv/bin/python bench/peers/io_peers.py --size 16384 \\
        --reads 1000 --rounds 3 --cache /tmp/pathda-bench \\
        --markdown docs/benchmarks/peers_io.md --json docs/benchmarks/peers_io.json

lazyslide 0.13.0 needs spatialdata's stack (see ``make_venv.sh``); when it is not installed
its rows say so and the rest runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "bench" / "peers"))
from peer_report import command_line, load_note, lscpu, version  # noqa: E402

TILE = 256  # tile side, level-0 px (read_throughput.TILE; not imported: the workers stay light)
MIN_TISSUE = 0.5  # share of a tile that must be tissue, given to every tool
TILERS = ("pathda", "TIAToolbox png", "TIAToolbox npy", "lazyslide png", "lazyslide npy")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


# --- 1. slide reading ------------------------------------------------------------------------


def make_readers(path: Path) -> dict[str, tuple[Callable[[int, int], np.ndarray], Callable]]:
    """name -> (read(x, y) -> (256, 256, 3 or 4) uint8 at level 0, close)."""
    import openslide
    import tiffslide

    from pathda.slide import open_slide

    readers = {}
    for name, backend in (("pathda", None), ("pathda (openslide backend)", "openslide")):
        slide = open_slide(path, backend=backend)
        readers[name] = (
            lambda x, y, s=slide: s.read_region((x, y), 0, (TILE, TILE)),
            slide.close,
        )
    ts = tiffslide.TiffSlide(path)
    readers["tiffslide"] = (
        lambda x, y: ts.read_region((x, y), 0, (TILE, TILE), as_array=True),
        ts.close,
    )
    osr = openslide.OpenSlide(path)
    readers["OpenSlide"] = (
        lambda x, y: np.asarray(osr.read_region((x, y), 0, (TILE, TILE))),
        osr.close,
    )
    return readers


def bench_reads(path: Path, args: argparse.Namespace) -> dict:
    from read_throughput import _locations, _time_reads

    from pathda.slide import open_slide

    with open_slide(path) as slide:
        width, height = slide.dimensions
        default_backend = slide.backend
    readers = make_readers(path)
    rates: dict[str, list[float]] = {name: [] for name in readers}
    for r in range(args.rounds):
        where = _locations("random", args.reads, width, height, args.seed + r)
        for name, (read, _) in readers.items():
            rate, done = _time_reads(read, where, args.budget_s)
            if done < len(where):
                print(f"{name}: time budget spent after {done} reads", file=sys.stderr)
            rates[name].append(rate)
    # Agreement on regions none of the timed rounds asked for (another seed).
    check = _locations("random", args.check_regions, width, height, args.seed + 1000)
    agreement = {}
    for name, (read, _) in readers.items():
        diffs = [
            np.abs(
                read(int(x), int(y))[..., :3].astype(int)
                - readers["OpenSlide"][0](int(x), int(y))[..., :3].astype(int)
            ).max()
            for x, y in check
        ]
        agreement[name] = int(max(diffs))
    for _, close in readers.values():
        close()
    return {
        "pathda_default_backend": default_backend,
        "readers": {
            name: {
                "reads_per_s": statistics.median(rates[name]),
                "rounds": rates[name],
                "max_abs_diff_vs_openslide": agreement[name],
            }
            for name in readers
        },
    }


# --- 2. tiling (each tool runs in its own subprocess) ----------------------------------------


class TileWriter:
    """The peers' writer: one PNG per tile, or one .npy holding all tiles."""

    def __init__(self, out: Path, fmt: str, count: int) -> None:
        import cv2

        self.cv2, self.out, self.fmt, self.n = cv2, out, fmt, 0
        out.mkdir(parents=True, exist_ok=True)
        if fmt == "npy":
            self.array = np.lib.format.open_memmap(
                out / "tiles.npy", mode="w+", dtype=np.uint8, shape=(count, TILE, TILE, 3)
            )

    def write(self, tile: np.ndarray, x: int, y: int) -> None:
        if self.fmt == "png":
            bgr = np.ascontiguousarray(tile[..., 2::-1])
            if not self.cv2.imwrite(str(self.out / f"{x}_{y}.png"), bgr):
                raise OSError(f"could not write {self.out / f'{x}_{y}.png'}")
        else:
            self.array[self.n] = tile[..., :3]
        self.n += 1

    def close(self) -> int:
        if self.fmt == "npy":
            self.array.flush()
            del self.array
        return self.n


def tile_pathda(slide: Path, out: Path, threads: int) -> dict:
    from pathda.slide import open_slide
    from pathda.tiling import TileConfig, TileStore, tile_slides

    with open_slide(slide) as s:
        mpp = s.require_mpp()  # tile at level 0 exactly, whatever rounding the file holds
        backend = s.backend
    no_annotations = out / "no-annotations"  # the synth's XML beside the slide is not read:
    no_annotations.mkdir()  # all tissue, no label work, as for the peers
    config = TileConfig(
        mpp=mpp,
        patch_size=TILE,
        min_tissue=MIN_TISSUE,
        workers=threads,
        annotation_dir=no_annotations,
    )
    tile_slides([slide], out / "tiles.zarr", config, quiet=True)
    return {"tiles": len(TileStore(out / "tiles.zarr")), "reader": f"pathda {backend}"}


def tile_tiatoolbox(slide: Path, out: Path, fmt: str) -> dict:
    from tiatoolbox.tools.patchextraction import get_patch_extractor

    extractor = get_patch_extractor(
        "slidingwindow",
        input_img=slide,
        input_mask="otsu",
        patch_size=(TILE, TILE),
        stride=(TILE, TILE),
        resolution=0,
        units="level",
        min_mask_ratio=MIN_TISSUE,
    )
    writer = TileWriter(out, fmt, len(extractor))
    for i, tile in enumerate(extractor):
        x, y = extractor.locations_df["x"][i], extractor.locations_df["y"][i]
        writer.write(tile, int(x), int(y))
    return {"tiles": writer.close(), "reader": type(extractor.wsi).__name__}


def tile_lazyslide(slide: Path, out: Path, fmt: str) -> dict:
    import lazyslide as zs
    from wsidata import open_wsi

    wsi = open_wsi(slide, store=None)  # keep tiles in memory: the PNG/npy files are the output
    zs.pp.find_tissues(wsi)
    zs.pp.tile_tissues(wsi, TILE, background_fraction=1 - MIN_TISSUE)
    writer = TileWriter(out, fmt, len(wsi["tiles"]))
    for tile in wsi.iter.tile_images("tiles"):
        x, y = tile.x, tile.y
        writer.write(tile.image, int(x), int(y))
    return {"tiles": writer.close(), "reader": type(wsi.reader).__name__}


def tile_worker(tool: str, slide: Path, out: Path, threads: int) -> None:
    """Body of one ``--tile-worker`` subprocess; prints one JSON line."""
    import cv2

    cv2.setNumThreads(threads)
    started = time.perf_counter()
    if tool == "pathda":
        result = tile_pathda(slide, out, threads)
    else:
        peer, fmt = tool.split()
        run = {"TIAToolbox": tile_tiatoolbox, "lazyslide": tile_lazyslide}[peer]
        result = run(slide, out, fmt)
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result))


def run_tiler(tool: str, slide: Path, out: Path, threads: int) -> dict:
    """Run one tool in a fresh subprocess; wall time, peak RSS, tiles, bytes written."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, **dict.fromkeys(THREAD_ENV, str(threads))}
    command = [sys.executable, __file__, "--tile-worker", tool, str(slide), str(out)]
    command += ["--threads", str(threads)]
    with tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        stdout = proc.stdout.read()
        proc.stdout.close()
        # wait4, not communicate(): only wait4 returns the child's resource usage.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        errors = stderr.read()
    if proc.returncode != 0:
        last = errors.strip().splitlines()[-1] if errors.strip() else "no message"
        return {"error": f"exit {proc.returncode}: {last}"}
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["bytes_written"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    shutil.rmtree(out, ignore_errors=True)
    return result


def bench_tiling(slide: Path, work: Path, args: argparse.Namespace) -> dict:
    runs: dict[str, list[dict]] = {tool: [] for tool in args.tilers}
    errors: dict[str, str] = {}
    for _ in range(args.rounds):
        for tool in args.tilers:
            if tool in errors:
                continue
            result = run_tiler(tool, slide, work / tool.replace(" ", "-"), args.threads)
            if "error" in result:
                errors[tool] = result["error"]
                print(f"{tool}: {result['error']}", file=sys.stderr)
            else:
                runs[tool].append(result)
    rows = {}
    for tool, results in runs.items():
        if not results:
            continue
        rows[tool] = {
            "tiles": results[0]["tiles"],
            "reader": results[0]["reader"],
            "seconds": statistics.median(r["seconds"] for r in results),
            "tiles_per_s": statistics.median(r["tiles"] / r["seconds"] for r in results),
            "wall_s": statistics.median(r["wall_s"] for r in results),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "mib_written": results[0]["bytes_written"] / 2**20,
            "rounds": results,
        }
    return {"tools": rows, "errors": errors}


# --- report ----------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    import cv2
    import openslide

    dists = ["pathda", "tiffslide", "openslide-python", "openslide-bin", "tifffile"]
    dists += ["imagecodecs", "zarr", "tiatoolbox", "lazyslide", "wsidata"]
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "OpenSlide library": openslide.__library_version__,
        **{dist: version(dist) for dist in dists},
    }


def markdown(report: dict) -> str:
    reads, tiling = report["reads"], report["tiling"]
    lines = [
        "# Peer comparison: slide reading and tiling",
        "",
        "Generated by bench/peers/io_peers.py; do not edit by hand. Command:",
        "",
        f"    {report['command']}",
        "",
        f"Machine (`lscpu`): {report['lscpu']}  ",
        f"threads per tool {report['threads']}; "
        f"{load_note(report['load_before'], report['load_after'])}.  ",
        f"Slide: {report['size']} x {report['size']} px pyramidal tiled JPEG TIFF "
        f"(pathda.synth, 512 px tiles, {report['slide_mpp']:.3f} µm/px, "
        f"{report['slide_mib']:.0f} MiB); interleaved rounds: {report['rounds']} (median).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
        f"## Slide reading: {report['reads_per_round']} random {TILE} x {TILE} level-0 "
        "reads per round, one thread",
        "",
        f"pathda's default backend for this file: {reads['pathda_default_backend']}. "
        f"Agreement: max |difference| from OpenSlide's RGB on {report['check_regions']} "
        "other random regions, in 8-bit grey levels.",
        "",
        "| reader | reads/s | pathda / reader | max abs diff vs OpenSlide |",
        "|---|---:|---:|---:|",
    ]
    ours = reads["readers"]["pathda"]["reads_per_s"]
    for name, row in reads["readers"].items():
        lines.append(
            f"| {name} | {row['reads_per_s']:,.1f} | {ours / row['reads_per_s']:.2f}x "
            f"| {row['max_abs_diff_vs_openslide']} |"
        )
    lines += [
        "",
        f"## Tiling: every tissue tile, {TILE} x {TILE} at level 0, written to disk",
        "",
        "Each tool in its own subprocess; tissue detection differs per tool (pathda: Otsu on "
        "saturation at 8 µm/px; TIAToolbox: its Otsu mask at 1.25x; lazyslide: "
        "`find_tissues`), each keeping tiles with at least "
        f"{MIN_TISSUE:.0%} tissue, so the tile counts differ. tiles/s counts the tool's own "
        "work (open, mask, read, write); wall adds interpreter start and imports.",
        "",
        "| tool | reader | tiles | tiles/s | pathda / tool | s | wall s | peak RSS MiB "
        "| MiB written |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tools = tiling["tools"]
    ours = tools.get("pathda", {}).get("tiles_per_s")
    for name, row in tools.items():
        ratio = f"{ours / row['tiles_per_s']:.2f}x" if ours else "-"
        lines.append(
            f"| {name} | {row['reader']} | {row['tiles']:,} | {row['tiles_per_s']:,.1f} "
            f"| {ratio} | {row['seconds']:.1f} | {row['wall_s']:.1f} "
            f"| {row['peak_rss_mib']:,.0f} | {row['mib_written']:,.0f} |"
        )
    for name, error in tiling["errors"].items():
        lines.append(f"| {name} | failed: {error[:100]} | | | | | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384, help="slide side, level-0 px")
    parser.add_argument("--reads", type=int, default=1000, help="random reads per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--check-regions", type=int, default=8)
    parser.add_argument("--budget-s", type=float, default=300.0, help="time cap per reader")
    parser.add_argument("--threads", type=int, default=1, help="threads per tiling tool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tilers", nargs="+", default=list(TILERS), choices=TILERS)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/pathda-bench"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument(
        "--tile-worker", nargs=3, metavar=("TOOL", "SLIDE", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.tile_worker:
        tool, slide, out = args.tile_worker
        tile_worker(tool, Path(slide), Path(out), args.threads)
        return

    from tile_bench import synthetic_slide

    from pathda.slide import open_slide

    slide = synthetic_slide(args.cache, args.size)
    with open_slide(slide) as s:
        slide_mpp = s.require_mpp()
    load_before = list(os.getloadavg())
    reads = bench_reads(slide, args)
    tiling = bench_tiling(slide, args.cache / "io-peers-out", args)
    report = {
        "command": command_line(),
        "lscpu": lscpu(),
        "threads": args.threads,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        "size": args.size,
        "slide_mpp": slide_mpp,
        "slide_mib": slide.stat().st_size / 2**20,
        "rounds": args.rounds,
        "reads_per_round": args.reads,
        "check_regions": args.check_regions,
        "min_tissue": MIN_TISSUE,
        "versions": versions(),
        "reads": reads,
        "tiling": tiling,
    }
    text = markdown(report)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
