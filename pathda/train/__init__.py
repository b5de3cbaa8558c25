"""Training stage: ``train(cfg, out_dir)`` trains one or several seeded runs.

Output layout (names in :mod:`pathda.layout`; ``runs == 1``: the run folder is
``out_dir`` itself)::

    out_dir/
      config.json        resolved TrainConfig + provenance
      model.pt           inference checkpoint of the selected epoch (pathda.checkpoint)
      last.pt            full training state after the last finished epoch (--resume)
      metrics.jsonl      one record per epoch: loss terms per layer, domain accuracy per
                         head, train / validation / target accuracy
      curves.png
      run_00/ ...        with runs > 1, one such folder per seed, plus
      summary.json       mean ± std of the selected models' accuracies
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from pathda import layout
from pathda.atomic import write_json
from pathda.provenance import provenance, to_jsonable
from pathda.train.config import TrainConfig
from pathda.train.loop import TrainResult, train_one_run

__all__ = ["TrainConfig", "TrainResult", "summarise_runs", "train"]


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    runs: int = 1,
    resume: bool = False,
    quiet: bool = False,
) -> list[TrainResult]:
    """Train ``runs`` models with seeds ``cfg.seed``, ``cfg.seed + 1``, ...

    Args:
        cfg: Resolved training configuration.
        out_dir: Output folder (see module docstring for its layout).
        runs: Number of repeats with different seeds (the paper reports 10).
        resume: Continue each run from its ``last.pt``; finished runs are kept.
        quiet: No progress output.

    Returns:
        One result per run; with ``runs > 1`` a ``summary.json`` is written too.
    """
    out_dir = Path(out_dir)
    results = []
    for i in range(runs):
        run_cfg = dataclasses.replace(cfg, seed=cfg.seed + i)
        run_dir = layout.run_dir(out_dir, i, runs)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / layout.CONFIG_FILE, provenance(run_cfg, mpp=None))
        results.append(train_one_run(run_cfg, run_dir, resume=resume, quiet=quiet))
    if runs > 1:
        write_json(out_dir / layout.SUMMARY_FILE, summarise_runs(cfg, results))
    return results


def summarise_runs(cfg: TrainConfig, results: list[TrainResult]) -> dict[str, Any]:
    """Mean ± sample standard deviation of the selected models' accuracies over runs."""

    def mean_std(values: list[float]) -> dict[str, float]:
        finite = [v for v in values if v == v]  # drop NaN (no such evaluation set)
        if not finite:
            return {"mean": float("nan"), "std": float("nan"), "n": 0}
        std = statistics.stdev(finite) if len(finite) > 1 else 0.0
        return {"mean": statistics.fmean(finite), "std": std, "n": len(finite)}

    return {
        "method": cfg.method,
        "arch": cfg.arch,
        "runs": [r.to_dict() for r in results],
        "val_acc": mean_std([r.val_acc for r in results]),
        "target_acc": mean_std([r.target_acc for r in results]),
        "config": to_jsonable(cfg),
    }
