"""``pathda stain fit`` / ``pathda stain apply``: fit a stain reference, normalise image files."""

from __future__ import annotations

from pathlib import Path

import typer

from pathda.cli._app import QuietOption, app

stain_app = typer.Typer(
    help="Stain normalisation: fit a reference, apply it to images.", no_args_is_help=True
)
app.add_typer(stain_app, name="stain")


@stain_app.command("fit")
def fit(
    reference: list[Path] = typer.Argument(
        ..., help="Reference RGB image(s), PNG/JPEG/TIFF; several are pooled."
    ),
    method: str = typer.Option(
        "macenko",
        "--method",
        "-m",
        help="macenko, reinhard, vahadane (batched torch) or staintools-<same> (reference).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Parameters JSON to write."),
    quiet: bool = QuietOption,
) -> None:
    """Fit stain parameters on a reference image and save them as JSON."""
    from pathda.stain import fit_normaliser, save_params

    normaliser = fit_normaliser(method, reference)
    save_params(normaliser, out, reference[0] if len(reference) == 1 else None)
    if not quiet:
        typer.echo(f"{method} stain parameters written to {out}")


@stain_app.command("apply")
def apply(
    images: list[Path] = typer.Argument(..., help="Images to normalise, PNG/JPEG/TIFF."),
    params: Path = typer.Option(..., "--params", "-p", help="Parameters JSON from 'stain fit'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (same file names)."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1, help="Images per batch."),
    device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cpu or cuda."),
    quiet: bool = QuietOption,
) -> None:
    """Normalise images, each with its own whole-image stain estimate, into OUT.

    Images larger than 1024 px are estimated once and processed in 1024-px blocks.
    """
    from pathda.stain import load_params, normalise_images

    normaliser = load_params(params)
    written = normalise_images(images, normaliser, out, batch_size, device, quiet)
    if not quiet:
        typer.echo(
            f"{len(written)} image(s) written to {out}; {normaliser.fallback_count} left "
            "unchanged (background or a single stain)"
        )
