"""``pathda benchmark rule`` / ``pathda benchmark report``: the domain-shift benchmark's steps."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from pathda.cli._app import QuietOption, app

benchmark_app = typer.Typer(
    help="Domain-shift benchmark (configs/shift.yaml): baselines and the report.",
    no_args_is_help=True,
)
app.add_typer(benchmark_app, name="benchmark")


@benchmark_app.command("rule")
def rule(
    slides: Path = typer.Argument(..., help="Folder of test slides (*.tiff) with their *.xml."),
    rule_name: str = typer.Option(..., "--rule", help="all-normal | all-in-situ."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for scores.json."),
    downsample: float = typer.Option(16.0, help="Scoring grid: level-0 pixels per grid pixel."),
    quiet: bool = QuietOption,
) -> None:
    """Score a classifier-free rule on the tissue mask of every test slide."""
    from pathda.benchmark.baselines import score_rule
    from pathda.errors import ConfigError

    tiffs = sorted(slides.glob("*.tiff"))
    if not tiffs:
        raise ConfigError(f"{slides}: no *.tiff slides; give the folder of the test slides")
    truths = [t.with_suffix(".xml") for t in tiffs]
    missing = [str(t) for t in truths if not t.is_file()]
    if missing:
        raise ConfigError(f"{missing[0]} not found; every test slide needs its annotation XML")
    path = score_rule(tiffs, truths, rule_name, out, downsample)
    if not quiet:
        Console(stderr=True).print(f"wrote {path}", markup=False)


@benchmark_app.command("report")
def report(
    results: Path = typer.Argument(..., help="Benchmark output folder (the config's `out`)."),
    config: Path = typer.Option(..., "--config", "-c", help="The benchmark YAML."),
    out: Path = typer.Option(..., "--out", "-o", help="Markdown file; .json and .png beside it."),
    run_info: Path | None = typer.Option(
        None, help="JSON with command, commit, load, elapsed (default RESULTS/run_info.json)."
    ),
    quiet: bool = QuietOption,
) -> None:
    """Tables, paired differences with bootstrap CIs, alignment per layer, and a figure."""
    from pathda.benchmark.report import build
    from pathda.config import load_yaml

    cfg = load_yaml(config)
    info_path = run_info or results / "run_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    payload = build(results, cfg, out, info)
    if not quiet:
        Console().print(payload["headline"], markup=False)
        Console().print(
            f"report: {out} (and {out.with_suffix('.json')}, {out.with_suffix('.png')})"
        )


@benchmark_app.command("paired")
def paired(
    results: Path = typer.Argument(..., help="Workflow results folder: <method>/seed<k>/score/."),
    arm: str = typer.Option("ldann", help="Method folder compared ..."),
    baseline: str = typer.Option("none", help="... against this one."),
    quiet: bool = QuietOption,
) -> None:
    """Paired BACH difference (by seed and test slide) with its bootstrap 95 % CI."""
    from pathda.benchmark.collect import read_arm
    from pathda.benchmark.stats import paired_difference
    from pathda.errors import ConfigError

    a, b = read_arm(results / arm), read_arm(results / baseline)
    if not a.seeds or not b.seeds:
        raise ConfigError(
            f"{results}: no scored runs for {arm if not a.seeds else baseline}; "
            "run the workflow first (it writes <method>/seed<k>/score/scores.json)"
        )
    diff = paired_difference(a.by_pair(), b.by_pair())
    console = Console(soft_wrap=True)
    console.print(
        f"BACH {arm} - {baseline}: {diff.mean:+.3f}  95 % CI [{diff.ci_low:+.3f}, "
        f"{diff.ci_high:+.3f}]  ({diff.n_seeds} seeds x {diff.n_slides} test slides, paired)",
        markup=False,
    )
    if diff.excludes_zero:
        verdict = (
            f"the CI excludes 0: at this size {arm} is {'better' if diff.mean > 0 else 'worse'}."
        )
    else:
        verdict = (
            "the CI includes 0: at this size the difference cannot be told from noise. "
            "See docs/benchmarks/shift.md (the domain-shift benchmark, `make shift`) for the "
            "comparison with enough seeds and slides."
        )
    if not quiet:
        console.print(verdict, markup=False)
