"""Resuming ``segment_slide`` after a kill: finished mask rows are persisted as they complete.

A slide is segmented into the work folder ``<out_dir>/.<stem>.segment-resume/``, renamed
to ``<out_dir>/<stem>/`` when complete. While the stitcher finalises rows of the mask
(in order, top to bottom), a :class:`RowCheckpoint` sink passes them to the zarr writer
and, at most every ``resume_every_s`` seconds, commits them: the buffered probability
rows are written into the zarr array, then the labels and coverage of all finished rows
(``resume/rows.npz``), then ``resume/state.json`` with ``rows_done`` (the commit point,
written atomically). A rerun with the same inputs (:func:`run_fingerprint`) starts the
stitcher at ``rows_done`` and feeds only the patches whose footprint reaches that row,
from a batch (patch mode) or band (dense mode) boundary so every batch holds the same
patches as in an uninterrupted run: the outputs are the same bytes. A rerun with other
inputs or settings starts from zero.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathda.atomic import atomic_path, write_json
from pathda.checkpoint import InferenceCheckpoint
from pathda.provenance import to_jsonable
from pathda.segment.stitch import ProbabilityStitcher, ZarrProbabilityWriter

# Settings that do not change any output byte; changing them keeps the finished rows.
_NOT_IN_FINGERPRINT = ("num_workers", "resume_every_s")


def work_folder(final: Path) -> Path:
    """The hidden folder a slide is segmented into before it becomes ``final``."""
    return final.with_name(f".{final.name}.segment-resume")


def run_fingerprint(
    slide_path: Path, model: torch.nn.Module, meta: InferenceCheckpoint, config: Any, plan: Any
) -> str:
    """A hash of everything the outputs depend on: slide file, weights, checkpoint
    metadata, settings (except worker counts) and the resulting patch plan."""
    stat = slide_path.stat()
    settings = {k: v for k, v in to_jsonable(config).items() if k not in _NOT_IN_FINGERPRINT}
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    record = {
        "slide": [str(slide_path.resolve()), stat.st_size, stat.st_mtime_ns],
        "weights": digest.hexdigest(),
        "meta": to_jsonable(
            {
                "arch": meta.arch,
                "classes": list(meta.class_names),
                "mpp": meta.mpp,
                "patch_size": meta.patch_size,
                "mean": list(meta.mean),
                "std": list(meta.std),
                "stain": meta.stain,
                "timm_kwargs": dict(meta.timm_kwargs),
            }
        ),
        "settings": settings,
        "plan": [list(plan.mask_shape), plan.mask_downsample, len(plan.origins)],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ResumeState:
    """What a previous, interrupted run of the same slide finished.

    Attributes:
        rows_done: mask rows whose probabilities, labels and coverage are on disk.
        labels: (rows_done, W) uint8 labels of those rows (None when rows_done is 0).
        covered: (rows_done, W) bool coverage of those rows.
    """

    rows_done: int = 0
    labels: np.ndarray | None = None
    covered: np.ndarray | None = None


def open_work_folder(work: Path, fingerprint: str) -> ResumeState:
    """Resume ``work`` if it was left by a run with the same fingerprint, else empty it."""
    state_file = work / "resume" / "state.json"
    try:
        state = json.loads(state_file.read_text())
        if state["fingerprint"] == fingerprint and state["rows_done"] > 0:
            with np.load(work / "resume" / "rows.npz") as rows:
                labels, covered = rows["labels"], rows["covered"]
            if len(labels) == len(covered) == state["rows_done"]:
                return ResumeState(state["rows_done"], labels, covered)
    except (OSError, ValueError, KeyError):
        pass  # nothing (readable) to resume: start from zero
    if work.exists():
        shutil.rmtree(work)
    (work / "resume").mkdir(parents=True)
    write_json(state_file, {"fingerprint": fingerprint, "rows_done": 0})
    return ResumeState()


def committed_rows(work: Path) -> int:
    """Rows a run in ``work`` has made durable (0 when none or unreadable)."""
    try:
        return int(json.loads((work / "resume" / "state.json").read_text())["rows_done"])
    except (OSError, ValueError, KeyError):
        return 0


def finish_work_folder(work: Path, final: Path) -> None:
    """Drop the resume state and move the finished outputs to ``final``."""
    shutil.rmtree(work / "resume")
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.replace(work, final)


def first_patch_to_run(
    origins: np.ndarray, patch_l0: float, cell_l0: float, n_rows: int, rows_done: int
) -> int:
    """Index of the first (row-major) patch whose footprint reaches mask row ``rows_done``.

    A patch covers the mask rows whose centres lie in ``[y, y + patch_l0)`` (as
    ``grid.footprint_weights``); earlier patches only touch finished rows.
    """
    if rows_done <= 0:
        return 0
    y = origins[:, 1].astype(np.float64)
    stop = np.minimum(n_rows, np.ceil((y + patch_l0) / cell_l0 - 0.5))
    return int(np.searchsorted(stop > rows_done, True)) if (stop > rows_done).any() else len(y)


class RowCheckpoint:
    """A stitcher sink that writes rows to the zarr writer and commits them now and then.

    Args:
        writer: the probability writer (rows pass through to it).
        work: the work folder (``resume/`` inside it holds the state).
        fingerprint: the run's :func:`run_fingerprint`.
        every_s: seconds between commits (0: after every finalised band).
    """

    def __init__(
        self, writer: ZarrProbabilityWriter, work: Path, fingerprint: str, every_s: float
    ) -> None:
        self.writer = writer
        self.stitcher: ProbabilityStitcher | None = None
        self._dir = work / "resume"
        self._fingerprint = fingerprint
        self._every = every_s
        self._last = time.monotonic()
        self.rows_done = 0

    def __call__(self, row: int, mean: np.ndarray) -> None:
        self.writer(row, mean)
        self.rows_done = row + mean.shape[1]
        if time.monotonic() - self._last >= self._every:
            self.commit()

    def commit(self) -> None:
        """Make every finished row durable; the state file is written last."""
        if self.stitcher is None or self.rows_done == 0:
            return
        n = self.rows_done
        self.writer.write_through(n)
        with atomic_path(self._dir / "rows.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, labels=self.stitcher.labels[:n], covered=self.stitcher.covered[:n])
        write_json(self._dir / "state.json", {"fingerprint": self._fingerprint, "rows_done": n})
        self._last = time.monotonic()


def resume_stitcher(stitcher: ProbabilityStitcher, state: ResumeState) -> None:
    """Restore finished rows into a fresh stitcher; it then finalises from ``rows_done``."""
    if state.rows_done == 0:
        return
    n = state.rows_done
    stitcher.labels[:n] = state.labels
    stitcher.covered[:n] = state.covered
    stitcher.start_at(n)
