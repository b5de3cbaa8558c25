"""Batched inference of patches or dense blocks: workers read while the device computes.

The model runs channels-last, under bf16 autocast where ``autocast_dtype`` says so (on
CUDA by default, on the CPU when asked). On CUDA the loader pins memory, batches are
copied with ``non_blocking=True``, and batch *i*'s probabilities are handed
to the caller only after batch *i + 1* has been queued (waiting on batch *i*'s own CUDA
event), so host-side stitching and reading overlap device compute.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from pathda.errors import PathdaError
from pathda.model_input import InputPipeline
from pathda.segment.dataset import SlidePatchDataset, open_in_worker


def make_loader(
    dataset: SlidePatchDataset, batch_size: int, num_workers: int, device: torch.device
) -> DataLoader:
    """A loader that keeps the dataset's (row-major) order; workers open their own slide."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=open_in_worker if num_workers > 0 else None,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a ``SegmentConfig.precision`` on ``device`` (None = float32).

    ``auto`` is bf16 on CUDA and float32 on the CPU: on the CPU bf16 is a trade (faster only
    with bf16 hardware, a few labels different) that the user makes, not the default.
    """
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    if precision in ("auto", "float32"):
        return None
    raise ValueError(f"unknown precision {precision!r}")


def compute_record(precision: str, device: torch.device) -> dict[str, str]:
    """Where and in what arithmetic the model ran (for the summary: ``auto`` resolved)."""
    dtype = autocast_dtype(precision, device)
    return {"device": str(device), "autocast": "float32" if dtype is None else str(dtype)[6:]}


def predict_batches(
    model: torch.nn.Module,
    loader: DataLoader,
    prepare: InputPipeline,
    device: torch.device,
    *model_args: int,
    precision: str = "auto",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(unit indices (B,), softmax probabilities (B, ..., C) float32)`` in loader order.

    The same path serves both prediction modes: ``model(x, *model_args)`` returns logits
    with the classes on axis 1, (B, C) for patches or (B, C, rows, cols) for dense blocks;
    the probabilities come back with the classes moved last.

    Args:
        model: the patch classifier, or a ``DensePatchClassifier``.
        loader: batches of ``(indices, uint8 (B, 3, H, W))`` (a ``SlidePatchDataset``).
        prepare: the input pipeline (stain, normalisation), applied on the device.
        device: where the model is.
        model_args: extra arguments of the model's forward (dense: the block margin, px).
        precision: ``SegmentConfig.precision`` (see ``autocast_dtype``); the probabilities
            are float32 either way.

    Raises:
        PathdaError: a slide read failed in a worker (re-raised with its one-line message).
    """
    cuda = device.type == "cuda"
    amp_dtype = autocast_dtype(precision, device)
    # Channels-last on the CPU too: oneDNN's NHWC convolutions ran resnet18 at 224 px 1.32x
    # faster than NCHW on one core of an AVX-512 AMD EPYC (docs/benchmarks/segment.md).
    model = model.to(memory_format=torch.channels_last)
    if cuda:
        torch.backends.cudnn.benchmark = True
    pending: tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None] | None = None
    for indices, batch in _clean_errors(loader):
        with torch.inference_mode():
            x = prepare(batch.to(device, non_blocking=cuda))
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x, *model_args)
            probs = torch.softmax(logits.float(), dim=1).movedim(1, -1)
        done = None
        if cuda:
            probs = probs.to("cpu", non_blocking=True)  # into pinned host memory
            done = torch.cuda.Event()
            done.record()
        if pending is not None:
            yield _host(*pending)
        pending = (indices, probs, done)
    if pending is not None:
        yield _host(*pending)


def _host(
    indices: torch.Tensor, probs: torch.Tensor, done: torch.cuda.Event | None
) -> tuple[np.ndarray, np.ndarray]:
    if done is not None:
        done.synchronize()  # this batch's copy has landed; later batches keep running
    return indices.numpy(), probs.numpy()


def _clean_errors(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Iterate ``loader``; a user error raised in a worker keeps its type and one-line message."""
    try:
        yield from loader
    except PathdaError as err:
        raise type(err)(_worker_message(str(err))) from None


def _worker_message(text: str) -> str:
    # Worker errors arrive as "Caught X in DataLoader worker ...\nOriginal Traceback ...\n
    # pathda.errors.X: <message>"; keep the original message only.
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    return re.sub(r"^[\w.]+Error: ", "", last)
