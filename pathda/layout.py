"""Where results live: the one owner of run, seed, stage folder and file names.

Two layouts hold training runs, and ``pathda report`` reads both:

* ``pathda train OUT --runs N`` (N > 1)::

      OUT/config.json?  OUT/summary.json  OUT/run_00/ OUT/run_01/ ...

  each ``run_NN`` is a train folder (below); with N == 1, OUT itself is the train folder.
* the Snakemake workflow (``pipelines/Snakefile``)::

      RESULTS/<method>/seed<k>/train/     a train folder
      RESULTS/<method>/seed<k>/segment/   <stem>/<stem>.summary.json, ... (pathda segment)
      RESULTS/<method>/seed<k>/score/     scores.json, confusion.png     (pathda score)

A train folder holds ``config.json``, ``model.pt``, ``last.pt``, ``metrics.jsonl``,
``selected.json``, ``model_dev.pt``, ``selected_dev.json`` and ``curves.png``.
"""

from __future__ import annotations

import re
from pathlib import Path

# -- a train folder --------------------------------------------------------------------
CONFIG_FILE = "config.json"  # resolved TrainConfig + provenance
MODEL_FILE = "model.pt"  # inference checkpoint of the selected epoch
STATE_FILE = "last.pt"  # full training state after the last finished epoch
METRICS_FILE = "metrics.jsonl"  # one record per epoch
SELECTED_FILE = "selected.json"  # metrics record of the epoch that model.pt holds
# The label-free rule's choice (lowest DEV risk in the selection window; no target labels).
DEV_MODEL_FILE = "model_dev.pt"
DEV_SELECTED_FILE = "selected_dev.json"
CURVES_FILE = "curves.png"
SUMMARY_FILE = "summary.json"  # mean ± std over runs, beside the run_NN folders

# -- a score folder --------------------------------------------------------------------
SCORES_FILE = "scores.json"
SCORES_FORMAT = "pathda-scores/1"  # its "format" field
CONFUSION_FILE = "confusion.png"

# -- a segment folder: <out>/<stem>/<stem>.summary.json (+ mask, GeoJSON, overlay, ...) --
SEGMENT_FORMAT = "pathda-segment/1"  # the summary's "format" field

# -- stages of one seed in the workflow ------------------------------------------------
TRAIN_DIR = "train"
SEGMENT_DIR = "segment"
SCORE_DIR = "score"

_RUN = re.compile(r"run_(\d+)")
_SEED = re.compile(r"seed(\d+)")


def run_dir(out_dir: Path, index: int, runs: int) -> Path:
    """Train folder of run ``index`` of ``runs`` (``out_dir`` itself when there is one)."""
    return Path(out_dir) if runs == 1 else Path(out_dir) / f"run_{index:02d}"


def seed_dir(results_dir: Path, method: str, seed: int) -> Path:
    """Folder of one (method, seed) pair in the workflow's results."""
    return Path(results_dir) / method / f"seed{seed}"


def run_dirs(out_dir: Path) -> list[Path]:
    """The ``run_NN`` folders of a ``train --runs`` output, in run order."""
    return _numbered(Path(out_dir), _RUN)


def seed_dirs(method_dir: Path) -> list[Path]:
    """The ``seed<k>`` folders of one method in the workflow's results, by seed."""
    return _numbered(Path(method_dir), _SEED)


def is_train_dir(path: Path) -> bool:
    """Whether ``path`` holds a finished or running training run."""
    return (Path(path) / CONFIG_FILE).is_file() and (
        (Path(path) / METRICS_FILE).is_file() or (Path(path) / MODEL_FILE).is_file()
    )


def _numbered(parent: Path, pattern: re.Pattern[str]) -> list[Path]:
    if not parent.is_dir():
        return []
    found = []
    for child in parent.iterdir():
        match = pattern.fullmatch(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]
