"""``tile_slides``: slides (+ annotations) -> a resumable zarr tile store.

Order of work: resolve and validate every input, take the store lock, decide what to
do with an existing store, plan every slide to tile (thumbnail, tissue mask, grid,
labels), and only then create or extend the store and stream patches into it, one
slide committed at a time. See ``pathda.tiling.store`` for the store layout.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pathda.errors import ConfigError
from pathda.progress import make_progress
from pathda.provenance import provenance, to_jsonable
from pathda.slide.naming import slide_stem
from pathda.slide.resolution import require_not_upsampled
from pathda.tiling.config import TileConfig
from pathda.tiling.lock import store_lock
from pathda.tiling.manifest import SlideSpec, resolve_inputs
from pathda.tiling.plan import (
    SlidePlan,
    class_map_for,
    load_annotations,
    open_for_tiling,
    plan_slide,
)
from pathda.tiling.session import decide_run
from pathda.tiling.store import SlideRecord
from pathda.tiling.store_writer import StoreWriter
from pathda.tiling.worker import BlockReader, block_jobs, default_workers


def tile_slides(
    inputs: Sequence[str | Path],
    out: str | Path,
    config: TileConfig = TileConfig(),
    *,
    quiet: bool = False,
) -> Path:
    """Tile slides into the zarr store ``out`` (created, resumed or appended to).

    Args:
        inputs: slide files, globs, or CSV manifests (see ``pathda.tiling.manifest``).
        out: store folder, e.g. ``tiles.zarr``.
        config: tiling settings.
        quiet: no progress bars.

    Returns:
        ``out``; open it with ``TileStore(out)``.

    Raises:
        PathdaError: bad input (missing file, unknown class, annotation outside its slide,
            no tissue on any slide, store busy or built with other settings). Nothing that
            looks like a complete store is left behind.
    """
    out = Path(out).absolute()
    specs = resolve_inputs(inputs, config.annotation_dir, config.domain, config.split)
    _validate(specs, config)
    with store_lock(out):
        run = decide_run(out, specs, config.grid_settings(), config.append, config.verify)
        if run.action == "nothing":
            return out
        reopened = None if run.action == "create" else StoreWriter.reopen(out)
        normaliser, stain = _stain(config, reopened)
        todo = [(i, run.rows[i]) for i in run.todo]
        plans = _plan_all(todo, out, config)
        _check_any_tiles(out, plans, run.action)
        records = _records(run.rows, plans, out)
        header = _header(config, run, stain)
        if reopened is None:
            writer = StoreWriter.create(out, header, records)
        else:
            writer = reopened
            kept = writer.attrs["slides"]
            rows = kept + [r.to_dict() for r in records[len(kept) :]]
            for i, _ in todo:  # redone rows take their freshly planned values
                if i not in run.repair:  # rebuilt in place: they keep their committed rows
                    rows[i] = records[i].to_dict()
            writer.update_attrs(**header, slides=rows, complete=False)
        _write_tiles(writer, plans, run.domains, config, normaliser, quiet, run.repair)
        if stain is not None:
            stain["fallback_count"] = sum(r["stain_fallbacks"] for r in writer.attrs["slides"])
        writer.finish(stain=stain)
    return out


def _validate(specs: list[SlideSpec], config: TileConfig) -> None:
    """Open every slide and read every annotation once, failing on the first bad one."""
    class_map = class_map_for(config)
    for spec in specs:
        with open_for_tiling(spec.slide, config.slide_mpp) as slide:
            dims = (int(slide.dimensions[0]), int(slide.dimensions[1]))
            slide_mpp = slide.require_mpp()
        require_not_upsampled(spec.slide, config.mpp, slide_mpp)
        load_annotations(spec, dims, class_map, config.strict)
    if config.stain_reference is not None and not Path(config.stain_reference).is_file():
        raise ConfigError(f"{config.stain_reference}: stain reference image not found")


def _plan_all(todo: list[tuple[int, SlideSpec]], out: Path, config: TileConfig) -> list:
    def plan(item: tuple[int, SlideSpec]) -> tuple[int, SlidePlan]:
        row, spec = item
        stem = f"{row:04d}_{slide_stem(spec.slide)}"
        mask = out.with_name(out.name + ".masks") / f"{stem}_tissue.png"
        preview = out.with_name(out.name + ".previews") / f"{stem}.png" if config.preview else None
        return row, plan_slide(spec, config, mask, preview)

    workers = min(len(todo), config.workers or default_workers()) or 1
    with ThreadPoolExecutor(workers) as pool, warnings.catch_warnings():
        warnings.simplefilter("default")
        plans = list(pool.map(plan, todo))
    for _, p in plans:
        if p.n_tiles == 0:
            why = "no tissue found" if not p.tissue_found else "no patch passes `min_tissue`"
            warnings.warn(f"{p.spec.slide}: {why}; 0 tiles", stacklevel=3)
    return plans


def _check_any_tiles(out: Path, plans: list, action: str) -> None:
    if action == "create" and plans and all(p.n_tiles == 0 for _, p in plans):
        raise ConfigError(
            f"{out}: no tiles: no slide has tissue covering `min_tissue` of a patch; check "
            "the slides, `slide_mpp`, or lower `min_tissue`"
        )


def _records(rows: list[SlideSpec], plans: list, out: Path) -> list[SlideRecord]:
    """Slide table rows: planned values for slides of this run, placeholders otherwise."""
    planned = dict(plans)
    records = []
    for i, spec in enumerate(rows):
        p = planned.get(i)
        records.append(
            SlideRecord(
                path=str(spec.slide),
                annotation=str(spec.annotation) if spec.annotation else None,
                domain=spec.domain,
                split=spec.split,
                mpp=p.mpp if p else 0.0,
                dimensions=p.dimensions if p else (0, 0),
                n_tiles=p.n_tiles if p else 0,
                n_skipped_label=p.n_skipped_label if p else 0,
                tissue_mask=f"{out.name}.masks/{i:04d}_{slide_stem(spec.slide)}_tissue.png",
            )
        )
    return records


def _header(config: TileConfig, run: Any, stain: dict | None) -> dict[str, Any]:
    return {
        "class_names": list(class_map_for(config).names),
        "mpp": config.mpp,
        "patch_size": config.patch_size,
        "stride": config.effective_stride,
        "grid": to_jsonable(config.grid_settings()),
        "domains": run.domains,
        "stain": stain,
        "config": to_jsonable(config),
        "provenance": provenance(config, [s.slide for s in run.rows], config.mpp),
    }


def _stain(config: TileConfig, writer: StoreWriter | None) -> tuple[Any, dict | None]:
    """Fit the stain normaliser once; on resume/append it must match the stored one."""
    if config.stain is None:
        return None, None
    from pathda.stain import fit_normaliser

    normaliser = fit_normaliser(config.stain, config.stain_reference)
    params = to_jsonable(normaliser.to_dict())
    stored = writer.attrs.get("stain") if writer is not None else None
    if stored is not None and stored.get("params") != params:
        raise ConfigError(
            f"{config.stain_reference}: stain normaliser differs from the one the store was "
            "built with; use the same reference image"
        )
    record = {"method": config.stain, "reference": str(config.stain_reference), "params": params}
    return normaliser, {**record, "fallback_count": 0}


def _write_tiles(
    writer: StoreWriter,
    plans: list,
    domains: list[str],
    config: TileConfig,
    normaliser: Any,
    quiet: bool,
    repair: tuple[int, ...] = (),
) -> None:
    """Stream every planned slide's patches into the store, committing slide by slide.

    Rows in ``repair`` are committed slides rebuilt in place (same rows, same tile count).
    """
    jobs = itertools.chain.from_iterable(
        block_jobs(p, config.mpp, config.slide_mpp) for _, p in plans
    )
    total = sum(p.n_tiles for _, p in plans)
    with (
        BlockReader(config.parallel, config.workers, normaliser) as reader,
        make_progress(quiet) as progress,
    ):
        overall = progress.add_task("all slides", total=total)
        results: Iterator = reader.map(jobs)
        for row, plan in plans:
            start = writer.n_rows
            columns = {
                "labels": plan.labels,
                "domain_index": np.full(plan.n_tiles, domains.index(plan.spec.domain)),
                "x": plan.x,
                "y": plan.y,
                "tissue_fraction": plan.tissue_fraction,
            }
            if row in repair:
                committed = writer.slides[row]
                if plan.n_tiles != committed.n_tiles:
                    raise ConfigError(
                        f"{plan.spec.slide}: now gives {plan.n_tiles} tiles, the store holds "
                        f"{committed.n_tiles}; the slide or its annotation changed since it "
                        "was tiled: tile into a new --out"
                    )
                start = committed.tile_start
                writer.begin_rewrite(row, start, columns)
            else:
                writer.begin_slide(row, columns)
            task = progress.add_task(plan.spec.slide.name, total=plan.n_tiles)
            fallbacks = 0
            for _ in range(len(plan.blocks) - 1):
                patches, fell_back = next(results)
                writer.write_encoded(patches)
                fallbacks += fell_back
                progress.advance(task, len(patches))
                progress.advance(overall, len(patches))
            status = "done" if plan.tissue_found else "no-tissue"
            commit = writer.commit_rewrite if row in repair else writer.commit_slide
            commit(
                row,
                status=status,
                tile_start=start,
                n_tiles=plan.n_tiles,
                stain_fallbacks=fallbacks,
            )
            progress.remove_task(task)
