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

Usage (the demo's model and geometry, then the issue's resnet18 setting):
    .venv/bin/python bench/segment_dense_bench.py
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


def run_segment(slide, checkpoint, out, mode, args):
    """One ``pathda segment`` process; returns (wall s, peak RSS MiB)."""
    command = [
        sys.executable, "-m", "pathda", "segment", str(slide), "--model", str(checkpoint),
        "--out", str(out), "--mode", mode, "--stride", str(args.stride),
        "--workers", str(args.workers), "--batch-size", str(args.batch_size),
        "--device", "cpu", "--quiet",
    ]  # fmt: skip
    if mode == "dense":
        command += ["--tile", str(args.tile), "--margin", str(args.margin)]
    start = time.perf_counter()
    proc = subprocess.Popen(command)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"segment --mode {mode} failed")
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
        walls: dict[str, list[float]] = {"patch": [], "dense": []}
        rss: dict[str, float] = {"patch": 0.0, "dense": 0.0}
        for _ in range(args.repeats):
            for mode in walls:
                wall, peak = run_segment(test_slide.image, checkpoint, work / mode, mode, args)
                walls[mode].append(wall)
                rss[mode] = max(rss[mode], peak)
        stem = test_slide.image.name.rsplit(".", 1)[0]
        results = {}
        for mode in walls:
            folder = work / mode / stem
            summary = json.loads((folder / f"{stem}.summary.json").read_text())
            probs = zarr.open_array(folder / f"{stem}.probs.zarr", mode="r")[:].astype(np.float32)
            score = score_predictions(work / mode, test_slide.annotation, downsample=16).mean_bach
            results[mode] = (summary, probs, score)
    ref_summary, ref_probs, ref_score = results["patch"]
    covered = ref_probs.sum(0) > 0
    ref_labels = ref_probs.argmax(0)
    n = ref_summary["n_patches"]
    title = f"segment patch vs dense: {args.arch} @ {args.patch} px, stride {args.stride}"
    table = Table(title=title)
    for column in ("measure", "patch", "dense"):
        table.add_column(column, justify="right")
    med = {m: statistics.median(w) for m, w in walls.items()}
    dense_summary, dense_probs, dense_score = results["dense"]
    agree = (dense_probs.argmax(0) == ref_labels)[covered].mean()
    diff = np.abs(dense_probs - ref_probs)[:, covered]
    rows = [
        ("slide", f"{args.size}² @ {args.slide_mpp} µm/px", f"model {args.model_mpp} µm/px"),
        ("torch threads / workers", str(torch.get_num_threads()), str(args.workers)),
        ("patches (tissue)", str(n), str(dense_summary["n_patches"])),
        ("wall s (median of runs)", f"{med['patch']:.2f}", f"{med['dense']:.2f}"),
        ("  runs", " ".join(f"{w:.1f}" for w in walls["patch"]),
         " ".join(f"{w:.1f}" for w in walls["dense"])),
        ("inference stage s", f"{ref_summary['seconds_by_stage']['inference']:.2f}",
         f"{dense_summary['seconds_by_stage']['inference']:.2f}"),
        ("patches/s (wall)", f"{n / med['patch']:.1f}", f"{n / med['dense']:.1f}"),
        ("speed-up (wall)", "1.00", f"{med['patch'] / med['dense']:.2f}"),
        ("peak RSS MiB", f"{rss['patch']:.0f}", f"{rss['dense']:.0f}"),
        ("label agreement vs patch (covered cells)", "1", f"{agree:.4f}"),
        ("max / mean |Δprob| vs patch", "0", f"{diff.max():.3f} / {diff.mean():.4f}"),
        ("BACH score vs annotation", f"{ref_score:.4f}", f"{dense_score:.4f}"),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
