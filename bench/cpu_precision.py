"""Patch-classifier inference on the CPU: NCHW vs channels-last, float32 vs bf16 autocast.

What `predict_batches` could run on a CPU, measured on one timm model with random (seeded)
weights: patches/s and the largest softmax difference from float32 NCHW. bf16 only pays
where the CPU has bf16 arithmetic (AVX-512-BF16, AMX); `lscpu` is printed with the table.

Usage:
    .venv/bin/python bench/cpu_precision.py [--arch resnet18] [--patch 224] [--batch 32]
        [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import time

import timm
import torch
from rich.console import Console
from rich.table import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--patch", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.arch, num_classes=4).eval()
    x = torch.randn(args.batch, 3, args.patch, args.patch)
    variants = {
        "float32 NCHW": (torch.contiguous_format, False),
        "float32 channels-last": (torch.channels_last, False),
        "bf16 autocast channels-last": (torch.channels_last, True),
    }
    reference = None
    title = f"{args.arch} @ {args.patch} px, batch {args.batch}, {args.threads} threads"
    table = Table(title=title)
    for col in ("variant", "patches/s", "vs float32 NCHW", "max abs Δprob"):
        table.add_column(col)
    base_rate = None
    for name, (fmt, bf16) in variants.items():
        m = model.to(memory_format=fmt)
        xx = x.contiguous(memory_format=fmt)
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), amp:
            probs = torch.softmax(m(xx).float(), dim=1)  # warm-up, and the outputs compared
            start = time.perf_counter()
            for _ in range(args.repeats):
                m(xx)
            rate = args.batch * args.repeats / (time.perf_counter() - start)
        reference = probs if reference is None else reference
        base_rate = base_rate or rate
        diff = (probs - reference).abs().max().item()
        table.add_row(name, f"{rate:.1f}", f"{rate / base_rate:.2f}x", f"{diff:.4f}")
    console = Console()
    console.print(table)
    flags = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model_name = [line for line in flags.splitlines() if line.startswith("Model name")]
    bf16_flags = sorted({f for f in flags.split() if f in ("avx512_bf16", "amx_bf16", "avx2")})
    console.print(f"{model_name[0] if model_name else 'CPU ?'}; flags: {', '.join(bf16_flags)}")


if __name__ == "__main__":
    main()
