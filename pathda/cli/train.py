"""`pathda train`: a timm patch classifier, optionally with a registered adaptation method."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pathda.cli._app import ConfigFlags, QuietOption, app, optional_value

# `--pretrained` alone means timm's default weights (typer has no optional option values).
optional_value("--pretrained", "default", lambda v: v == "default" or v.startswith("hf-hub:"))


FLAGS = ConfigFlags(
    "train",
    "pathda.train.config:TrainConfig",
    renames={
        "tap": "taps",
        "source_domain": "source_domains",
        "target_domain": "target_domains",
        "workers": "num_workers",
    },
)


@app.command()
def train(
    ctx: typer.Context,
    store: Path = typer.Argument(..., help="Tile store written by `pathda tile` (zarr folder)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for checkpoints and logs."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file whose `train:` section sets defaults."
    ),
    method: str | None = typer.Option(
        None,
        help="Adaptation method registered in pathda.adapt, default {default} (unknown names "
        "list the others).",
    ),
    arch: str | None = typer.Option(None, help="timm architecture (default {default})."),
    pretrained: str | None = typer.Option(
        None,
        "--pretrained",
        metavar="[default|hf-hub:ORG/NAME]",
        help="Start from pretrained weights: bare or 'default' = timm's weights for --arch; "
        "'hf-hub:ORG/NAME' = a Hugging Face hub model (its architecture replaces --arch). "
        "Downloaded into the Hugging Face cache; HF_HUB_OFFLINE=1 uses the cache only.",
    ),
    weights: Path | None = typer.Option(None, help="Local weights file (nothing is downloaded)."),
    finetune: str | None = typer.Option(
        None, help="full | partial (last --finetune-blocks blocks) | linear (classifier only)."
    ),
    finetune_blocks: int | None = typer.Option(None, help="Blocks that train with partial."),
    layer_decay: float | None = typer.Option(
        None, help="Layer-wise lr decay per block (ViT fine-tuning: 0.65-0.75; 1 = none)."
    ),
    grad_checkpointing: bool | None = typer.Option(
        None, "--grad-checkpointing/--no-grad-checkpointing", help="Trade compute for memory."
    ),
    tap: list[str] | None = typer.Option(
        None, "--tap", help="Module name (model.named_modules()) to attach a head to; repeatable."
    ),
    granularity: str | None = typer.Option(
        None, help="Default taps: block | stage (default {default})."
    ),
    epochs: int | None = typer.Option(None, help="Number of epochs (default {default})."),
    steps_per_epoch: int | None = typer.Option(None, help="Steps per epoch (0: one source pass)."),
    batch_size: int | None = typer.Option(
        None, help="Tiles per domain per step (default {default})."
    ),
    lr: float | None = typer.Option(None, help="SGD learning rate (default {default})."),
    layer_weight: float | None = typer.Option(None, help="Weight of each layer's domain loss."),
    grl_schedule: str | None = typer.Option(None, help="constant | ganin (default {default})."),
    n_critic: int | None = typer.Option(
        None, help="L-WASS critic steps per generator step (default {default})."
    ),
    source_domain: list[str] | None = typer.Option(None, "--source-domain", help="Repeatable."),
    target_domain: list[str] | None = typer.Option(None, "--target-domain", help="Repeatable."),
    stain_params: Path | None = typer.Option(
        None,
        "--stain-params",
        help="Stain parameters JSON (`pathda stain fit`) applied to batches on the fly.",
    ),
    augment: bool | None = typer.Option(None, "--augment/--no-augment"),
    stain_jitter: str | None = typer.Option(
        None, "--stain-jitter", help="mild | strong (HED + HSV jitter, Tellez et al. 2019)."
    ),
    class_balance: bool | None = typer.Option(
        None,
        "--class-balance/--no-class-balance",
        help="Draw source tiles so that every class is equally frequent (rare lesions).",
    ),
    select_metric: str | None = typer.Option(
        None, help="val_acc | val_bacc (balanced accuracy) for model selection ({default})."
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="DataLoader worker processes (default {default})."
    ),
    device: str | None = typer.Option(None, help="auto | cpu | cuda | cuda:N (default {default})."),
    seed: int | None = typer.Option(None, help="Seed of the first run (default {default})."),
    runs: int = typer.Option(1, help="Repeats with seeds seed, seed+1, ... (paper: 10)."),
    tensorboard: bool | None = typer.Option(None, "--tensorboard/--no-tensorboard"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
    quiet: bool = QuietOption,
) -> None:
    """Train a patch classifier on a tile store, with optional layer-wise domain adaptation."""
    from pathda.config import build_config, load_yaml
    from pathda.train import TrainConfig
    from pathda.train import train as run_training

    cli = FLAGS.given(ctx)
    yaml_layer = load_yaml(config, "train") if config else None
    cfg = build_config(TrainConfig, yaml_layer, cli, source=str(config or "command line"))
    results = run_training(cfg, out, runs=runs, resume=resume, quiet=quiet)
    if quiet:
        return
    table = Table(title=f"pathda train: {cfg.method} on {cfg.arch}")
    for col in ("run", "selected epoch", "val acc", "target acc", "checkpoint"):
        table.add_column(col)
    for i, r in enumerate(results):
        table.add_row(
            str(i),
            str(r.selected_epoch + 1),
            f"{r.val_acc:.3f}",
            f"{r.target_acc:.3f}",
            str(r.checkpoint),
        )
    Console().print(table)
