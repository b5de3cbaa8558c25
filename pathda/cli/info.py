"""``pathda info``: format, backend, pyramid and resolution of slides, optional thumbnails."""

from __future__ import annotations

from pathlib import Path

import typer
from PIL import Image
from rich.console import Console
from rich.progress import track
from rich.table import Table

from pathda.atomic import atomic_path
from pathda.cli._app import DeprecatedMppOption, QuietOption, app, renamed_flag, slide_mpp_option
from pathda.errors import PathdaError
from pathda.slide import Slide, available_backends, open_slide
from pathda.slide.naming import slide_stem

# Size of thumbnails of slides whose resolution is unknown (longest side, px).
_THUMBNAIL_MAX_SIZE_NO_MPP = 2048


@app.command()
def info(
    slides: list[Path] = typer.Argument(..., help="Slide files (for DICOM, any .dcm of a slide)."),
    thumbnail: Path | None = typer.Option(
        None,
        "--thumbnail",
        help="Write a thumbnail: an image file (.png) for one slide, or a folder that gets "
        "<stem>_thumb.png per slide.",
    ),
    thumbnail_mpp: float = typer.Option(
        16.0, "--thumbnail-mpp", min=1e-6, help="Thumbnail resolution in µm/px."
    ),
    slide_mpp: float | None = slide_mpp_option(),
    mpp: float | None = DeprecatedMppOption,
    backend: str | None = typer.Option(
        None,
        "--backend",
        help=f"Reader: {', '.join(available_backends())}; default: chosen from the file format.",
    ),
    quiet: bool = QuietOption,
) -> None:
    """Print each slide's format, reader, vendor, levels, µm/px and physical size."""
    mpp = renamed_flag(mpp, slide_mpp, "--mpp", "--slide-mpp")
    stderr = Console(stderr=True)
    targets = _thumbnail_paths(slides, thumbnail) if thumbnail else [None] * len(slides)
    table = _info_table()
    errors: list[PathdaError] = []
    work = list(zip(slides, targets, strict=True))
    show_progress = not quiet and thumbnail is not None and len(slides) > 1
    for path, target in track(
        work, description="slides", console=stderr, transient=True, disable=not show_progress
    ):
        try:
            with open_slide(path, backend=backend, mpp=mpp) as slide:
                if target is not None:
                    note = _write_thumbnail(slide, target, thumbnail_mpp)
                    if note and not quiet:
                        stderr.print(f"pathda: note: {note}", markup=False, soft_wrap=True)
                _add_row(table, slide)
        except PathdaError as err:
            errors.append(err)
    if table.row_count:
        Console().print(table)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise PathdaError(
            f"{len(errors)} of {len(slides)} slides failed: " + " | ".join(map(str, errors))
        )


def _thumbnail_paths(slides: list[Path], target: Path) -> list[Path]:
    """One output file per slide: ``target`` itself for one slide, else inside a folder."""
    # A name without an extension is a folder to create ("--thumbnail newdir/").
    if len(slides) == 1 and not target.is_dir() and target.suffix:
        if target.suffix.lower() not in Image.registered_extensions():
            raise PathdaError(f"{target}: give an image file name such as thumb.png, or a folder")
        return [target]
    if target.exists() and not target.is_dir():
        raise PathdaError(f"{target}: with several slides --thumbnail must be a folder")
    stems = [slide_stem(p) for p in slides]
    if len(set(stems)) != len(stems):
        raise PathdaError(f"{target}: several slides share a file stem; run them separately")
    target.mkdir(parents=True, exist_ok=True)
    return [target / f"{stem}_thumb.png" for stem in stems]


def _write_thumbnail(slide: Slide, target: Path, mpp: float) -> str | None:
    """Write the thumbnail; return a note for the user when it is not at ``mpp``."""
    note = None
    if slide.mpp is None:
        max_size = min(_THUMBNAIL_MAX_SIZE_NO_MPP, max(slide.dimensions))
        image = slide.thumbnail(max_size=max_size)
        note = (
            f"{slide.path}: µm/px unknown, thumbnail fitted to {max_size} px "
            "(pass --slide-mpp to set the resolution)"
        )
    else:
        image = slide.thumbnail(mpp=mpp)
    image_format = Image.registered_extensions()[target.suffix.lower()]
    with atomic_path(target) as tmp:
        Image.fromarray(image).save(tmp, format=image_format)
    return note


def _info_table() -> Table:
    table = Table(title="slides")
    for name in ("slide", "format", "backend", "vendor", "levels: WxH px (downsample)"):
        table.add_column(name)
    table.add_column("µm/px", justify="right")
    table.add_column("size", justify="right")
    return table


def _add_row(table: Table, slide: Slide) -> None:
    levels = "\n".join(
        f"{i}: {w}x{h} ({ds:.4g})"
        for i, ((w, h), ds) in enumerate(
            zip(slide.level_dimensions, slide.level_downsamples, strict=True)
        )
    )
    if slide.mpp is None:
        mpp_text, size_text = "unknown", "unknown"
    else:
        mpp_x, mpp_y = slide.mpp
        mpp_text = f"{mpp_x:.4f}" if mpp_x == mpp_y else f"{mpp_x:.4f} x {mpp_y:.4f}"
        width, height = slide.dimensions
        size_text = f"{format_length(width * mpp_x)} x {format_length(height * mpp_y)}"
    table.add_row(
        slide.path.name,
        slide.format,
        slide.backend,
        slide.vendor or "-",
        levels,
        mpp_text,
        size_text,
    )


def format_length(micrometres: float) -> str:
    """A length for humans: µm below 1 mm, mm above.

    Examples:
        >>> format_length(7.984), format_length(25000.0)
        ('7.98 µm', '25.00 mm')
    """
    if micrometres < 1000:
        return f"{micrometres:.3g} µm"
    return f"{micrometres / 1000:.2f} mm"
