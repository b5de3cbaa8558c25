"""``pathda score``: BACH Part B score, accuracy and Dice of predictions against the truth."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.console import Console

from pathda.cli._app import ConfigFlags, QuietOption, app, class_alias_advice

FLAGS = ConfigFlags(
    "score",
    "pathda.evaluation.results:ScoreConfig",
    renames={"slide_dims": "slide_size", "class_alias": "class_aliases"},
    convert={"slide_dims": lambda text: parse_size(text)},
)


def parse_size(text: str):
    from pathda.evaluation.grid import parse_size as parse

    return parse(text)


@app.command()
def score(
    ctx: typer.Context,
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
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file whose `score:` section sets defaults."
    ),
    downsample: float | None = typer.Option(
        None,
        "--downsample",
        help="Scoring grid: level-0 pixels per grid pixel (default {default}).",
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
    from pathda.config import build_config, load_yaml
    from pathda.evaluation import ScoreConfig, score_predictions, score_table, write_report

    cli = FLAGS.given(ctx)
    yaml_layer = load_yaml(config, "score") if config else None
    cfg = build_config(ScoreConfig, yaml_layer, cli, source=str(config or "command line"))
    with class_alias_advice():
        report = score_predictions(
            pred,
            truth,
            cfg.downsample,
            slide_size=cfg.slide_size,
            allow_missing=cfg.allow_missing,
            class_aliases=cfg.class_aliases,
            quiet=quiet,
        )
    for path in report.unmatched:
        warnings.warn(f"no partner for {path}; not scored", UserWarning, stacklevel=1)
    Console().print(score_table(report))
    if out is not None:
        scores, png = write_report(report, out)
        if not quiet:
            Console(stderr=True).print(f"wrote {scores} and {png}", markup=False)
