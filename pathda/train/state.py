"""Training state on disk: ``last.pt`` after every epoch (atomic), read by ``--resume``.

After a kill -9 mid-epoch, the folder holds the state at the end of the last
finished epoch and nothing newer, so resuming repeats at most one epoch.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathda import layout
from pathda.atomic import atomic_path
from pathda.errors import PathdaError
from pathda.provenance import to_jsonable

# Options that may differ on resume without changing what the run computes.
_RESUMABLE_CHANGES = {"epochs", "num_workers", "tensorboard", "device"}


def save_state(out_dir: Path, *, epoch: int, model, optimizers, cfg, best: dict, extra=None):
    """Write the full training state after ``epoch`` (0-based) atomically."""
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
        "config": to_jsonable(cfg),
        "best": best,
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),  # noqa: NPY002
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        "extra": extra or {},
    }
    with atomic_path(Path(out_dir) / layout.STATE_FILE) as tmp:
        torch.save(state, tmp)


def load_state(out_dir: Path, cfg) -> dict[str, Any]:
    """Read ``last.pt`` and check that it was made with the same configuration."""
    path = Path(out_dir) / layout.STATE_FILE
    if not path.is_file():
        raise PathdaError(f"{path}: nothing to resume; run without --resume to start training")
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state["config"]
    now = to_jsonable(cfg)
    changed = sorted(
        k
        for k in set(saved) | set(now)
        if saved.get(k) != now.get(k) and k not in _RESUMABLE_CHANGES
    )
    if changed:
        raise PathdaError(
            f"{path}: cannot resume with a different configuration "
            f"(changed: {', '.join(changed)}); use the same options or a new output folder"
        )
    return state


def restore_rng(state: dict[str, Any]) -> None:
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])  # noqa: NPY002 - libraries draw from the global state
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - libraries draw from the global state
    torch.manual_seed(seed)


def config_dict(cfg) -> dict[str, Any]:
    return to_jsonable(dataclasses.asdict(cfg))
