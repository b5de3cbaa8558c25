"""Run under ``torchrun --nproc_per_node 2``: train, then record each rank's parameters.

Used by tests/test_train_ddp.py; not collected by pytest itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from pathda.train import TrainConfig
from pathda.train.distributed import init_distributed, shutdown_distributed
from pathda.train.loop import _Run


def main(store: str, out: str) -> None:
    cfg = TrainConfig(
        store=Path(store),
        method="ldann",
        arch="resnet10t",
        epochs=1,
        steps_per_epoch=3,
        batch_size=4,
        num_workers=0,
        lr=0.05,
    )
    ctx = init_distributed("cpu")
    run = _Run(cfg, Path(out), ctx, quiet=True)
    run.run(resume=False)
    params = torch.cat([p.detach().flatten() for p in run.model.backbone.parameters()])
    record = {
        "rank": ctx.rank,
        "world": ctx.world_size,
        "sum": float(params.double().sum()),
        "first": params[:8].tolist(),
    }
    Path(out, f"rank{ctx.rank}.json").write_text(json.dumps(record))
    shutdown_distributed(ctx)


if __name__ == "__main__":
    main(*sys.argv[1:3])
