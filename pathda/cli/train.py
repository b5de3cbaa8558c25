"""`pathda train`: SE-ResNet classifier with none / DANN / L-DANN / L-WASS adaptation."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pathda.cli._app import QuietOption, app, optional_value

# `--pretrained` alone means timm's default weights (typer has no optional option values).
optional_value("--pretrained", "default", lambda v: v == "default" or v.startswith("hf-hub:"))


@app.command()
def train(
    store: Path = typer.Argument(..., help="Tile store written by `pathda tile` (zarr folder)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for checkpoints and logs."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file whose `train:` section sets defaults."
    ),
    method: str | None = typer.Option(
        None, help="Adaptation method registered in pathda.adapt (unknown names list them)."
    ),
    arch: str | None = typer.Option(None, help="timm architecture, e.g. seresnet50."),
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
    granularity: str | None = typer.Option(None, help="Default taps: block | stage."),
    epochs: int | None = typer.Option(None, help="Number of epochs (paper: 100)."),
    steps_per_epoch: int | None = typer.Option(None, help="Steps per epoch (0: one source pass)."),
    batch_size: int | None = typer.Option(None, help="Tiles per domain per step."),
    lr: float | None = typer.Option(None, help="SGD learning rate (paper: 1e-3)."),
    layer_weight: float | None = typer.Option(None, help="Weight of each layer's domain loss."),
    grl_schedule: str | None = typer.Option(None, help="constant | ganin."),
    n_critic: int | None = typer.Option(None, help="L-WASS critic steps per generator step."),
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
    workers: int | None = typer.Option(None, "--workers", help="DataLoader worker processes."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda."),
    seed: int | None = typer.Option(None, help="Seed of the first run."),
    runs: int = typer.Option(1, help="Repeats with seeds seed, seed+1, ... (paper: 10)."),
    tensorboard: bool | None = typer.Option(None, "--tensorboard/--no-tensorboard"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
    quiet: bool = QuietOption,
) -> None:
    """Train a patch classifier on a tile store, with optional layer-wise domain adaptation."""
    from pathda.config import build_config, load_yaml
    from pathda.train import TrainConfig
    from pathda.train import train as run_training

    cli = {
        "store": store,
        "method": method,
        "arch": arch,
        "pretrained": pretrained,
        "weights": weights,
        "finetune": finetune,
        "finetune_blocks": finetune_blocks,
        "layer_decay": layer_decay,
        "grad_checkpointing": grad_checkpointing,
        "taps": tuple(tap) if tap else None,
        "granularity": granularity,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "lr": lr,
        "layer_weight": layer_weight,
        "grl_schedule": grl_schedule,
        "n_critic": n_critic,
        "source_domains": tuple(source_domain) if source_domain else None,
        "target_domains": tuple(target_domain) if target_domain else None,
        "stain_params": stain_params,
        "augment": augment,
        "stain_jitter": stain_jitter,
        "num_workers": workers,
        "device": device,
        "seed": seed,
        "tensorboard": tensorboard,
    }
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
