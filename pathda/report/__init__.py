"""Experiment report: the paper-style table (method x mean ± std), curves, overlays, confusions.

Reads a results folder in either layout of :mod:`pathda.layout`: the Snakemake
workflow's ``RESULTS/<method>/seed<k>/{train,segment,score}/`` or what
``pathda train --runs N`` writes (``OUT/run_NN/``, one train folder each; scores and
overlays then show as n/a). Writes ``report.md`` and ``report.html`` (same content)
with relative links.
"""

from __future__ import annotations

import html
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from pathda import layout
from pathda.atomic import atomic_path
from pathda.errors import PathdaError


def method_title(name: str) -> str:
    """Display title of a registered method (the folder name for anything else)."""
    from pathda.adapt import METHODS  # torch-heavy: only when a report is built

    return METHODS.get(name).title if name in METHODS else name


def _method_order(name: str) -> tuple[int, str]:
    from pathda.adapt import METHODS

    names = METHODS.names()
    return (names.index(name) if name in names else len(names), name)


@dataclass
class MethodResults:
    """Per-seed numbers of one method (NaN where a stage did not produce them)."""

    method: str
    seeds: list[str] = field(default_factory=list)
    bach: list[float] = field(default_factory=list)
    pixel_acc: list[float] = field(default_factory=list)
    target_tile_acc: list[float] = field(default_factory=list)
    val_tile_acc: list[float] = field(default_factory=list)
    curves: list[Path] = field(default_factory=list)
    confusions: list[Path] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class SeedFolders:
    """Where one trained model's outputs are (``None``: that stage was not run)."""

    method: str
    seed: str
    train: Path
    segment: Path | None = None
    score: Path | None = None


def find_seed_folders(results_dir: Path) -> list[SeedFolders]:
    """Every trained model under ``results_dir``, in any layout of :mod:`pathda.layout`.

    Accepted: the workflow's ``<method>/seed<k>/{train,segment,score}``; the output of
    ``pathda train --runs N`` (``run_NN/`` folders); one train folder; or a folder of
    such train outputs (e.g. ``RESULTS/none``, ``RESULTS/ldann`` from two ``train`` calls).
    The method of a train folder is read from its ``config.json``.
    """
    results_dir = Path(results_dir)
    found: list[SeedFolders] = []
    if not results_dir.is_dir():
        return found
    if layout.run_dirs(results_dir) or layout.is_train_dir(results_dir):
        return _train_output(results_dir)
    for child in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        seeds = layout.seed_dirs(child)
        if seeds:
            found += [
                SeedFolders(
                    child.name,
                    seed.name,
                    seed / layout.TRAIN_DIR,
                    seed / layout.SEGMENT_DIR,
                    seed / layout.SCORE_DIR,
                )
                for seed in seeds
            ]
        else:
            found += _train_output(child)
    return found


def _train_output(out_dir: Path) -> list[SeedFolders]:
    """The runs of one ``pathda train`` output folder (``run_NN`` or the folder itself)."""
    runs = layout.run_dirs(out_dir) or ([out_dir] if layout.is_train_dir(out_dir) else [])
    found = []
    for run in runs:
        config = (_read_json(run / layout.CONFIG_FILE) or {}).get("config") or {}
        method = str(config.get("method") or out_dir.name)
        seed = config.get("seed")
        found.append(SeedFolders(method, f"seed{seed}" if seed is not None else run.name, run))
    return found


def collect_results(results_dir: Path) -> list[MethodResults]:
    """Read every trained model under ``results_dir`` (see :func:`find_seed_folders`)."""
    results_dir = Path(results_dir)
    folders = find_seed_folders(results_dir)
    if not folders:
        raise PathdaError(
            f"{results_dir}: no results to report on; give the workflow's results folder "
            "(<method>/seed<k>/) or a `pathda train` output folder (run_NN/ or one run)"
        )
    by_method: dict[str, MethodResults] = {}
    for f in sorted(folders, key=lambda f: _method_order(f.method)):
        res = by_method.setdefault(f.method, MethodResults(f.method))
        res.seeds.append(f.seed)
        scores = _read_json(f.score / layout.SCORES_FILE) if f.score else None
        mean = (scores or {}).get("mean", {})
        res.bach.append(_num(mean.get("bach")))
        res.pixel_acc.append(_num(mean.get("accuracy")))
        selected = _selected_record(f.train)
        res.target_tile_acc.append(_num(selected.get("target_acc")))
        res.val_tile_acc.append(_num(selected.get("val_acc")))
        if (f.train / layout.CURVES_FILE).is_file():
            res.curves.append(f.train / layout.CURVES_FILE)
        if f.score and (f.score / layout.CONFUSION_FILE).is_file():
            res.confusions.append(f.score / layout.CONFUSION_FILE)
        if f.segment:
            res.overlays.extend(sorted(f.segment.glob("*/*.overlay.png")))
    return list(by_method.values())


def _selected_record(train_dir: Path) -> dict:
    """The metrics record of the epoch that model.pt holds (its ``selected.json``)."""
    selected = _read_json(train_dir / layout.SELECTED_FILE)
    if selected:
        return selected
    path = train_dir / layout.METRICS_FILE
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records[-1] if records else {}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _num(value) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")


def mean_std(values: list[float]) -> str:
    """``"0.681 ± 0.012 (n=3)"`` over the finite values; ``"n/a"`` when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{statistics.fmean(finite):.3f} ± {std:.3f} (n={len(finite)})"


def results_table(results: list[MethodResults]) -> list[list[str]]:
    """Header + one row per method: BACH score, pixel accuracy, tile accuracies."""
    rows = [["Method", "BACH score", "Pixel accuracy", "Target tile acc.", "Val tile acc."]]
    for r in results:
        rows.append(
            [
                method_title(r.method),
                mean_std(r.bach),
                mean_std(r.pixel_acc),
                mean_std(r.target_tile_acc),
                mean_std(r.val_tile_acc),
            ]
        )
    return rows


def build_report(results_dir: str | Path, out_md: str | Path, title: str = "pathda report") -> Path:
    """Write ``out_md`` and its HTML twin from the results folder; returns the markdown path."""
    results_dir, out_md = Path(results_dir), Path(out_md)
    results = collect_results(results_dir)
    table = results_table(results)
    base = out_md.parent.resolve()

    def rel(p: Path) -> str:
        return os.path.relpath(p.resolve(), base)

    md = [
        f"# {title}",
        "",
        f"Results folder: `{results_dir}`",
        "",
        "Mean ± sample std over seeds. BACH score and pixel accuracy are per slide on the test",
        "slides (`pathda score`); tile accuracies are the selected model's (`pathda train`).",
        "",
    ]
    md += ["| " + " | ".join(row) + " |" for row in table[:1]]
    md += ["|" + "---|" * len(table[0])]
    md += ["| " + " | ".join(row) + " |" for row in table[1:]]
    sections = []
    for r in results:
        images = [("curves", p) for p in r.curves[:1]] + [
            ("confusion", p) for p in r.confusions[:1]
        ]
        images += [("overlay", p) for p in r.overlays[:2]]
        if images:
            sections.append((method_title(r.method), images))
    for name, images in sections:
        md += ["", f"## {name}", ""]
        md += [f"![{kind}]({rel(p)})" for kind, p in images]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(md) + "\n")
    with atomic_path(out_md.with_suffix(".html")) as tmp:
        tmp.write_text(_html(title, table, sections, rel))
    return out_md


def _html(title, table, sections, rel) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table[1:]
    )
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:48%;margin:4px}</style>",
        f"<h1>{esc(title)}</h1><table><tr>{head}</tr>{body}</table>",
    ]
    for name, images in sections:
        parts.append(f"<h2>{esc(name)}</h2>")
        parts += [f"<img alt='{esc(kind)}' src='{esc(rel(p))}'>" for kind, p in images]
    return "\n".join(parts) + "\n"
