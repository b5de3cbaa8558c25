"""``pathda synth``: write synthetic H&E slides with annotations, masks and domain shift."""

from __future__ import annotations

from pathlib import Path

import typer

from pathda.cli._app import DeprecatedMppOption, QuietOption, app, renamed_flag, slide_mpp_option
from pathda.errors import ConfigError


def parse_size(text: str) -> tuple[int, int]:
    """'2048' -> (2048, 2048); '2048x1536' -> (2048, 1536) (width x height, pixels)."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise ConfigError(f"--size {text!r}: expected N or WIDTHxHEIGHT in pixels, e.g. 2048x1536")
    return (values[0], values[-1])


def parse_domains(values: list[str]) -> list[str]:
    """Repeated and/or comma-separated ``--domain`` values, in order, without duplicates."""
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return list(dict.fromkeys(names)) or ["lab-a"]


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Output folder (created)."),
    n: int = typer.Option(2, "--n", help="Slides per domain."),
    domain: list[str] = typer.Option(
        ["lab-a"], "--domain", help="Domain name(s); repeat or comma-separate for several."
    ),
    size: str = typer.Option("2048", "--size", help="Level-0 size in pixels: N or WxH."),
    slide_mpp: float | None = slide_mpp_option(
        help="Level-0 resolution of the written slides in µm/px (default: BACH's 0.467)."
    ),
    mpp: float | None = DeprecatedMppOption,
    seed: int = typer.Option(0, "--seed", help="Seed of the first slide (slide i: seed + i)."),
    tile_size: int = typer.Option(512, "--tile-size", help="TIFF tile size in pixels."),
    no_annotation: bool = typer.Option(False, "--no-annotation", help="Skip the XML."),
    montage: Path | None = typer.Option(None, "--montage", help="Also write a montage PNG."),
    prefix: str | None = typer.Option(
        None, "--prefix", help="File-name prefix (default: the domain name): PREFIX_00.tiff, ..."
    ),
    quiet: bool = QuietOption,
) -> None:
    """Write synthetic H&E slides (.tiff), BACH XML, label masks and JSON sidecars."""
    from pathda.synth import make_montage, synthesise_slides

    slide_mpp = renamed_flag(mpp, slide_mpp, "--mpp", "--slide-mpp")
    resolution = {} if slide_mpp is None else {"mpp": slide_mpp}
    width_height = parse_size(size)
    slides = []
    names = parse_domains(domain)
    for name in names:
        name_prefix = prefix if prefix and len(names) == 1 else (prefix and f"{prefix}-{name}")
        slides += synthesise_slides(
            out_dir,
            n=n,
            domain=name,
            size=width_height,
            seed=seed,
            **resolution,
            tile_size=tile_size,
            annotate=not no_annotation,
            prefix=name_prefix or None,
            quiet=quiet,
        )
    if montage is not None:
        make_montage(slides, montage)
    if not quiet:
        for s in slides:
            typer.echo(str(s.image))
        if montage is not None:
            typer.echo(str(montage))
