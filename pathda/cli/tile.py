"""``pathda tile``: cut slides into patches stored in a resumable zarr tile store."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import typer

from pathda.cli._app import (
    ConfigFlags,
    QuietOption,
    WarningPrinter,
    app,
    class_alias_advice,
    slide_mpp_option,
)
from pathda.errors import AllRegionsSkippedWarning

FLAGS = ConfigFlags(
    "tile",
    "pathda.tiling.config:TileConfig",
    renames={
        "class_alias": "class_aliases",
        "tissue_method": "tissue.method",
        "tissue_mpp": "tissue.mpp",
    },
)


@app.command()
def tile(
    ctx: typer.Context,
    inputs: list[str] = typer.Argument(
        None,
        help="Slide files, globs (quote them) or CSV manifests (slide,annotation,domain,split).",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Tile store folder to write, e.g. tiles.zarr."
    ),
    manifest: list[Path] | None = typer.Option(
        None, "--manifest", help="CSV manifest: slide,annotation,domain,split; repeatable."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file whose `tile:` section sets defaults."
    ),
    mpp: float | None = typer.Option(None, help="Patch resolution, µm/px (default {default})."),
    patch_size: int | None = typer.Option(
        None, help="Patch side, px at --mpp (default {default})."
    ),
    stride: int | None = typer.Option(
        None, help="Grid step, px at --mpp (default: patch size; smaller = overlap)."
    ),
    min_tissue: float | None = typer.Option(
        None,
        help="Keep patches whose tissue share of the area is at least this (0-1, default "
        "{default}).",
    ),
    label_rule: str | None = typer.Option(
        None, help="centre (class at the patch centre) | majority (default {default})."
    ),
    label_min_fraction: float | None = typer.Option(
        None, help="Majority rule: least share of the winning class (0-1, default {default})."
    ),
    tissue_method: str | None = typer.Option(
        None, help="otsu-saturation | otsu-od (default {default})."
    ),
    tissue_mpp: float | None = typer.Option(
        None, help="Resolution of the tissue-mask thumbnail, µm/px (default {default})."
    ),
    slide_mpp: float | None = slide_mpp_option(),
    annotation_dir: Path | None = typer.Option(
        None, help="Folder of <slide stem>.xml|.geojson annotations (default: beside each slide)."
    ),
    domain: str | None = typer.Option(
        None, help="Domain of path inputs (default: source if annotated, else target)."
    ),
    split: str | None = typer.Option(None, help="Split of path inputs (default {default})."),
    class_alias: list[str] | None = typer.Option(
        None, "--class-alias", help="Extra label name, NAME=CLASS; repeatable."
    ),
    workers: int | None = typer.Option(None, help="Parallel readers (default: one per core)."),
    parallel: str | None = typer.Option(None, help="thread | process (default {default})."),
    append: bool = typer.Option(False, "--append", help="Add slides to an existing store."),
    stain: str | None = typer.Option(
        None, help="Stain normalisation: macenko | reinhard | vahadane."
    ),
    stain_reference: Path | None = typer.Option(
        None, help="Reference image the stain normaliser is fitted to."
    ),
    preview: bool = typer.Option(
        False, "--preview", help="PNG per slide: tiles coloured by label."
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Refuse an annotation file whose regions were all skipped (default: warn and "
        "tile its slide as all normal).",
    ),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="On an existing store, check every slide's checksums (reads it all) and rebuild "
        "the damaged ones (default: check files, sizes and counts).",
    ),
    quiet: bool = QuietOption,
) -> None:
    """Tile slides (+ annotations) into a zarr tile store; rerun the same command to resume."""
    from pathda.config import build_config, load_yaml
    from pathda.errors import ConfigError
    from pathda.tiling import TileConfig, tile_slides

    sources = [*(inputs or []), *(str(m) for m in manifest or [])]
    if not sources:
        raise ConfigError("no slides given; pass slide files, globs or --manifest CSV")
    cli = FLAGS.given(ctx)
    yaml_layer = load_yaml(config, "tile") if config else None
    cfg = build_config(TileConfig, yaml_layer, cli, source=str(config or "command line"))
    printer = WarningPrinter()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = printer
        with class_alias_advice():
            store = tile_slides(sources, out, cfg, quiet=quiet)
    if not quiet:
        typer.echo(f"wrote {store}", err=True)
    _summarise(printer)


def _summarise(printer: WarningPrinter) -> None:
    """Repeat what made source data all normal at the end, where it is not scrolled away."""
    empty = printer.of_category(AllRegionsSkippedWarning)
    if empty:
        files = "; ".join(getattr(w, "path", "") or str(w) for w in empty)
        print(
            f"pathda: warning: summary: {len(empty)} annotation file(s) had every region "
            f"skipped, so their slides were tiled as all normal: {files}; check them, or "
            "pass --strict to refuse such files",
            file=sys.stderr,
        )
