"""Segmentation throughput: the whole ``segment_slide`` pipeline vs pure model compute.

Writes a pyramidal JPEG TIFF with an elliptical "tissue" field (about half the slide,
H&E-like noise) at ``--slide-mpp``, saves a randomly initialised checkpoint, then times

* ``pipeline``: ``segment_slide`` end to end (tissue detection, DataLoader workers reading
  and resampling patches, stain-free input normalisation, model, stitching, exports);
* ``compute``: the same number of patches, already on the device as uint8, through the
  same input normalisation and model (bf16 autocast + channels-last on CUDA);

and projects seconds for a 100k x 80k level-0 px slide at 50 % tissue. The overhead goal
is pipeline <= 1.15 x compute.

Usage:
    .venv/bin/python bench/segment_bench.py                       # CPU, resnet18 @ 224
    .venv/bin/python bench/segment_bench.py --device cuda --arch seresnet50 --size 24576 \\
        --workers 12 --batch-size 256
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from pathda.adapt import create_backbone
from pathda.annotations import BACH_CLASSES
from pathda.checkpoint import (
    InferenceCheckpoint,
    load_inference_checkpoint,
    save_inference_checkpoint,
)
from pathda.device import resolve_device
from pathda.models import ModelInputConfig
from pathda.segment import segment_slide
from pathda.segment.engine import InputPipeline
from pathda.synth.writer import write_pyramid_tiff

NORMALISE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
PROJECTED_SLIDE = (100_000, 80_000)  # level-0 px
PROJECTED_TISSUE = 0.5


def bench_checkpoint(
    arch: str, mpp: float, patch: int, normalise: dict, bench: str, **provenance: object
):
    """The inference-checkpoint metadata the segmentation benches save their models with."""
    return InferenceCheckpoint(
        arch=arch,
        class_map=BACH_CLASSES,
        mpp=mpp,
        patch_size=patch,
        input_config=ModelInputConfig(normalise["mean"], normalise["std"], (3, patch, patch)),
        provenance={"bench": bench, **provenance},
    )


def train_patch_classifier(arch: str, x, y, steps: int, normalise: dict, batch: int = 32):
    """A short class-balanced supervised loop over uint8 patches ``x`` (N, 3, H, W) with
    labels ``y`` (N,) in the four BACH classes, normalised as ``normalise`` says; seeded
    (0), so ``steps=0`` gives the same random model every time."""
    torch.manual_seed(0)
    model = create_backbone(arch, 4)
    mean = torch.tensor(normalise["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(normalise["std"]).view(1, 3, 1, 1)
    sample_weight = (1 / torch.bincount(y, minlength=4).float().clamp(min=1))[y]
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for step in range(steps):
        idx = torch.multinomial(sample_weight, batch, replacement=True, generator=generator)
        xb = x[idx].float() / 255
        xb = xb.flip(3) if step % 2 else xb  # horizontal flips on every other step
        loss = torch.nn.functional.cross_entropy(model((xb - mean) / std), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def write_bench_slide(path: Path, size: int, mpp: float) -> None:
    """Square slide: white glass, an ellipse of pink/purple noise covering ~half of it."""
    pink, purple, white = (
        np.array(c, np.float32) for c in ([225, 140, 185], [120, 70, 155], [244] * 3)
    )

    def render(x0: int, y0: int, w: int, h: int) -> np.ndarray:
        ys, xs = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float32) / size
        inside = ((xs - 0.5) / 0.4) ** 2 + ((ys - 0.5) / 0.4) ** 2 <= 1  # pi*0.16 = 50 %
        rng = np.random.default_rng(x0 * 7919 + y0)
        nuclei = (rng.random((h, w)) > 0.93)[..., None]
        tissue = pink + nuclei * (purple - pink) + rng.normal(0, 12, (h, w, 1))
        rgb = np.where(inside[..., None], tissue, white)
        return np.clip(rgb, 0, 255).astype(np.uint8)

    write_pyramid_tiff(path, (size, size), render, mpp, tile_size=512, quality=85)


def time_compute(model, n, batch_size, patch, device) -> float:
    """Seconds for ``n`` uint8 patches (already on the device) through normalisation + model."""
    prepare = InputPipeline(NORMALISE["mean"], NORMALISE["std"])
    cuda = device.type == "cuda"
    batch = torch.randint(0, 256, (batch_size, 3, patch, patch), dtype=torch.uint8, device=device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)

    def run(count: int) -> None:
        with torch.inference_mode():
            for start in range(0, count, batch_size):
                x = prepare(batch[: min(batch_size, count - start)])
                if cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                    probs = torch.softmax(model(x).float(), 1)
                probs.cpu()

    run(min(n, 2 * batch_size))  # warm-up (cuDNN autotuning, allocator)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    run(n)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--patch", type=int, default=224, help="px at the model mpp")
    parser.add_argument("--stride", type=int, default=None, help="px at the model mpp")
    parser.add_argument("--model-mpp", type=float, default=0.5)
    parser.add_argument("--slide-mpp", type=float, default=0.25)
    parser.add_argument("--size", type=int, default=4096, help="bench slide side, level-0 px")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="keep slide and outputs here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    stride = args.stride or args.patch // 2
    with tempfile.TemporaryDirectory(prefix="segment-bench-") as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        slide = work / "bench_slide.tiff"
        t0 = time.perf_counter()
        write_bench_slide(slide, args.size, args.slide_mpp)
        make_s = time.perf_counter() - t0
        meta = bench_checkpoint(args.arch, args.model_mpp, args.patch, NORMALISE, "segment_bench")
        torch.manual_seed(0)
        ckpt = save_inference_checkpoint(work / "bench.pt", create_backbone(args.arch, 4), meta)
        loaded = load_inference_checkpoint(ckpt, device)
        # Warm the model once so both timings start with cuDNN autotuned.
        compute_warm = time_compute(loaded[0], args.batch_size, args.batch_size, args.patch, device)
        del compute_warm
        result = segment_slide(
            slide,
            loaded,
            work / "out",
            stride=stride,
            batch_size=args.batch_size,
            num_workers=args.workers,
            quiet=True,
        )
        n = result.n_patches
        compute_s = time_compute(loaded[0], n, args.batch_size, args.patch, device)
    stages = result.summary_data.get("seconds_by_stage", {})
    pipeline_s = result.seconds
    infer_s = stages.get("inference", pipeline_s)
    stride_l0 = stride * args.model_mpp / args.slide_mpp
    projected_n = PROJECTED_TISSUE * math.prod(math.ceil(s / stride_l0) for s in PROJECTED_SLIDE)

    table = Table(title=f"segment bench: {args.arch} @ {args.patch} px on {device}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
        ("torch threads", str(torch.get_num_threads())),
        ("bench slide", f"{args.size} px @ {args.slide_mpp} µm/px (made in {make_s:.1f} s)"),
        ("model mpp / patch / stride", f"{args.model_mpp} µm/px / {args.patch} / {stride} px"),
        ("batch size / workers", f"{args.batch_size} / {args.workers}"),
        ("patches (tissue)", str(n)),
        ("pipeline s", f"{pipeline_s:.2f}"),
        *((f"  {k} s", f"{v:.2f}") for k, v in stages.items()),
        ("compute s (same patches)", f"{compute_s:.2f}"),
        ("pipeline patches/s", f"{n / pipeline_s:.1f}"),
        ("compute patches/s", f"{n / compute_s:.1f}"),
        ("overhead (pipeline/compute - 1)", f"{100 * (pipeline_s / compute_s - 1):.1f} %"),
        ("100k x 80k @ 50 % tissue: patches", f"{projected_n:,.0f}"),
        ("  projected s (inference-stage rate)", f"{projected_n * infer_s / n:,.0f}"),
        ("  projected s (compute rate)", f"{projected_n / (n / compute_s):,.0f}"),
    ]
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
