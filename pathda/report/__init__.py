"""Experiment report: the paper-style table (method x mean ± std), curves, overlays, confusions.

Reads a results folder laid out as the Snakemake workflow writes it::

    RESULTS/<method>/seed<k>/train/     model.pt, metrics.jsonl, curves.png, config.json
    RESULTS/<method>/seed<k>/segment/   <stem>/<stem>.overlay.png, ... (pathda segment)
    RESULTS/<method>/seed<k>/score/     scores.json, confusion.png   (pathda score)

and writes ``report.md`` and ``report.html`` (same content) with relative links.
"""

from __future__ import annotations

import html
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from pathda.atomic import atomic_path
from pathda.errors import PathdaError

METHOD_ORDER = ("none", "dann", "ldann", "lwass")
METHOD_TITLES = {"none": "No adaptation", "dann": "DANN", "ldann": "L-DANN", "lwass": "L-WASS"}


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


def collect_results(results_dir: Path) -> list[MethodResults]:
    """Read every ``<method>/seed<k>`` folder under ``results_dir``."""
    results_dir = Path(results_dir)
    methods = (
        sorted(
            (p for p in results_dir.iterdir() if p.is_dir() and any(p.glob("seed*"))),
            key=lambda p: (METHOD_ORDER.index(p.name) if p.name in METHOD_ORDER else 99, p.name),
        )
        if results_dir.is_dir()
        else []
    )
    if not methods:
        raise PathdaError(f"{results_dir}: no <method>/seed<k> result folders to report on")
    collected = []
    for method_dir in methods:
        res = MethodResults(method_dir.name)
        for seed_dir in sorted(method_dir.glob("seed*")):
            res.seeds.append(seed_dir.name)
            scores = _read_json(seed_dir / "score" / "scores.json")
            mean = (scores or {}).get("mean", {})
            res.bach.append(_num(mean.get("bach")))
            res.pixel_acc.append(_num(mean.get("accuracy")))
            selected = _selected_record(seed_dir / "train")
            res.target_tile_acc.append(_num(selected.get("target_acc")))
            res.val_tile_acc.append(_num(selected.get("val_acc")))
            for name, bucket in (
                ("train/curves.png", res.curves),
                ("score/confusion.png", res.confusions),
            ):
                if (seed_dir / name).is_file():
                    bucket.append(seed_dir / name)
            res.overlays.extend(sorted((seed_dir / "segment").glob("*/*.overlay.png")))
        collected.append(res)
    return collected


def _selected_record(train_dir: Path) -> dict:
    """The metrics record of the epoch that model.pt holds (recorded in its provenance)."""
    config = _read_json(train_dir / "selected.json")
    if config:
        return config
    path = train_dir / "metrics.jsonl"
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
                METHOD_TITLES.get(r.method, r.method),
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
            sections.append((METHOD_TITLES.get(r.method, r.method), images))
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
