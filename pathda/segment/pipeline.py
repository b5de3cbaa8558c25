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
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathda.annotations import write_geojson, write_imagescope_xml
from pathda.checkpoint import InferenceCheckpoint, load_inference_checkpoint
from pathda.device import resolve_device
from pathda.errors import ConfigError, NonFiniteOutputError
from pathda.layout import SEGMENT_FORMAT
from pathda.progress import make_progress
from pathda.provenance import provenance, to_jsonable
from pathda.segment import grid
from pathda.segment.blocks import BlockLayout, block_dataset, grid_cells
from pathda.segment.config import SegmentConfig, SegmentResult
from pathda.segment.dataset import SlidePatchDataset
from pathda.segment.dense import build_dense_classifier
from pathda.segment.engine import make_loader, predict_batches
from pathda.segment.export_geojson import label_regions
from pathda.segment.export_tiff import write_label_ome_tiff
from pathda.segment.overlay import OVERLAY_MAX_SIDE, blend_labels, write_overlay_png
from pathda.segment.resume import (
    ResumeState,
    RowCheckpoint,
    committed_rows,
    finish_work_folder,
    first_patch_to_run,
    open_work_folder,
    resume_stitcher,
    run_fingerprint,
    work_folder,
)
from pathda.segment.stitch import ProbabilityStitcher, ZarrProbabilityWriter
from pathda.slide import Slide, open_slide
from pathda.slide.naming import slide_stem
from pathda.slide.resolution import require_not_upsampled
from pathda.tiling.grid import tissue_fractions
from pathda.tissue import detect_tissue

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
        plan = _plan(slide, meta, cfg)
        t_infer = time.perf_counter()
        stem = slide_stem(slide_path)
        final = Path(out_dir) / stem
        final.parent.mkdir(parents=True, exist_ok=True)
        work = work_folder(final)
        fingerprint = run_fingerprint(slide.path, model, meta, cfg, plan)
        state = open_work_folder(work, fingerprint)
        try:
            labels, warns = _infer(
                slide, model, meta, device, cfg, plan, work / stem, quiet, state, fingerprint
            )
            t_export = time.perf_counter()
            summary = _export(slide, meta, cfg, plan, labels, work / stem, warns)
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


@dataclass(frozen=True)
class _Plan:
    slide_mpp: float
    patch_l0: float
    stride_px: int
    mask_downsample: int
    mask_shape: tuple[int, int]
    origins: np.ndarray  # (N, 2) level-0 origins of the patches with tissue, row-major
    tissue: np.ndarray  # (H, W) bool at the mask grid


def _plan(slide: Slide, meta: InferenceCheckpoint, cfg: SegmentConfig) -> _Plan:
    slide_mpp = slide.require_mpp()
    require_not_upsampled(slide.path, meta.mpp, slide_mpp)  # the same rule as tile's
    patch_px = meta.patch_size
    stride_px = cfg.stride or max(1, patch_px // 2)
    if stride_px > patch_px:
        raise ConfigError(f"stride {stride_px} px must not exceed the patch size {patch_px} px")
    scale = meta.mpp / slide_mpp  # level-0 px per model px
    patch_l0, stride_l0 = patch_px * scale, stride_px * scale
    ds = cfg.output_downsample or grid.default_mask_downsample(stride_l0)
    shape = grid.mask_shape(slide.dimensions, ds)
    _require_grid_fits(slide.path, shape, meta.num_classes, ds, cfg.max_grid_mb)
    # Detect at the finer of the tissue resolution and the mask's, so clipping labels to
    # tissue is not blockier than the mask itself, but never finer than level 0.
    thumb_mpp = max(min(cfg.tissue.mpp, ds * slide_mpp), slide_mpp)
    thumbnail = slide.thumbnail(mpp=thumb_mpp)
    thumb_ds = slide.dimensions[0] / thumbnail.shape[1]
    tissue_thumb = detect_tissue(thumbnail, cfg.tissue, mpp=thumb_ds * slide_mpp)
    origins = grid.patch_origins(slide.dimensions, patch_l0, stride_l0)
    fraction = tissue_fractions(tissue_thumb, thumb_ds, origins[:, 0], origins[:, 1], patch_l0)
    keep = fraction >= max(cfg.min_tissue_fraction, 1e-9)
    return _Plan(
        slide_mpp=slide_mpp,
        patch_l0=patch_l0,
        stride_px=stride_px,
        mask_downsample=ds,
        mask_shape=shape,
        origins=origins[keep],
        tissue=grid.resample_nearest(tissue_thumb, thumb_ds, shape, ds),
    )


def _infer(
    slide: Slide,
    model: torch.nn.Module,
    meta: InferenceCheckpoint,
    device: torch.device,
    cfg: SegmentConfig,
    plan: _Plan,
    prefix: Path,
    quiet: bool,
    state: ResumeState,
    fingerprint: str,
) -> tuple[np.ndarray, list[str]]:
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
    elif first < len(plan.origins) and cfg.mode == "dense":
        _run_dense(slide, model, meta, device, cfg, plan, stitcher, quiet, first)
    elif first < len(plan.origins):
        _run_patches(slide, model, meta, device, cfg, plan, stitcher, quiet, first)
    labels = stitcher.finish()
    writer.flush()
    sink.commit()  # an interrupted export resumes without inference
    return labels, warns


def _run_patches(
    slide: Slide,
    model: torch.nn.Module,
    meta: InferenceCheckpoint,
    device: torch.device,
    cfg: SegmentConfig,
    plan: _Plan,
    stitcher: ProbabilityStitcher,
    quiet: bool,
    first: int = 0,
) -> None:
    """Reference mode: every patch read and classified on its own.

    A resumed run starts at the batch holding patch ``first``, so its batches hold the
    same patches as an uninterrupted run's (same arithmetic, same bytes).
    """
    start = first // cfg.batch_size * cfg.batch_size
    origins = plan.origins[start:]
    dataset = SlidePatchDataset(slide.path, origins, meta.patch_size, meta.mpp, cfg.slide_mpp)
    loader = make_loader(dataset, cfg.batch_size, cfg.num_workers, device)
    with make_progress(quiet) as progress:
        task = progress.add_task(slide.path.name, total=len(plan.origins), completed=start)
        for indices, probs in predict_batches(model, loader, meta.input_pipeline(), device):
            _require_finite(probs, slide.path)
            stitcher.add(origins[indices], probs)
            progress.advance(task, len(indices))
    dataset.close()


def _run_dense(
    slide: Slide,
    model: torch.nn.Module,
    meta: InferenceCheckpoint,
    device: torch.device,
    cfg: SegmentConfig,
    plan: _Plan,
    stitcher: ProbabilityStitcher,
    quiet: bool,
    first: int = 0,
) -> None:
    """Dense mode: blocks of n x n patches through the fully convolutional classifier.

    The same patches as in patch mode (``plan.origins``) reach the stitcher, in the same
    row-major order: a band of ``n`` patch rows is handed over once all its blocks are done.
    A resumed run starts at the band holding patch ``first``.
    """
    patch_px = meta.patch_size
    dense = build_dense_classifier(model, meta, plan.stride_px)
    scale = plan.patch_l0 / patch_px
    cells = grid_cells(plan.origins, plan.stride_px * scale)
    layout = BlockLayout.fit(
        cfg.tile_px, patch_px, plan.stride_px, cfg.margin_px, scale, int(cells.max()) + 1
    )
    n = layout.patches_per_side
    start = int(np.searchsorted(cells[:, 0] // n, cells[first, 0] // n))
    origins, cells = plan.origins[start:], cells[start:]
    blocks, patches_in_block = layout.blocks_with_patches(cells)
    band_of_patch = cells[:, 0] // n  # non-decreasing: origins are row-major
    dataset = block_dataset(slide.path, layout, blocks, meta.mpp, cfg.slide_mpp)
    loader = make_loader(dataset, 1, cfg.num_workers, device)
    band_probs: dict[int, np.ndarray] = {}  # block column -> (n, n, C) of the current band

    def hand_over(band: int) -> None:
        lo, hi = np.searchsorted(band_of_patch, [band, band + 1])
        rows, cols = cells[lo:hi, 0] - band * n, cells[lo:hi, 1]
        pairs = zip(rows.tolist(), cols.tolist(), strict=True)
        probs = np.stack([band_probs[c // n][r, c % n] for r, c in pairs])
        stitcher.add(origins[lo:hi], probs)
        band_probs.clear()

    with make_progress(quiet) as progress:
        task = progress.add_task(slide.path.name, total=len(plan.origins), completed=start)
        band = int(blocks[0, 0])
        for indices, probs in predict_batches(
            dense, loader, meta.input_pipeline(), device, cfg.margin_px
        ):
            _require_finite(probs, slide.path)
            for index, grid_probs in zip(indices.tolist(), probs, strict=True):
                block_row, block_col = blocks[index].tolist()
                if block_row != band:
                    hand_over(band)
                    band = block_row
                band_probs[block_col] = grid_probs
                progress.advance(task, int(patches_in_block[index]))
        hand_over(band)
    dataset.close()


def _export(
    slide: Slide,
    meta: InferenceCheckpoint,
    cfg: SegmentConfig,
    plan: _Plan,
    labels: np.ndarray,
    prefix: Path,
    warns: list[str],
) -> dict[str, Any]:
    class_map = meta.class_map
    stem, ds, mpp = prefix.name, plan.mask_downsample, plan.slide_mpp
    out = {k: f"{stem}.{k}" for k in ("mask.ome.tif", "geojson", "probs.zarr", "overlay.png")}
    write_label_ome_tiff(prefix.parent / out["mask.ome.tif"], labels, mpp * ds, class_map.names)
    regions = label_regions(
        labels,
        ds,
        class_map,
        min_area_px=cfg.min_region_area_um2 / mpp**2,
        include_normal=cfg.include_normal,
        slide_size=slide.dimensions,
    )
    write_geojson(prefix.parent / out["geojson"], regions, class_map)
    if cfg.write_xml:
        out["xml"] = f"{stem}.xml"
        write_imagescope_xml(prefix.parent / out["xml"], regions, class_map, mpp)
    thumbnail = slide.thumbnail(max_size=min(OVERLAY_MAX_SIDE, max(slide.dimensions)))
    overlay = blend_labels(thumbnail, labels, class_map, include_normal=cfg.include_normal)
    write_overlay_png(prefix.parent / out["overlay.png"], overlay)
    # Areas count only the part of each cell inside the slide (the mask's last row and
    # column stick out), so they never exceed the slide, however coarse the mask.
    px_mm2 = mpp**2 / 1e6
    n = len(class_map)
    counts = grid.label_areas_l0(labels, n, ds, slide.dimensions)
    # normal = tissue, not glass
    counts[0] = grid.label_areas_l0(labels, n, ds, slide.dimensions, where=plan.tissue)[0]
    tissue_px = grid.label_areas_l0(plan.tissue.astype(np.uint8), 2, ds, slide.dimensions)[1]
    return {
        "slide": str(slide.path.resolve()),
        "slide_dimensions": list(slide.dimensions),
        "mpp": mpp,
        "mask_downsample": ds,
        "mask_mpp": mpp * ds,
        "mask": out["mask.ome.tif"],
        "mask_shape": list(labels.shape),
        "outputs": out,
        "class_names": list(class_map.names),
        "area_mm2": {
            name: round(float(c) * px_mm2, 6)
            for name, c in zip(class_map.names, counts, strict=True)
        },
        "tissue_mm2": round(float(tissue_px) * px_mm2, 6),
        "n_regions": len(regions),
        "model": {
            "arch": meta.arch,
            "mpp": meta.mpp,
            "patch_size": meta.patch_size,
            "stride_px": plan.stride_px,
            "stain": meta.stain_method,
            "weights_sha256": meta.weights_sha256,
            "provenance": meta.provenance,
        },
        "warnings": warns,
    }


def _require_grid_fits(
    slide: Path, shape: tuple[int, int], n_classes: int, ds: int, limit_mb: float
) -> None:
    """Refuse, before any reading, an output grid whose working memory exceeds the limit."""
    need_mb = grid.grid_memory_bytes(shape, n_classes) / 2**20
    if need_mb > limit_mb:
        raise ConfigError(
            f"{slide}: the output grid of {shape[1]} x {shape[0]} cells ({ds} level-0 px per "
            f"cell) needs about {need_mb:.3g} MB, over the {limit_mb:.3g} MB limit; raise "
            "`output_downsample`, or `max_grid_mb` if the memory is there"
        )


def _require_finite(probs: np.ndarray, slide: Path) -> None:
    """Refuse NaN/inf probabilities: they would become an all-normal mask that looks valid."""
    if not np.isfinite(probs).all():
        raise NonFiniteOutputError(
            f"{slide}: the model's outputs are not finite (NaN/inf); its weights are broken: "
            "retrain, or use an earlier model.pt"
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
