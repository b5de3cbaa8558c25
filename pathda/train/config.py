"""Training configuration (defaults follow the paper, section 3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pathda.adapt import METHODS  # importing pathda.adapt registers every method
from pathda.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved in every checkpoint.

    Paper defaults: SGD lr 1e-3, momentum 0.9, weight decay 1e-4 for the network and
    every domain head / critic, 100 epochs, constant GRL coefficient 1 without
    annealing, model selection on the best validation accuracy within the last 30 %
    of epochs.
    """

    # data
    store: Path = Path("tiles.zarr")
    source_domains: tuple[str, ...] = ()  # empty: every domain holding labelled training tiles
    target_domains: tuple[str, ...] = ()  # empty: every other domain in the store
    train_split: str = "train"
    val_split: str = "val"
    val_fraction: float = 0.2  # of labelled source slides, when the store has no val split
    # model
    arch: str = "seresnet50"
    # Initial weights: None (random), "default" (timm's default pretrained tag of `arch`) or
    # "hf-hub:ORG/NAME" (a hub model; its config.json names the architecture, replacing `arch`).
    # Fetched by timm/huggingface_hub into the Hugging Face cache (HF_HUB_OFFLINE=1: cache only).
    pretrained: str | None = None
    weights: Path | None = None  # local timm/torch weights file; nothing is downloaded
    # fine-tuning regime: "full" (all parameters), "partial" (the last `finetune_blocks`
    # blocks and everything after them), "linear" (classifier only: a linear probe)
    finetune: Literal["full", "partial", "linear"] = "full"
    finetune_blocks: int = 0
    layer_decay: float = 1.0  # layer-wise lr decay per block (ViT recipe: 0.65-0.75); 1: none
    grad_checkpointing: bool = False  # recompute activations in backward (big ViTs)
    # adaptation
    method: str = "none"  # a name in pathda.adapt.METHODS
    taps: tuple[str, ...] = ()  # dotted module names; empty: the method's default tap points
    granularity: Literal["block", "stage"] = "block"
    layer_weight: float = 1.0
    grl_schedule: Literal["constant", "ganin"] = "constant"
    grl_coefficient: float = 1.0  # dann/ldann reversed-gradient scale (grl_constant)
    n_critic: int = 5
    gp_lambda: float = 10.0  # the lwass gradient-penalty weight (its gp_weight setting)
    # optimisation
    epochs: int = 100
    steps_per_epoch: int = 0  # 0: one pass over the labelled source tiles
    batch_size: int = 32  # per domain: each step sees batch_size source + batch_size target tiles
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    select_last_fraction: float = 0.3
    # Model selection on source validation: "val_acc" (tile accuracy, the paper's rule) or
    # "val_bacc" (balanced accuracy: the mean per-class recall, so that a model calling
    # every lesion tile normal does not win when lesions are a few % of the tiles).
    select_metric: Literal["val_acc", "val_bacc"] = "val_acc"
    # Label-free selection (DEV, You et al. 2019) and per-layer alignment are measured on
    # this many source-validation and unlabelled target tiles each epoch; 0 turns it off.
    label_free_tiles: int = 512
    # input pipeline
    augment: bool = True
    # Draw labelled source tiles with weights 1 / (tiles of their class), so that each class
    # is seen equally often (with replacement); the usual remedy when lesions are rare.
    class_balance: bool = False
    # "mild" keeps the domain shift for adaptation to handle; "strong" is the HED + HSV
    # jitter baseline (Tellez et al. 2019, "HED-strong" / "HSV-strong") users try first.
    stain_jitter: Literal["mild", "strong"] = "mild"
    # Stain parameters (`pathda stain fit` JSON) applied to every batch on the fly; for
    # stores tiled without --stain. A store tiled with --stain is already normalised.
    stain_params: Path | None = None
    num_workers: int = 2
    # runtime
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA; ignored on the CPU
    channels_last: bool = True
    tensorboard: bool = False

    def __post_init__(self) -> None:
        METHODS.get(self.method)  # unknown names fail listing the registered ones
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "n_critic": self.n_critic >= 1,
            "select_last_fraction": 0 < self.select_last_fraction <= 1,
            "val_fraction": 0 <= self.val_fraction < 1,
            "steps_per_epoch": self.steps_per_epoch >= 0,
            "layer_decay": 0 < self.layer_decay <= 1,
            "finetune_blocks": (self.finetune_blocks >= 1) == (self.finetune == "partial"),
            "label_free_tiles": self.label_free_tiles >= 0,
            "stain_jitter": self.stain_jitter in ("mild", "strong"),
            "select_metric": self.select_metric in ("val_acc", "val_bacc"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"invalid training option(s): {', '.join(bad)}")
        # YAML `pretrained: true` arrives as the string "True".
        flag = str(self.pretrained).lower()
        if flag in ("true", "yes", "on"):
            object.__setattr__(self, "pretrained", "default")
        elif flag in ("false", "no", "off", "none", ""):
            object.__setattr__(self, "pretrained", None)
        if self.pretrained is not None and self.weights is not None:
            raise ConfigError("pretrained and weights both set; keep one source of initial weights")

    def selection_epochs(self) -> range:
        """Epochs (0-based) eligible for model selection: the last ``select_last_fraction``."""
        first = self.epochs - max(1, round(self.epochs * self.select_last_fraction))
        return range(first, self.epochs)
