"""`pathda report`: the paper-style results table with curves, overlays and confusions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pathda.cli._app import QuietOption, app


@app.command()
def report(
    results: Path = typer.Argument(
        ..., help="Results folder: <method>/seed<k>/{train,segment,score}."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Markdown file (default RESULTS/report.md)."
    ),
    title: str = typer.Option("pathda report", help="Report title."),
    quiet: bool = QuietOption,
) -> None:
    """Write report.md and report.html and print the method x mean ± std table."""
    from pathda.report import build_report, collect_results, results_table

    path = build_report(results, out or results / "report.md", title=title)
    if quiet:
        return
    rows = results_table(collect_results(results))
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(col)
    for row in rows[1:]:
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"report: {path} (and {path.with_suffix('.html')})")
