"""``pathda segment``: label whole-slide images with a trained model."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.console import Console

from pathda.cli._app import (
    ConfigFlags,
    DeprecatedMppOption,
    QuietOption,
    app,
    renamed_flag,
    slide_mpp_option,
)

FLAGS = ConfigFlags(
    "segment",
    "pathda.segment.config:SegmentConfig",
    renames={
        "workers": "num_workers",
        "min_area": "min_region_area_um2",
        "xml": "write_xml",
        "tile": "tile_px",
        "margin": "margin_px",
    },
)


@app.command()
def segment(
    ctx: typer.Context,
    slides: list[Path] = typer.Argument(..., help="Slide files (any format pathda can open)."),
    model: Path = typer.Option(..., "--model", "-m", help="Inference checkpoint (.pt)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; one sub-folder per slide."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML whose 'segment' section sets defaults of the options below."
    ),
    stride: int | None = typer.Option(
        None, "--stride", help="Patch step in px at the model's mpp (default: patch size / 2)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Patches per batch (default {default})."
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Slide-reading processes (default {default})."
    ),
    device: str | None = typer.Option(
        None, "--device", help="auto, cpu, cuda or cuda:N (default {default})."
    ),
    slide_mpp: float | None = slide_mpp_option(),
    mpp: float | None = DeprecatedMppOption,
    output_downsample: int | None = typer.Option(
        None,
        "--output-downsample",
        help="Level-0 px per mask pixel (default: a quarter of the stride in level-0 px).",
    ),
    min_area: float | None = typer.Option(
        None,
        "--min-area",
        help="Drop GeoJSON/XML regions smaller than this many µm² (default {default}).",
    ),
    window: str | None = typer.Option(
        None, "--window", help="Overlap blending window: gaussian or uniform (default {default})."
    ),
    xml: bool = typer.Option(False, "--xml", help="Also write ImageScope XML annotations."),
    mode: str | None = typer.Option(
        None,
        "--mode",
        help="patch (each patch on its own) or dense (the classifier run fully "
        "convolutionally over blocks; timm ResNets, stride a multiple of 16); default "
        "{default}.",
    ),
    tile: int | None = typer.Option(
        None, "--tile", help="Dense mode: block side in px at the model's mpp (default {default})."
    ),
    margin: int | None = typer.Option(
        None,
        "--margin",
        help="Dense mode: context around each block in px at the model's mpp (default {default}).",
    ),
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="Model arithmetic: auto (bf16 on CUDA, float32 on the CPU), float32, or bf16 "
        "(also on the CPU: faster where it has AVX-512-BF16/AMX, a few labels differ); "
        "default {default}.",
    ),
    quiet: bool = QuietOption,
) -> None:
    """Segment slides into normal / benign / in situ / invasive (mask, GeoJSON, overlay)."""
    from pathda.checkpoint import load_inference_checkpoint
    from pathda.config import build_config, load_yaml
    from pathda.device import resolve_device
    from pathda.errors import PathdaError
    from pathda.segment import SegmentConfig, SegmentResult, segment_slide
    from pathda.segment.batch import SlideFailure, check_model, segment_slides

    cli = FLAGS.given(ctx)
    cli["slide_mpp"] = renamed_flag(mpp, cli.get("slide_mpp"), "--mpp", "--slide-mpp")
    defaults = load_yaml(config, "segment") if config else {}
    cfg = build_config(SegmentConfig, defaults, cli, source=str(config or "options"))
    loaded = load_inference_checkpoint(model, resolve_device(cfg.device))
    check_model(loaded, cfg)
    console = Console(stderr=True)

    def run(slide: Path) -> SegmentResult:
        caught: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                result = segment_slide(slide, loaded, out, cfg, quiet=quiet)
        finally:  # shown after the slide's progress bar, by the CLI's one printer
            for w in caught:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        if not quiet:
            console.print(
                f"{slide.name}: {result.n_patches} patches in {result.seconds:.1f} s -> "
                f"{result.folder}",
                markup=False,
            )
        return result

    def report(failure: SlideFailure) -> None:
        message = f"pathda: error: {failure.message} (going on with the others)"
        console.print(message, markup=False, soft_wrap=True)

    _, failures = segment_slides(slides, run, cfg, on_failure=report, model_mpp=loaded[1].mpp)
    if failures:
        names = ", ".join(str(f.slide) for f in failures)
        raise PathdaError(
            f"{len(failures)} of {len(slides)} slides failed: {names} (reasons above); "
            f"the others are in {out}; fix and rerun the failed ones"
        )
