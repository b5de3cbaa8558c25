"""Trained models under ``--precision float32`` vs ``bf16``: label agreement and BACH score.

The question before anyone turns bf16 on for a CPU: does it change the results of a
trained model, not only a random one's near-uniform probabilities? Each checkpoint
segments the same labelled slides twice (in-process, one after the other), in a given
``--mode``, with float32 and with bf16 autocast. The script prints, per checkpoint and in
total, the inference time of each, the share of covered mask cells whose label differs, the
largest probability difference, and the mean BACH score of each against the annotations.

Usage (a shift benchmark's models and one domain's test slides; any checkpoints and slides
with ``<stem>.xml`` annotations beside them do):
    .venv/bin/python bench/segment_precision.py \\
        --checkpoints RESULTS/runs/lab-b/*/seed0/train/model.pt \\
        --slides RESULTS/slides/lab-b/test --config configs/shift.yaml \\
        --json docs/benchmarks/segment_precision_lab-b.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from rich.console import Console
from rich.table import Table

from pathda.checkpoint import load_inference_checkpoint
from pathda.config import build_config, load_yaml
from pathda.evaluation import score_predictions
from pathda.segment import SegmentConfig, segment_slide

PRECISIONS = ("float32", "bf16")


def cpu_note() -> str:
    """lscpu's model name and family, and whether the CPU has bf16 arithmetic."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = info.get("Flags", "").split()
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags] or ["no bf16 arithmetic"]
    return (
        f"{info.get('Model name', '?').strip()} (family {info.get('CPU family', '?').strip()}), "
        f"{os.cpu_count()} CPUs, {', '.join(bf16)}"
    )


def segment_all(loaded, slides, out: Path, cfg: SegmentConfig) -> tuple[float, dict, float]:
    """Segment ``slides``; returns (inference s, {stem: (C, H, W) probs}, mean BACH)."""
    seconds, probs = 0.0, {}
    for slide in slides:
        result = segment_slide(slide, loaded, out, cfg, quiet=True)
        seconds += result.summary_data["seconds_by_stage"]["inference"]
        stem = result.folder.name
        probs[stem] = zarr.open_array(result.folder / f"{stem}.probs.zarr", mode="r")[:]
    truth = [s.with_suffix(".xml") for s in slides]
    return seconds, probs, score_predictions(out, truth, downsample=16).mean_bach


def compare(reference: dict, other: dict) -> tuple[int, int, float]:
    """(covered cells, cells whose label differs, max |Δprob|) over all slides."""
    cells = changed = 0
    worst = 0.0
    for stem, ref in reference.items():
        covered = ref.sum(0) > 0
        cells += int(covered.sum())
        changed += int((ref.argmax(0) != other[stem].argmax(0))[covered].sum())
        worst = max(worst, float(np.abs(ref - other[stem])[:, covered].max(initial=0)))
    return cells, changed, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    parser.add_argument("--slides", type=Path, required=True, help="folder of *.tiff + *.xml")
    parser.add_argument("--config", type=Path, help="YAML whose segment section is used")
    parser.add_argument("--mode", default="patch", choices=("patch", "dense"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    section = load_yaml(args.config, "segment") if args.config else {}
    slides = sorted(args.slides.glob("*.tiff"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="segment-precision-") as tmp:
        for n, checkpoint in enumerate(args.checkpoints):
            loaded = load_inference_checkpoint(checkpoint, "cpu")
            runs = {}
            for precision in PRECISIONS:
                options = {**section, "mode": args.mode, "precision": precision, "device": "cpu"}
                cfg = build_config(SegmentConfig, options, source="bench")
                runs[precision] = segment_all(loaded, slides, Path(tmp) / f"{n}-{precision}", cfg)
            cells, changed, worst = compare(runs["float32"][1], runs["bf16"][1])
            rows.append({
                "checkpoint": str(checkpoint),
                "seconds": {p: runs[p][0] for p in PRECISIONS},
                "bach": {p: runs[p][2] for p in PRECISIONS},
                "cells": cells,
                "labels_changed": changed,
                "max_abs_prob_diff": worst,
            })  # fmt: skip
    report(rows, args)


def report(rows: list[dict], args) -> None:
    table = Table(title=f"float32 vs bf16, --mode {args.mode}, {len(rows)} checkpoints")
    for column in ("checkpoint", "s f32", "s bf16", "labels changed", "max |Δp|", "BACH f32",
                   "BACH bf16", "Δ BACH"):  # fmt: skip
        table.add_column(column, justify="right")
    for row in rows:
        s, b = row["seconds"], row["bach"]
        table.add_row(
            "/".join(Path(row["checkpoint"]).parts[-5:-2]), f"{s['float32']:.1f}",
            f"{s['bf16']:.1f}", f"{100 * row['labels_changed'] / row['cells']:.3f} %",
            f"{row['max_abs_prob_diff']:.3f}", f"{b['float32']:.4f}", f"{b['bf16']:.4f}",
            f"{b['bf16'] - b['float32']:+.4f}",
        )  # fmt: skip
    total = {
        "cells": sum(r["cells"] for r in rows),
        "labels_changed": sum(r["labels_changed"] for r in rows),
        "max_abs_prob_diff": max(r["max_abs_prob_diff"] for r in rows),
        "seconds": {p: sum(r["seconds"][p] for r in rows) for p in PRECISIONS},
        "bach_mean": {p: float(np.mean([r["bach"][p] for r in rows])) for p in PRECISIONS},
        "bach_abs_diff_max": max(abs(r["bach"]["bf16"] - r["bach"]["float32"]) for r in rows),
    }
    Console(width=150).print(table)
    print(f"CPU: {cpu_note()}; {args.threads} torch threads; load {os.getloadavg()[0]:.1f}")
    print(
        f"all: {100 * total['labels_changed'] / total['cells']:.3f} % of {total['cells']:,} "
        f"cells change label; max |Δp| {total['max_abs_prob_diff']:.3f}; mean BACH "
        f"{total['bach_mean']['float32']:.4f} -> {total['bach_mean']['bf16']:.4f} (largest "
        f"per-model |Δ| {total['bach_abs_diff_max']:.4f}); inference "
        f"{total['seconds']['float32']:.1f} s -> {total['seconds']['bf16']:.1f} s"
    )
    if args.json:
        payload = {"mode": args.mode, "threads": args.threads, "time": time.ctime(),
                   "cpu": cpu_note(), "load": os.getloadavg()[0],
                   "slides": str(args.slides), "total": total, "checkpoints": rows}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
