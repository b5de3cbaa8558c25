"""Inference of a planned slide: the prediction mode's units -> model -> stitched probabilities.

Finished mask rows stream into ``<prefix>.probs.zarr`` and are committed for resuming
(``pathda.segment.resume``); a resumed run restores the committed rows and runs only the
patches that reach the first unfinished one.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from pathda.checkpoint import InferenceCheckpoint
from pathda.errors import NonFiniteOutputError
from pathda.model_input import InputPipeline
from pathda.progress import make_progress
from pathda.provenance import provenance
from pathda.segment import grid
from pathda.segment.config import SegmentConfig
from pathda.segment.engine import make_loader, predict_batches
from pathda.segment.modes import PREDICTION_MODES, PredictionMode
from pathda.segment.plan import SegmentPlan
from pathda.segment.resume import ResumeState, RowCheckpoint, first_patch_to_run, resume_stitcher
from pathda.segment.stitch import ProbabilityStitcher, ZarrProbabilityWriter
from pathda.slide import Slide


def infer_slide(
    slide: Slide,
    model: torch.nn.Module,
    meta: InferenceCheckpoint,
    device: torch.device,
    cfg: SegmentConfig,
    plan: SegmentPlan,
    prefix: Path,
    quiet: bool,
    state: ResumeState,
    fingerprint: str,
) -> tuple[np.ndarray, list[str]]:
    """Run the plan's patches in ``cfg.mode`` and stitch them into the mask.

    Args:
        prefix: work folder / stem; the probabilities go to ``<prefix>.probs.zarr``.
        state: what an interrupted run with the same ``fingerprint`` committed.

    Returns:
        The (rows, columns) uint8 labels, and the warnings raised.
    """
    class_names = list(meta.class_names)
    writer = ZarrProbabilityWriter(
        prefix.with_name(prefix.name + ".probs.zarr"),
        len(class_names),
        plan.mask_shape,
        attributes={
            "axes": "cyx",
            "class_names": class_names,
            "mask_downsample": plan.mask_downsample,
            "slide_mpp": plan.slide_mpp,
            "mpp": plan.slide_mpp * plan.mask_downsample,
            "note": "mean blended softmax per cell; all 0 where no patch with tissue covered it",
            "provenance": provenance(cfg, [slide.path], plan.slide_mpp),
        },
        existing=state.rows_done > 0,
    )
    writer.resume(state.rows_done)
    sink = RowCheckpoint(writer, prefix.parent, fingerprint, cfg.resume_every_s)
    stitcher = ProbabilityStitcher(
        plan.mask_shape,
        len(class_names),
        plan.mask_downsample,
        plan.patch_l0,
        grid.get_window(cfg.window),
        plan.tissue,
        sink=sink,
    )
    sink.stitcher = stitcher
    resume_stitcher(stitcher, state)
    first = first_patch_to_run(
        plan.origins, plan.patch_l0, plan.mask_downsample, plan.mask_shape[0], state.rows_done
    )
    warns: list[str] = []
    if len(plan.origins) == 0:
        warns.append(f"{slide.path}: no tissue detected; the mask is all normal")
        warnings.warn(warns[-1], UserWarning, stacklevel=3)
    elif first < len(plan.origins):
        mode = PREDICTION_MODES[cfg.mode](slide.path, model, meta, cfg, plan, first)
        prepare = meta.input_pipeline()
        _predict(mode, stitcher, slide.path, len(plan.origins), prepare, device, cfg, quiet)
    labels = stitcher.finish()
    writer.flush()
    sink.commit()  # an interrupted export resumes without inference
    return labels, warns


def _predict(
    mode: PredictionMode,
    stitcher: ProbabilityStitcher,
    slide_path: Path,
    n_patches: int,
    prepare: InputPipeline,
    device: torch.device,
    cfg: SegmentConfig,
    quiet: bool,
) -> None:
    """The one prediction loop: read the mode's units, run the model, hand results over."""
    loader = make_loader(mode.units, mode.batch_size, cfg.num_workers, device)
    with make_progress(quiet) as progress:
        task = progress.add_task(slide_path.name, total=n_patches, completed=mode.start)
        for indices, probs in predict_batches(
            mode.model, loader, prepare, device, *mode.model_args, precision=cfg.precision
        ):
            _require_finite(probs, slide_path)
            progress.advance(task, mode.hand_over(indices, probs, stitcher))
        mode.finish(stitcher)
    mode.units.close()


def _require_finite(probs: np.ndarray, slide: Path) -> None:
    """Refuse NaN/inf probabilities: they would become an all-normal mask that looks valid."""
    if not np.isfinite(probs).all():
        raise NonFiniteOutputError(
            f"{slide}: the model's outputs are not finite (NaN/inf); its weights are broken: "
            "retrain, or use an earlier model.pt"
        )
