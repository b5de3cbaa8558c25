"""Presenting a ``ScoreReport``: a rich table, ``scores.json`` and ``confusion.png``.

(The experiment report across methods and seeds is ``pathda.report``.)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from rich.table import Table

from pathda import layout
from pathda.atomic import atomic_path, write_json
from pathda.evaluation.results import ScoreReport


def score_table(report: ScoreReport) -> Table:
    """One row per slide (BACH score, pixel accuracy, Dice per class), then the mean over slides."""
    config = report.config
    native = [s.downsample is None for s in report.slides]
    title = "BACH Part B scores on "
    if all(native):
        title += "the finer mask's own pixel grid (level-0 size unknown)"
    else:
        title += f"a grid at downsample {config.downsample:g} from level 0"
        if any(native):
            title += " (* the finer mask's own grid: level-0 size unknown)"
    table = Table(title=title)
    table.add_column("slide")
    table.add_column("grid (h x w)", justify="right")
    table.add_column("BACH", justify="right")
    table.add_column("accuracy", justify="right")
    for name in report.class_names:
        table.add_column(f"Dice {name}", justify="right")
    for s in report.slides:
        grid = f"{s.grid_shape[0]} x {s.grid_shape[1]}" + ("*" if s.downsample is None else "")
        table.add_row(s.slide, grid, _fmt(s.bach), _fmt(s.accuracy), *map(_fmt, s.dice))
    table.add_section()
    table.add_row(
        f"mean of {len(report.slides)}",
        "",
        _fmt(report.mean_bach),
        _fmt(report.mean_accuracy),
        *map(_fmt, report.mean_dice),
        style="bold",
    )
    return table


def write_report(report: ScoreReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``scores.json`` and ``confusion.png`` into ``out_dir`` (created), each atomically.

    Returns:
        The two paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores, png = out_dir / layout.SCORES_FILE, out_dir / layout.CONFUSION_FILE
    write_json(scores, report.to_dict())
    figure = confusion_figure(report.confusion, report.class_names)
    with atomic_path(png) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return scores, png


def confusion_figure(confusion: np.ndarray, class_names: tuple[str, ...]) -> Figure:
    """Heat map of the row-normalised confusion matrix, each cell labelled with fraction and count.

    Rows are the truth, so each row shows where that class's pixels went. Built on a bare
    ``Figure`` (Agg canvas) so no display or pyplot state is involved.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    figure = Figure(figsize=(1.6 * len(class_names) + 1.5, 1.4 * len(class_names) + 1))
    ax = figure.add_subplot()
    image = ax.imshow(fractions, vmin=0, vmax=1, cmap="Blues")
    figure.colorbar(image, ax=ax, label="fraction of true pixels")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=30, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    for (row, col), fraction in np.ndenumerate(fractions):
        colour = "white" if fraction > 0.5 else "black"
        label = f"{fraction:.2f}\n{counts[row, col]:,}"
        ax.text(col, row, label, ha="center", va="center", color=colour, fontsize=8)
    ax.set_title("confusion (rows normalised)")
    figure.tight_layout()
    return figure


def _fmt(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"
