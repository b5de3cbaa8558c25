"""Dense vs patch-wise segmentation: wall time, patches/s, peak RSS, agreement, BACH score.

Makes synthetic slides with ``pathda.synth`` (one to train on, one to segment), trains
the model briefly on the first (``--train-steps 0``: random weights), saves one
checkpoint (metadata and training loop from ``segment_bench``, the loop the acceptance
test uses), then runs ``pathda segment --mode patch`` and ``--mode dense`` on the second
slide with that checkpoint, each in its own process (so peak RSS is that run's own),
interleaved ``--repeats`` times. It reports per mode the median wall time, patches/s, the
peak RSS, and against patch-wise: pixel agreement of the label masks on tissue, the
largest and mean probability difference, and the BACH score of each against the slide's
annotation.

Usage (the demo's model and geometry, then the issue's resnet18 setting; ``--bf16`` adds
both modes under ``--precision bf16``):
    .venv/bin/python bench/segment_dense_bench.py [--bf16]
    .venv/bin/python bench/segment_dense_bench.py --arch resnet18 --patch 224 \\
        --model-mpp 0.934 --slide-mpp 0.934 --size 8192 --stride 112 --train-steps 0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from rich.console import Console
from rich.table import Table
from segment_bench import bench_checkpoint, train_patch_classifier

from pathda.checkpoint import save_inference_checkpoint
from pathda.evaluation import score_predictions
from pathda.slide import open_slide
from pathda.synth import synthesise_slides

NORMALISE = {"mean": [0.8, 0.6, 0.75], "std": [0.15, 0.2, 0.15]}
VARIANTS = {"patch": ("patch", "float32"), "dense": ("dense", "float32")}
BF16_VARIANTS = {"patch bf16": ("patch", "bf16"), "dense bf16": ("dense", "bf16")}
"""Runs compared: name -> (``--mode``, ``--precision``); the first is the reference."""


def training_patches(slide_path, mask_path, mask_downsample, patch, model_mpp, slide_mpp, n):
    """Up to ``n`` random patches at the model mpp, labelled by the mask under their centre."""
    from PIL import Image

    with open_slide(slide_path) as slide:
        image = slide.thumbnail(mpp=model_mpp)
    mask = np.asarray(Image.open(mask_path))
    per_mask_px = mask_downsample * slide_mpp / model_mpp
    rng = np.random.default_rng(0)
    h, w = image.shape[:2]
    ys, xs = rng.integers(0, h - patch, n), rng.integers(0, w - patch, n)
    rows = np.clip(((ys + patch / 2) / per_mask_px).astype(int), 0, mask.shape[0] - 1)
    cols = np.clip(((xs + patch / 2) / per_mask_px).astype(int), 0, mask.shape[1] - 1)
    patches = np.stack([image[y : y + patch, x : x + patch] for x, y in zip(xs, ys, strict=True)])
    return torch.from_numpy(patches).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(
        mask[rows, cols].astype(np.int64)
    )


def run_segment(slide, checkpoint, out, variant, args):
    """One ``pathda segment`` process; returns (wall s, peak RSS MiB)."""
    mode, precision = variant
    command = [
        sys.executable, "-m", "pathda", "segment", str(slide), "--model", str(checkpoint),
        "--out", str(out), "--mode", mode, "--precision", precision,
        "--stride", str(args.stride), "--workers", str(args.workers),
        "--batch-size", str(args.batch_size), "--device", "cpu", "--quiet",
    ]  # fmt: skip
    if mode == "dense":
        command += ["--tile", str(args.tile), "--margin", str(args.margin)]
    start = time.perf_counter()
    proc = subprocess.Popen(command)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"segment --mode {mode} --precision {precision} failed")
    return wall, usage.ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet10t")
    parser.add_argument("--patch", type=int, default=64, help="px at the model mpp")
    parser.add_argument("--stride", type=int, default=32, help="px at the model mpp")
    parser.add_argument("--model-mpp", type=float, default=1.868)
    parser.add_argument("--slide-mpp", type=float, default=0.467)
    parser.add_argument("--size", type=int, default=8192, help="slide side, level-0 px")
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tile", type=int, default=1280, help="dense block side, model px")
    parser.add_argument("--margin", type=int, default=64, help="dense block margin, model px")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="keep slides and outputs here")
    parser.add_argument("--bf16", action="store_true", help="also both modes in bf16 autocast")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="segment-dense-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        size = (args.size, args.size)
        train_slide, test_slide = synthesise_slides(
            work / "synth", n=2, size=size, seed=0, mpp=args.slide_mpp, quiet=True
        )
        x, y = training_patches(
            train_slide.image, train_slide.mask, 8, args.patch, args.model_mpp,
            args.slide_mpp, 4000 if args.train_steps else 1,
        )  # fmt: skip
        meta = bench_checkpoint(
            args.arch, args.model_mpp, args.patch, NORMALISE, "segment_dense_bench",
            train_steps=args.train_steps,
        )  # fmt: skip
        model = train_patch_classifier(args.arch, x, y, args.train_steps, NORMALISE)
        checkpoint = save_inference_checkpoint(work / "model.pt", model, meta)
        variants = {**VARIANTS, **(BF16_VARIANTS if args.bf16 else {})}
        walls: dict[str, list[float]] = {name: [] for name in variants}
        rss = dict.fromkeys(variants, 0.0)
        for _ in range(args.repeats):
            for name, variant in variants.items():
                out = work / name.replace(" ", "-")
                wall, peak = run_segment(test_slide.image, checkpoint, out, variant, args)
                walls[name].append(wall)
                rss[name] = max(rss[name], peak)
        stem = test_slide.image.name.rsplit(".", 1)[0]
        results = {}
        for name in variants:
            out = work / name.replace(" ", "-")
            folder = out / stem
            summary = json.loads((folder / f"{stem}.summary.json").read_text())
            probs = zarr.open_array(folder / f"{stem}.probs.zarr", mode="r")[:].astype(np.float32)
            score = score_predictions(out, test_slide.annotation, downsample=16).mean_bach
            results[name] = (summary, probs, score)
    print_table(args, walls, rss, results)


def print_table(args, walls, rss, results) -> None:
    """One column per run; agreement and |Δprob| against the first (patch-wise float32)."""
    names = list(results)
    ref_summary, ref_probs, _ = results[names[0]]
    covered = ref_probs.sum(0) > 0
    ref_labels = ref_probs.argmax(0)
    title = f"segment runs: {args.arch} @ {args.patch} px, stride {args.stride}"
    table = Table(title=title)
    for column in ("measure", *names):
        table.add_column(column, justify="right")
    med = {m: statistics.median(w) for m, w in walls.items()}
    first = med[names[0]]

    def row(label, cell):
        table.add_row(label, *(cell(name) for name in names))

    def stage(name):
        return f"{results[name][0]['seconds_by_stage']['inference']:.2f}"

    def agreement(name):
        return f"{(results[name][1].argmax(0) == ref_labels)[covered].mean():.4f}"

    def prob_diff(name):
        diff = np.abs(results[name][1] - ref_probs)[:, covered]
        return f"{diff.max():.3f} / {diff.mean():.4f}"

    table.add_row("slide", f"{args.size}² @ {args.slide_mpp} µm/px", *[""] * (len(names) - 1))
    row("torch threads / workers", lambda _: f"{torch.get_num_threads()} / {args.workers}")
    row("patches (tissue)", lambda n: str(results[n][0]["n_patches"]))
    row("wall s (median of runs)", lambda n: f"{med[n]:.2f}")
    row("  runs", lambda n: " ".join(f"{w:.1f}" for w in walls[n]))
    row("inference stage s", stage)
    row("patches/s (wall)", lambda n: f"{ref_summary['n_patches'] / med[n]:.1f}")
    row(f"speed-up (wall) vs {names[0]}", lambda n: f"{first / med[n]:.2f}")
    row("peak RSS MiB", lambda n: f"{rss[n]:.0f}")
    row(f"label agreement vs {names[0]} (covered cells)", agreement)
    row(f"max / mean |Δprob| vs {names[0]}", prob_diff)
    row("BACH score vs annotation", lambda n: f"{results[n][2]:.4f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
