"""``segment_slide``: tissue -> patches -> model -> blended probabilities -> outputs.

Everything for a slide is written into a hidden temporary folder that is renamed to
``<out_dir>/<stem>/`` at the end, and ``<stem>.summary.json`` (with ``"complete": true``)
is written last inside it, so an interrupted run never looks finished.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pathda.checkpoint import InferenceCheckpoint, load_inference_checkpoint
from pathda.device import resolve_device
from pathda.errors import ConfigError
from pathda.layout import SEGMENT_FORMAT
from pathda.provenance import provenance, to_jsonable
from pathda.segment.config import SegmentConfig, SegmentResult
from pathda.segment.engine import compute_record
from pathda.segment.export import export_outputs
from pathda.segment.inference import infer_slide
from pathda.segment.plan import plan_segmentation
from pathda.segment.resume import (
    committed_rows,
    finish_work_folder,
    open_work_folder,
    run_fingerprint,
    work_folder,
)
from pathda.slide import open_slide
from pathda.slide.naming import slide_stem

LoadedModel = tuple[torch.nn.Module, InferenceCheckpoint]
"""What ``load_inference_checkpoint`` returns: (model in eval mode, its checkpoint)."""


def segment_slide(
    slide_path: str | Path,
    checkpoint: str | Path | LoadedModel,
    out_dir: str | Path,
    config: SegmentConfig | None = None,
    *,
    quiet: bool = False,
    **options: Any,
) -> SegmentResult:
    """Segment one whole-slide image into the checkpoint's classes.

    Args:
        slide_path: slide file.
        checkpoint: an inference checkpoint file, or the (model, checkpoint) pair
            ``load_inference_checkpoint`` returned (to reuse one model for many slides).
        out_dir: parent folder; outputs go to ``out_dir/<stem>/``.
        config: settings; ``options`` (any ``SegmentConfig`` field) override it.
        quiet: no progress bar.

    Returns:
        The result; the files are ``<stem>.mask.ome.tif``, ``.geojson``, ``.probs.zarr``,
        ``.overlay.png``, optionally ``.xml``, and ``.summary.json`` (written last).

    Raises:
        PathdaError: bad or damaged checkpoint, unreadable slide, slide without mpp (and
            no ``slide_mpp``), bad options, or a model whose outputs are not finite. A
            slide without detected tissue is *not* an error: it gets an all-normal mask, a
            warning, and ``warnings`` in the summary.
    """
    cfg = _resolve_config(config, options)
    start = time.perf_counter()
    checkpoint_path = None if isinstance(checkpoint, tuple) else str(checkpoint)
    if isinstance(checkpoint, tuple):
        model, meta = checkpoint
        device = next(model.parameters()).device
    else:
        model, meta = load_inference_checkpoint(checkpoint, resolve_device(cfg.device))
        device = resolve_device(cfg.device)
    with open_slide(slide_path, mpp=cfg.slide_mpp) as slide:
        t_plan = time.perf_counter()
        plan = plan_segmentation(slide, meta, cfg)
        t_infer = time.perf_counter()
        stem = slide_stem(slide_path)
        final = Path(out_dir) / stem
        final.parent.mkdir(parents=True, exist_ok=True)
        work = work_folder(final)
        fingerprint = run_fingerprint(slide.path, model, meta, cfg, plan)
        state = open_work_folder(work, fingerprint)
        try:
            labels, warns = infer_slide(
                slide, model, meta, device, cfg, plan, work / stem, quiet, state, fingerprint
            )
            t_export = time.perf_counter()
            summary = export_outputs(slide, meta, cfg, plan, labels, work / stem, warns)
            t_end = time.perf_counter()
            summary.update(
                format=SEGMENT_FORMAT,
                n_patches=len(plan.origins),
                resumed_from_row=state.rows_done,
                seconds=round(t_end - start, 3),
                seconds_by_stage={
                    "load": round(t_plan - start, 3),
                    "tissue": round(t_infer - t_plan, 3),
                    "inference": round(t_export - t_infer, 3),
                    "export": round(t_end - t_export, 3),
                },
                checkpoint=checkpoint_path,
                compute=compute_record(cfg.precision, device),
                config=to_jsonable(cfg),
                provenance=provenance(cfg, [slide.path], plan.slide_mpp),
                complete=True,
            )
            (work / f"{stem}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        except BaseException as err:
            # Keep what a later run can resume from (Ctrl-C, or rows already committed);
            # a run that failed before committing anything leaves nothing behind.
            if not (isinstance(err, KeyboardInterrupt) or committed_rows(work)):
                shutil.rmtree(work, ignore_errors=True)
            raise
        finish_work_folder(work, final)
    return SegmentResult(
        folder=final,
        summary=final / f"{stem}.summary.json",
        labels=labels,
        mask_downsample=plan.mask_downsample,
        n_patches=len(plan.origins),
        seconds=summary["seconds"],
        summary_data=summary,
    )


def _resolve_config(config: SegmentConfig | None, options: Mapping[str, Any]) -> SegmentConfig:
    base = config or SegmentConfig()
    names = {f.name for f in dataclasses.fields(SegmentConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(
            f"unknown segment option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
        )
    return dataclasses.replace(base, **{k: v for k, v in options.items() if v is not None})
