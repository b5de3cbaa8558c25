"""Patch extraction: one read per block of tiles, cut into patches, in parallel workers.

A block is a square group of grid cells (see ``plan.SlidePlan.blocks``). Each job reads
the bounding box of the block's tiles once at the target resolution and cuts the
patches out of it, instead of one read per patch. Jobs run in a thread or process
pool; results come back in job order, with at most ``window`` jobs in flight, so memory
stays bounded whatever the slide size.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import multiprocessing
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pathda.slide import Slide
from pathda.tiling.plan import SlidePlan, open_for_tiling
from pathda.tiling.shards import encode_patch

# Slides kept open per worker (thread or process); tiling visits slides in order.
_OPEN_SLIDES_PER_WORKER = 2


@dataclasses.dataclass(frozen=True)
class BlockJob:
    """Read one block of a slide and cut its patches.

    Attributes:
        slide: slide path.
        slide_mpp: level-0 µm/px override, or None to use the file's.
        mpp: target µm/px.
        location: (x, y) level-0 top-left of the read.
        size: (width, height) of the read, pixels at ``mpp``.
        offsets: (n, 2) int (column, row) of each patch's top-left in the read, pixels.
        patch_size: patch side, pixels at ``mpp``.
    """

    slide: Path
    slide_mpp: float | None
    mpp: float
    location: tuple[int, int]
    size: tuple[int, int]
    offsets: np.ndarray
    patch_size: int


def block_jobs(plan: SlidePlan, target_mpp: float, slide_mpp: float | None) -> Iterator[BlockJob]:
    """The read jobs of a slide, in store order."""
    stride, p = plan.grid.stride, plan.grid.patch_size
    for start, end in zip(plan.blocks[:-1], plan.blocks[1:], strict=True):
        rows, cols = plan.rows[start:end], plan.cols[start:end]
        r0, c0 = int(rows.min()), int(cols.min())
        x0, y0 = plan.grid.origins(np.array([r0]), np.array([c0]))
        width = (int(cols.max()) - c0) * stride + p
        height = (int(rows.max()) - r0) * stride + p
        offsets = np.stack([(cols - c0) * stride, (rows - r0) * stride], axis=1)
        yield BlockJob(
            plan.spec.slide,
            slide_mpp,
            target_mpp,
            (int(x0[0]), int(y0[0])),
            (width, height),
            offsets.astype(np.int64),
            p,
        )


def cut_patches(region: np.ndarray, offsets: np.ndarray, patch_size: int) -> np.ndarray:
    """(n, P, P, 3) patches at (column, row) ``offsets`` of an (h, w, 3) region."""
    out = np.empty((len(offsets), patch_size, patch_size, 3), np.uint8)
    for i, (c, r) in enumerate(offsets):
        out[i] = region[r : r + patch_size, c : c + patch_size]
    return out


class _WorkerState(threading.local):
    """Per-thread (and so per-process) open slides and stain normaliser copy."""

    def __init__(self) -> None:
        self.slides: collections.OrderedDict[Path, Slide] = collections.OrderedDict()
        self.normaliser: Any = None
        self.template_id: int | None = None


_STATE = _WorkerState()
_TEMPLATE: Any = None  # the normaliser every worker copies (set per pool)
# Every slide open in this process, so closing a reader closes its threads' handles too.
_OPENED: set[Slide] = set()
_OPENED_LOCK = threading.Lock()


def _slide(job: BlockJob) -> Slide:
    cache = _STATE.slides
    if job.slide not in cache:
        while len(cache) >= _OPEN_SLIDES_PER_WORKER:
            _close(cache.popitem(last=False)[1])
        slide = open_for_tiling(job.slide, job.slide_mpp)
        with _OPENED_LOCK:
            _OPENED.add(slide)
        cache[job.slide] = slide
    return cache[job.slide]


def _close(slide: Slide) -> None:
    with _OPENED_LOCK:
        _OPENED.discard(slide)
    slide.close()


def _normaliser() -> Any:
    if _TEMPLATE is None:
        return None
    if _STATE.template_id != id(_TEMPLATE):
        _STATE.normaliser = copy.deepcopy(_TEMPLATE)
        _STATE.template_id = id(_TEMPLATE)
    return _STATE.normaliser


def extract_block(job: BlockJob) -> tuple[list[bytes], int]:
    """Read a block; return its patches encoded for the store, and the stain fallbacks.

    Encoding (zstd) happens here, in the worker, so the single writer only assembles
    shard files.
    """
    region = _slide(job).read_at_mpp(job.location, job.size, job.mpp)
    patches = cut_patches(region, job.offsets, job.patch_size)
    fallbacks = 0
    normaliser = _normaliser()
    if normaliser is not None:
        before = int(normaliser.fallback_count)
        patches = np.asarray(normaliser.transform(patches), dtype=np.uint8)
        fallbacks = int(normaliser.fallback_count) - before
    return [encode_patch(p) for p in patches], fallbacks


def _init_process(template: Any) -> None:
    global _TEMPLATE
    _TEMPLATE = template


def default_workers() -> int:
    """One worker per CPU core available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class BlockReader:
    """Runs ``extract_block`` jobs in parallel and yields results in job order.

    Args:
        kind: "thread" (OpenSlide and image resizing release the GIL) or "process".
        workers: pool size; 1 runs jobs inline; 0 = one per CPU core.
        normaliser: stain normaliser applied to every patch batch, or None.
    """

    def __init__(
        self, kind: Literal["thread", "process"], workers: int, normaliser: Any = None
    ) -> None:
        global _TEMPLATE
        self.workers = workers or default_workers()
        self.window = 2 * self.workers  # jobs in flight: keeps every worker busy
        self._executor: Executor | None = None
        _TEMPLATE = normaliser
        if self.workers > 1 and kind == "process":
            # spawn: the parent runs zarr's event-loop thread, which fork would not copy.
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_process,
                initargs=(normaliser,),
            )
        elif self.workers > 1:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="pathda-tile")

    def map(self, jobs: Iterable[BlockJob]) -> Iterator[tuple[list[bytes], int]]:
        """Results of ``jobs`` in order."""
        if self._executor is None:
            yield from map(extract_block, jobs)
            return
        pending: collections.deque[Future] = collections.deque()
        for job in jobs:
            pending.append(self._executor.submit(extract_block, job))
            if len(pending) >= self.window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        global _TEMPLATE
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        _TEMPLATE = None
        with _OPENED_LOCK:
            opened = list(_OPENED)
            _OPENED.clear()
        for slide in opened:  # pool threads are gone; their cached slides are closed here
            slide.close()
        _STATE.slides.clear()

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
