"""Time one training step of each adaptation method on the same batch.

Prints a table of ms/step (median over the timed steps) and the ratio to ``none``.
``none`` trains on source images only, so for a like-for-like backbone cost it is timed
twice: on the B source images, and on 2B images (``none@2B``: what the adapting methods
push through the backbone, source + target). Ratios are to ``none@2B``.
Goals: ldann <= 1.15x, lwass <= 1.5x.

On a shared, loaded CPU, wall time follows the scheduler more than the work: ``--clock cpu``
times the process's CPU time instead (threads=1 recommended), and ``--count-ops`` adds the
number of ATen operators (all, and matrix products) one step dispatches, a load-independent
count of what each method adds.

Examples:
    python bench/step_time.py --arch seresnet18 --size 64 --batch 8
    python bench/step_time.py --arch vit_tiny_patch16_224 --size 224 --batch 8 --methods none,ldann
    python bench/step_time.py --arch seresnet50 --size 224 --batch 32 --device cuda --amp
    python bench/step_time.py --arch vit_tiny_patch16_224 --size 64 --methods none,ldann \
        --threads 1 --clock cpu --count-ops
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch.utils._python_dispatch import TorchDispatchMode

from pathda.adapt import build_optimizers, create_method
from pathda.models import create_backbone, plan_backbone


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
MATMULS = {"aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm"}


def _time_round_robin(
    runs: dict[str, object], steps: int, warmup: int, device: torch.device, clock: str = "wall"
) -> dict[str, float]:
    """Median ms per call of each run, interleaving the runs so load drift hits all alike."""
    now = CLOCKS[clock]
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(steps):
        for name, run in runs.items():
            _sync(device)
            start = now()
            run()
            _sync(device)
            times[name].append((now() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched (forward, backward and optimiser alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def _count_ops(run) -> tuple[int, int]:
    """(all ATen operators, matrix products) of one call."""
    with _OpCounter() as counter:
        run()
    return sum(counter.ops.values()), sum(counter.ops[op] for op in MATMULS)


def _peak_memory(run, device: torch.device) -> float:
    """Peak CUDA memory of one call in GiB (0 on CPU)."""
    if device.type != "cuda":
        return 0.0
    torch.cuda.reset_peak_memory_stats(device)
    run()
    return torch.cuda.max_memory_allocated(device) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="seresnet18")
    parser.add_argument("--size", type=int, default=64, help="tile side in pixels")
    parser.add_argument("--batch", type=int, default=8, help="source (= target) batch size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--n-critic", type=int, default=5)
    parser.add_argument("--granularity", default="block", choices=["block", "stage"])
    parser.add_argument("--amp", action="store_true", help="bf16 autocast forward")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--methods", default="none,dann,ldann,lwass", help="comma-separated method names"
    )
    parser.add_argument(
        "--compare-timm", action="store_true", help="also time a plain timm training step"
    )
    parser.add_argument(
        "--clock", default="wall", choices=list(CLOCKS), help="cpu: process CPU time (CPU only)"
    )
    parser.add_argument(
        "--count-ops", action="store_true", help="also count ATen operators of one step"
    )
    parser.add_argument("--json", default=None, help="also write {run: ms/step, ...} here")
    args = parser.parse_args()
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu times host CPU work only; use the wall clock on a GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = "bfloat16" if args.amp else None
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.size, args.size)
    x_src = torch.randn(shape, generator=gen).to(device, memory_format=memory_format)
    x_tgt = (torch.randn(shape, generator=gen) + 0.5).to(device, memory_format=memory_format)
    y_src = torch.randint(0, 4, (args.batch,), generator=gen).to(device)
    x_both, y_both = torch.cat([x_src, x_tgt]), torch.cat([y_src, y_src])

    runs: dict[str, object] = {}
    n_heads: dict[str, int] = {}
    for name in args.methods.split(","):
        config = {"amp_dtype": amp, "granularity": args.granularity}
        if name == "lwass":
            config["n_critic"] = args.n_critic
        method = create_method(name, **config)
        torch.manual_seed(0)
        # input_size: ViT-like architectures are built for the tile size (timm img_size).
        backbone = create_backbone(args.arch, num_classes=4, input_size=args.size)
        backbone = backbone.to(device, memory_format=memory_format)
        model = method.build_model(backbone, input_size=(3, args.size, args.size))
        optimizers = build_optimizers(model, method)
        batches = [("", x_src, y_src)] + ([("@2B", x_both, y_both)] if name == "none" else [])
        for suffix, xs, ys in batches:
            runs[name + suffix] = lambda xs=xs, ys=ys, m=method, mo=model, o=optimizers: m.step(
                mo, o, xs, ys, x_tgt, progress=0.5
            )
            n_heads[name + suffix] = len(model.heads)

    if args.compare_timm:
        import timm

        torch.manual_seed(0)
        kwargs = plan_backbone(args.arch, 4, input_size=args.size).timm_kwargs  # e.g. img_size
        net = timm.create_model(args.arch, pretrained=False, num_classes=4, **kwargs)
        net = net.to(device, memory_format=memory_format).train()
        sgd = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

        def timm_step() -> None:
            sgd.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                loss = F.cross_entropy(net(x_both), y_both)
            loss.backward()
            sgd.step()
            loss.item()  # the pathda steps also sync once for their metrics

        runs["timm@2B"] = timm_step
        n_heads["timm@2B"] = 0

    median_ms = _time_round_robin(runs, args.steps, args.warmup, device, args.clock)
    rows = [
        (name, n_heads[name], median_ms[name], _peak_memory(run, device))
        for name, run in runs.items()
    ]
    ops = {name: _count_ops(run) for name, run in runs.items()} if args.count_ops else {}

    reference = next((ms for name, _, ms, _ in rows if name == "none@2B"), None)
    table = Table(
        title=(
            f"{args.arch} {args.size}px, batch {args.batch}+{args.batch}, {device}"
            f"{', bf16' if args.amp else ''}, {torch.get_num_threads()} threads, "
            f"{args.clock} clock, load {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
        )
    )
    columns = ["method", "heads", "ms/step", "x none@2B", "peak GiB"]
    columns += ["ops/step", "matmuls/step"] if ops else []
    for column in columns:
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, heads, ms, peak in rows:
        ratio = f"{ms / reference:.2f}" if reference else "-"
        cells = [name, str(heads), f"{ms:.1f}", ratio, f"{peak:.2f}" if peak else "-"]
        table.add_row(*cells, *(str(n) for n in ops.get(name, ())))
    Console().print(table)
    if args.json:
        import json
        from pathlib import Path

        record = {name: {"ms_per_step": ms, "peak_gib": peak} for name, _, ms, peak in rows}
        for name, (n_ops, n_matmuls) in ops.items():
            record[name].update(ops_per_step=n_ops, matmuls_per_step=n_matmuls)
        summary = {"batch": args.batch, "clock": args.clock, "runs": record}
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
