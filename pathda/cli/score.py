"""``pathda score``: BACH Part B score, accuracy and Dice of predictions against the truth."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.console import Console

from pathda.cli._app import QuietOption, app, class_alias_advice


@app.command()
def score(
    pred: list[Path] = typer.Option(
        ...,
        "--pred",
        help="Prediction: pathda segment output folder(s), or label masks (PNG/TIFF, 0..3). "
        "Repeat for several.",
    ),
    truth: list[Path] = typer.Option(
        ...,
        "--truth",
        help="Truth: ImageScope/ASAP XML, GeoJSON, label masks or segment output. "
        "Repeat for several.",
    ),
    downsample: float = typer.Option(
        16.0, "--downsample", help="Scoring grid: level-0 pixels per grid pixel."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for scores.json and confusion.png."
    ),
    slide_dims: str | None = typer.Option(
        None,
        "--slide-dims",
        metavar="WxH",
        help="Level-0 slide size in pixels, for inputs without a segment summary.",
    ),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Score the pairs found; warn about unmatched inputs."
    ),
    class_alias: list[str] | None = typer.Option(
        None, "--class-alias", help="Extra truth label name, NAME=CLASS; repeatable."
    ),
    quiet: bool = QuietOption,
) -> None:
    """Score predicted label masks against annotations or masks (pairs by slide name)."""
    from pathda.evaluation import score_predictions, score_table, write_report
    from pathda.evaluation.grid import parse_size

    with class_alias_advice():
        report = score_predictions(
            pred,
            truth,
            downsample,
            slide_size=parse_size(slide_dims) if slide_dims else None,
            allow_missing=allow_missing,
            class_aliases=class_alias or (),
            quiet=quiet,
        )
    for path in report.unmatched:
        warnings.warn(f"no partner for {path}; not scored", UserWarning, stacklevel=1)
    Console().print(score_table(report))
    if out is not None:
        scores, png = write_report(report, out)
        if not quiet:
            Console(stderr=True).print(f"wrote {scores} and {png}", markup=False)
