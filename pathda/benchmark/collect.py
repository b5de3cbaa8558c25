"""Read the benchmark's score and training files into per-(seed, slide) tables.

Layout (``pipelines/shift.smk``)::

    OUT/runs/<domain>/<arm>/seed<k>/score/scores.json       source-validation selection
    OUT/runs/<domain>/<arm>/seed<k>/score_dev/scores.json   label-free (DEV) selection
    OUT/runs/<domain>/<arm>/seed<k>/train/{metrics.jsonl, selected.json, selected_dev.json}
    OUT/runs/<domain>/oracle/seed<k>/...                    target-supervised bound
    OUT/runs/<domain>/all-normal/score/scores.json          classifier-free rules (no seed)
    OUT/runs/in-domain/seed<k>/score/scores.json            source model on source test slides
    OUT/runs/in-domain-<arm>/seed<k>/score/scores.json      another arm there (in_domain_arms)

Whatever exists is read; a run that has not finished is simply absent (``n`` says how
many seeds each number rests on).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLASSES = ("normal", "benign", "in situ", "invasive")


@dataclass
class SlideRow:
    bach: float
    accuracy: float
    dice: dict[str, float]
    # Fraction of lesion-truth pixels (truth != normal) predicted as each class: shows a
    # collapsed classifier (e.g. everything "in situ") that BACH alone would hide.
    lesion_pred: tuple[float, ...] = ()
    # Mean over the classes present in the truth of the share of their pixels labelled right
    # (balanced pixel accuracy): unlike BACH, it drops when a whole class is never predicted.
    mean_recall: float = math.nan


@dataclass
class ArmRuns:
    """Scores per seed and slide of one arm in one domain (one selection rule)."""

    seeds: dict[int, dict[str, SlideRow]] = field(default_factory=dict)
    training: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # metrics.jsonl
    selected: dict[int, dict[str, Any]] = field(default_factory=dict)  # selected*.json

    def by_pair(self, metric: str = "bach") -> dict[tuple[int, str], float]:
        return {
            (seed, stem): getattr(row, metric)
            for seed, rows in self.seeds.items()
            for stem, row in rows.items()
        }

    def seed_means(self, metric: str = "bach") -> list[float]:
        return [
            _mean([getattr(r, metric) for r in rows.values()])
            for _, rows in sorted(self.seeds.items())
        ]

    def lesion_prediction_mix(self) -> list[float]:
        """Mean over seeds and slides of the lesion-pixel prediction fractions per class."""
        rows = [
            r.lesion_pred for rows in self.seeds.values() for r in rows.values() if r.lesion_pred
        ]
        return [_mean([r[i] for r in rows]) for i in range(len(CLASSES))] if rows else []

    def dice_mean(self, cls: str) -> float:
        per_seed = [
            _mean([r.dice.get(cls, math.nan) for r in rows.values()])
            for rows in self.seeds.values()
        ]
        return _mean(per_seed)


def in_domain_dir(arm: str) -> str:
    """Folder under OUT/runs of an arm's model scored on the source test slides."""
    return "in-domain" if arm == "none" else f"in-domain-{arm}"


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def read_scores(path: Path) -> dict[str, SlideRow] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    rows = {}
    for s in data["slides"]:
        dice = {k: (math.nan if v is None else float(v)) for k, v in s["dice"].items()}
        lesion = [sum(col) for col in zip(*s["confusion"][1:], strict=True)]
        total = sum(lesion)
        rows[s["slide"]] = SlideRow(
            float(s["bach"]),
            math.nan if s["accuracy"] is None else float(s["accuracy"]),
            dice,
            tuple(v / total for v in lesion) if total else (),
            mean_recall(s["confusion"]),
        )
    return rows


def mean_recall(confusion: list[list[int]]) -> float:
    """Mean per-class recall of a (truth rows x prediction columns) confusion matrix, over
    the classes with truth pixels (NaN if there are none)."""
    recalls = [row[i] / sum(row) for i, row in enumerate(confusion) if sum(row)]
    return _mean(recalls)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _seed_dirs(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for d in sorted(folder.glob("seed*")):
        m = re.fullmatch(r"seed(\d+)", d.name)
        if m:
            found.append((int(m.group(1)), d))
    return found


def read_arm(folder: Path, selection: str = "") -> ArmRuns:
    """One arm folder (``seed<k>/`` inside); ``selection`` ``""`` or ``"_dev"``."""
    runs = ArmRuns()
    for seed, d in _seed_dirs(folder):
        rows = read_scores(d / f"score{selection}" / "scores.json")
        if rows is None:
            continue
        runs.seeds[seed] = rows
        runs.training[seed] = _read_jsonl(d / "train" / "metrics.jsonl")
        sel = d / "train" / ("selected_dev.json" if selection else "selected.json")
        if sel.is_file():
            runs.selected[seed] = json.loads(sel.read_text())
    return runs


def read_rule(folder: Path) -> ArmRuns:
    runs = ArmRuns()
    rows = read_scores(folder / "score" / "scores.json")
    if rows is not None:
        runs.seeds[0] = rows
    return runs
