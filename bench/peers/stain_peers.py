"""Stain normalisation: pathda against its peers on the same real H&E tiles, interleaved.

Runs in the peers' own virtualenv (``bench/peers/make_venv.sh``), never in pathda's: the peers
are not pathda dependencies. Every tool normalises the same 256 x 256 tiles of the OS-1 H&E
fixture towards the same reference crop, with 2 torch threads; each round times every tool
once, in turn, so load from other processes hits all alike (median over rounds). Tools that
work one tile at a time get fewer tiles per round (their rate does not depend on it); batched
ones get the whole batch. Agreement is each tool's distance from staintools' output on the
first tiles, in 8-bit grey levels (median / p99 / max).

Usage (from the repository root):
    PYTHONPATH=$PWD /tmp/peers-venv/bin/python bench/peers/stain_peers.py \\
        --markdown docs/benchmarks/peers.md [--rounds 3] [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "bench" / "peers"))
from peer_report import command_line, load_note, lscpu, version  # noqa: E402
from stain_bench import FIXTURE, load_tiles  # noqa: E402

Tool = Callable[[np.ndarray], np.ndarray]
"""uint8 (N, H, W, 3) tiles -> normalised uint8 (N, H, W, 3)."""


def _per_tile(fn: Callable[[np.ndarray], np.ndarray]) -> Tool:
    return lambda tiles: np.stack([fn(tile) for tile in tiles])


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def make_pathda(method: str, reference: np.ndarray) -> Tool:
    from pathda.stain import create_normaliser

    normaliser = create_normaliser(method).fit(reference)
    return normaliser.transform


def make_staintools(method: str, reference: np.ndarray) -> Tool:
    import staintools

    if method == "reinhard":
        normaliser = staintools.ReinhardColorNormalizer()
    else:
        normaliser = staintools.StainNormalizer(method)
    normaliser.fit(reference.copy())
    return _per_tile(lambda tile: normaliser.transform(tile.copy()))


def make_torchstain(method: str, reference: np.ndarray) -> Tool:
    import torchstain

    if method == "reinhard":
        normaliser = torchstain.normalizers.ReinhardNormalizer(backend="torch")
        normaliser.fit(_chw(reference))
        return _per_tile(lambda tile: normaliser.normalize(_chw(tile)).numpy().astype(np.uint8))
    normaliser = torchstain.normalizers.MacenkoNormalizer(backend="torch")
    normaliser.fit(_chw(reference))

    def one(tile: np.ndarray) -> np.ndarray:
        out, _, _ = normaliser.normalize(I=_chw(tile), stains=False)
        return out.numpy().astype(np.uint8)

    return _per_tile(one)


def make_tiatoolbox(method: str, reference: np.ndarray) -> Tool:
    from tiatoolbox.tools import stainnorm

    normaliser = {"macenko": stainnorm.MacenkoNormalizer, "reinhard": stainnorm.ReinhardNormalizer}
    normaliser = normaliser[method]()
    normaliser.fit(reference)
    return _per_tile(lambda tile: np.asarray(normaliser.transform(tile)).astype(np.uint8))


def make_torch_staintools(method: str, reference: np.ndarray) -> Tool:
    from torch_staintools.normalizer import NormalizerBuilder

    normaliser = NormalizerBuilder.build(method)
    normaliser.fit(_chw(reference)[None].float() / 255)

    def batch(tiles: np.ndarray) -> np.ndarray:
        outs = []
        for chunk in np.array_split(tiles, max(1, len(tiles) // 64)):
            x = torch.from_numpy(chunk).permute(0, 3, 1, 2).float() / 255
            y = normaliser.transform(x)
            outs.append((y * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
        return torch.cat(outs).numpy()

    return batch


TOOLS: dict[str, tuple[str, Callable[[str, np.ndarray], Tool], bool]] = {
    # name: (distribution for the version, factory, batched?)
    "pathda": ("pathda", make_pathda, True),
    "staintools": ("staintools", make_staintools, False),
    "torchstain": ("torchstain", make_torchstain, False),
    "TIAToolbox": ("tiatoolbox", make_tiatoolbox, False),
    "torch-staintools": ("torch-staintools", make_torch_staintools, True),
}


def _agreement(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    return {
        "median": float(np.median(diff)),
        "p99": float(np.percentile(diff, 99)),
        "max": int(diff.max()),
    }


def bench_method(method: str, tiles: np.ndarray, reference: np.ndarray, args) -> dict:
    tools, errors = {}, {}
    for name, (_, factory, batched) in TOOLS.items():
        try:
            tools[name] = (factory(method, reference), batched)
        except Exception as err:  # a peer that cannot be built is reported, not fatal
            errors[name] = f"{type(err).__name__}: {err}"
    check = tiles[: args.check_tiles]
    outputs = {}
    for name, (tool, _) in list(tools.items()):
        try:
            outputs[name] = tool(check)  # also the warm-up (numba cache, first allocations)
        except Exception as err:
            errors[name] = f"{type(err).__name__}: {err}"
            del tools[name]
    rates: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(args.rounds):
        for name, (tool, batched) in tools.items():
            batch = tiles if batched else tiles[: args.per_tile_tiles]
            started = time.perf_counter()
            tool(batch)
            rates[name].append(len(batch) / (time.perf_counter() - started))
    reference_out = outputs.get("staintools")
    rows = {}
    for name in tools:
        rows[name] = {
            "tiles_per_s": statistics.median(rates[name]),
            "rounds": rates[name],
            "agreement_with_staintools": (
                _agreement(outputs[name], reference_out) if reference_out is not None else None
            ),
        }
    return {"method": method, "tools": rows, "errors": errors}


def markdown(report: dict) -> str:
    lines = [
        "# Peer comparison: stain normalisation",
        "",
        "Generated by `bench/peers/stain_peers.py`; do not edit by hand. Command:",
        "",
        f"    {report['command']}",
        "",
        f"Machine (`lscpu | head`): {report['lscpu']}  ",
        f"torch threads {report['torch_threads']}; "
        f"{load_note(report['load_before'], report['load_after'])}.  ",
        f"{report['n_tiles']} real H&E tiles of 256 x 256 (OS-1 fixture), reference its "
        f"central 512 x 512 crop; per-tile tools timed on {report['per_tile_tiles']} tiles, "
        f"batched ones on all; {report['rounds']} interleaved rounds (median); agreement on "
        f"the first {report['check_tiles']} tiles.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
        "| method | tool | tiles/s | pathda / tool | vs staintools: median / p99 / max |",
        "|---|---|---:|---:|---|",
    ]
    for result in report["results"]:
        tools = result["tools"]
        ours = tools.get("pathda", {}).get("tiles_per_s")
        for name, row in tools.items():
            a = row["agreement_with_staintools"]
            agree = f"{a['median']:.0f} / {a['p99']:.0f} / {a['max']}" if a else "-"
            ratio = f"{ours / row['tiles_per_s']:.2f}x" if ours else "-"
            lines.append(
                f"| {result['method']} | {name} | {row['tiles_per_s']:,.1f} | {ratio} | {agree} |"
            )
        for name, error in result["errors"].items():
            lines.append(f"| {result['method']} | {name} | failed: {error[:80]} | - | - |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument("--methods", nargs="+", default=["macenko", "reinhard"])
    parser.add_argument("--batch", type=int, default=256, help="tiles for batched tools")
    parser.add_argument("--per-tile-tiles", type=int, default=32)
    parser.add_argument("--check-tiles", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)

    tiles, reference = load_tiles(args.fixture, args.batch)
    load_before = list(os.getloadavg())
    results = [bench_method(m, tiles, reference, args) for m in args.methods]
    report = {
        "command": command_line(),
        "lscpu": lscpu(),
        "torch_threads": args.threads,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        "n_tiles": len(tiles),
        "per_tile_tiles": args.per_tile_tiles,
        "check_tiles": args.check_tiles,
        "rounds": args.rounds,
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            **{name: version(dist) for name, (dist, _, _) in TOOLS.items()},
        },
        "results": results,
    }
    text = markdown(report)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
