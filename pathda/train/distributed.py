"""Multi-process training under ``torchrun`` (DDP semantics, any step structure).

The adaptation methods run several forward/backward passes per step (critic
updates, then the generator update), which does not fit DDP's single
``forward``/``backward`` wrapping. Instead each rank computes its gradients
locally and ``AllReduceOptimizer`` averages them across ranks right before every
optimiser step: the update is the same as DDP's, whatever the step looks like.
Buffers (BatchNorm statistics) are broadcast from rank 0 before evaluation and
checkpointing so every rank holds the same model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistContext:
    """Rank information; ``world_size == 1`` means a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not torch_dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        torch_dist.init_process_group(backend=backend)
    return DistContext(
        rank=torch_dist.get_rank(),
        world_size=torch_dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


class AllReduceOptimizer:
    """Wraps an optimiser: averages parameter gradients across ranks before ``step``."""

    def __init__(self, optimizer: torch.optim.Optimizer, ctx: DistContext) -> None:
        self.optimizer = optimizer
        self.ctx = ctx

    def step(self, closure=None):
        if self.ctx.enabled:
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        torch_dist.all_reduce(p.grad, op=torch_dist.ReduceOp.AVG)
        return self.optimizer.step(closure)

    def __getattr__(self, name: str):
        return getattr(self.optimizer, name)


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Make every rank's buffers (e.g. BatchNorm running statistics) equal to rank 0's."""
    if not ctx.enabled:
        return
    for buf in module.buffers():
        torch_dist.broadcast(buf, src=0)


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor of counters over ranks (identity in a single process)."""
    if ctx.enabled:
        torch_dist.all_reduce(values, op=torch_dist.ReduceOp.SUM)
    return values
