"""One training run: build the model, loop over epochs, evaluate, checkpoint, select."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathda import layout
from pathda.adapt import METHODS, build_optimizers
from pathda.annotations import BACH_CLASSES, ClassMap
from pathda.atomic import write_json
from pathda.checkpoint import InferenceCheckpoint, save_inference_checkpoint
from pathda.device import resolve_device
from pathda.errors import ConfigError, TrainingDivergedError
from pathda.evaluation.confusion import balanced_accuracy, pixel_accuracy
from pathda.model_input import InputPipeline, stain_transform
from pathda.models import build_backbone, model_input_config, plan_backbone
from pathda.progress import make_progress
from pathda.provenance import provenance, to_jsonable
from pathda.tiling.store import TileStore
from pathda.train.augment import training_augmentation
from pathda.train.config import TrainConfig
from pathda.train.data import TileDataset, TileSplits, infinite_batches, make_loader, split_tiles
from pathda.train.distributed import (
    AllReduceOptimizer,
    DistContext,
    all_reduce_sum,
    broadcast_buffers,
    init_distributed,
    shutdown_distributed,
)
from pathda.train.history import MetricsLog, plot_curves
from pathda.train.labelfree_eval import alignment_taps, label_free_metrics, sample_indices
from pathda.train.regime import (
    backbone_param_groups,
    enable_grad_checkpointing,
    freeze_backbone,
    trainable_taps,
)
from pathda.train.state import load_state, restore_rng, save_state, seed_everything


@dataclass
class TrainResult:
    """What a finished run produced (``model.pt`` is the selected, exported model)."""

    out_dir: Path
    checkpoint: Path
    selected_epoch: int
    val_acc: float
    target_acc: float
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in to_jsonable(self.__dict__).items() if k != "history"}


def train_one_run(
    cfg: TrainConfig, out_dir: Path, *, resume: bool = False, quiet: bool = False
) -> TrainResult:
    """Train one model as ``cfg`` says, writing everything under ``out_dir``.

    Writes ``last.pt`` (full state, every epoch, atomically), ``metrics.jsonl``,
    ``curves.png``, ``config.json`` via the caller, and ``model.pt``: the inference
    checkpoint of the selected epoch (best validation accuracy within the last
    ``select_last_fraction`` of epochs; the last epoch if there is no validation set).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device_kind = "cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    ctx = init_distributed(device_kind)
    try:
        return _Run(cfg, out_dir, ctx, quiet=quiet or not ctx.is_main).run(resume)
    finally:
        shutdown_distributed(ctx)


class _Run:
    def __init__(self, cfg: TrainConfig, out_dir: Path, ctx: DistContext, quiet: bool) -> None:
        self.cfg, self.out_dir, self.ctx, self.quiet = cfg, out_dir, ctx, quiet
        self.device = resolve_device(cfg.device, local_rank=ctx.local_rank if ctx.enabled else None)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True
        seed_everything(cfg.seed)  # same init on every rank; data order differs by rank
        self.store = TileStore(cfg.store)
        self.splits: TileSplits = split_tiles(self.store, cfg)
        self.store_attrs = self.store.attrs
        self.patch_size = self.store.patch_size
        self.class_names = self.splits.class_names
        self.class_map = _store_class_map(self.class_names, cfg.store)
        self.stain = self._stain_params()
        self.method = METHODS.get(cfg.method).from_train_options(self._train_options())
        self.backbone_plan = plan_backbone(
            cfg.arch, len(self.class_names), pretrained=cfg.pretrained, input_size=self.patch_size
        )
        backbone = build_backbone(self.backbone_plan, cfg.weights)
        # Normalisation (and the input size) the weights were trained with: ImageNet's for
        # most timm weights, the hub config's for foundation models.
        self.input_config = model_input_config(backbone)
        self._warn_input_size()
        backbone.to(self.device)
        first_trainable = freeze_backbone(backbone, cfg.finetune, cfg.finetune_blocks)
        if cfg.grad_checkpointing:
            enable_grad_checkpointing(backbone)
        self.model = self.method.build_model(
            backbone,
            self._taps(backbone, first_trainable),
            (3, self.patch_size, self.patch_size),
        )
        if cfg.channels_last and self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.layer_weights = {tap: cfg.layer_weight for tap in self.model.tap_points}
        groups = backbone_param_groups(backbone, cfg.lr, cfg.weight_decay, cfg.layer_decay)
        opts = build_optimizers(
            self.model, self.method, cfg.lr, cfg.momentum, cfg.weight_decay, groups
        )
        self.optimizers = {k: AllReduceOptimizer(o, ctx) for k, o in opts.items()}
        self.mean, self.std = self.input_config.mean, self.input_config.std
        on_the_fly = stain_transform(self.stain) if self.stain_on_the_fly else None
        self.prepare = InputPipeline(self.mean, self.std, on_the_fly)
        self.alignment_taps = alignment_taps(backbone, cfg.granularity)
        # Fixed samples (same tiles every epoch) for the label-free evaluation.
        self.label_free_val = sample_indices(self.splits.val, cfg.label_free_tiles, cfg.seed)
        self.label_free_target = sample_indices(
            self.splits.target, cfg.label_free_tiles, cfg.seed + 1
        )

    # -- setup --------------------------------------------------------------------------
    def _taps(self, backbone: torch.nn.Module, first_trainable: str) -> list[str]:
        """The method's taps (or the configured ones) that sit on trainable layers."""
        explicit = bool(self.cfg.taps)
        taps = list(self.cfg.taps) if explicit else self.method.default_tap_points(backbone)
        kept = trainable_taps(backbone, taps, first_trainable, explicit=explicit)
        if taps and not kept:
            raise ConfigError(
                f"method {self.cfg.method!r} has no trainable layer to adapt with finetune "
                f"{self.cfg.finetune!r} (training starts at {first_trainable}); use method "
                "none, or train more blocks (finetune partial with finetune_blocks)"
            )
        return kept

    def _warn_input_size(self) -> None:
        trained_at = self.input_config.input_size[1]
        if self.cfg.pretrained is not None and trained_at != self.patch_size:
            warnings.warn(
                f"{self.cfg.store}: tiles are {self.patch_size} px but the pretrained weights "
                f"were trained at {trained_at} px; tile with a patch size of {trained_at} px "
                "to use them as trained",
                stacklevel=3,
            )

    def _train_options(self) -> dict[str, Any]:
        # Every training option plus the two the run derives; each method takes its own.
        options = {f.name: getattr(self.cfg, f.name) for f in dataclasses.fields(self.cfg)}
        options["n_domains"] = 1 + len(self.splits.target_domains)
        options["amp_dtype"] = "bfloat16" if self.cfg.amp and self.device.type == "cuda" else None
        return options

    def _stain_params(self) -> dict[str, Any] | None:
        """Fitted stain parameters (``to_dict()`` form) that inference must apply.

        Tiles normalised at tiling time carry the store's parameters; ``stain_params``
        normalises raw tiles on the fly (``on_the_fly`` says whether batches need it).
        """
        stored = (self.store_attrs.get("stain") or {}).get("params")
        if self.cfg.stain_params is None:
            self.stain_on_the_fly = False
            return stored
        if stored:
            raise ConfigError(
                f"{self.cfg.store}: tiles are already stain-normalised at tiling time; "
                "drop `stain_params` (it would normalise twice)"
            )
        from pathda.stain import load_params

        self.stain_on_the_fly = True
        return load_params(self.cfg.stain_params).to_dict()

    def _loader(
        self, indices: np.ndarray, *, train: bool, seed_offset: int = 0, balance: bool = False
    ):
        augmentation = (
            training_augmentation(self.cfg.stain_jitter) if train and self.cfg.augment else None
        )
        dataset = TileDataset(self.store, indices, augmentation)
        return make_loader(
            dataset,
            self.cfg.batch_size if train else 2 * self.cfg.batch_size,
            shuffle=train,
            num_workers=self.cfg.num_workers,
            seed=self.cfg.seed + seed_offset,
            pin_memory=self.device.type == "cuda",
            distributed=self.ctx.enabled,
            rank=self.ctx.rank if self.ctx.enabled else 0,
            class_balance=balance,
        )

    def _to_input(self, batch_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        x = batch_uint8_nhwc.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        x = self.prepare(x)
        if self.cfg.channels_last and self.device.type == "cuda":
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()

    # -- the run ------------------------------------------------------------------------
    def run(self, resume: bool) -> TrainResult:
        cfg = self.cfg
        start_epoch, best = 0, {"epoch": -1, "val_acc": -1.0, "target_acc": float("nan")}
        if resume:
            state = load_state(self.out_dir, cfg)
            self.model.load_state_dict(state["model"])
            for key, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][key])
            restore_rng(state)
            start_epoch, best = state["epoch"] + 1, state["best"]
        best_dev = best.pop("dev", None) or {"epoch": -1, "dev_risk": float("inf")}
        log = MetricsLog(
            self.out_dir, cfg.tensorboard and self.ctx.is_main, keep_epochs=start_epoch
        )
        source_iter = infinite_batches(
            self._loader(self.splits.source, train=True, balance=cfg.class_balance)
        )
        target_iter = (
            infinite_batches(self._loader(self.splits.target, train=True, seed_offset=1))
            if self.method.adapts
            else None
        )
        steps = cfg.steps_per_epoch or max(1, math.ceil(self.splits.source.size / cfg.batch_size))
        with make_progress(self.quiet) as progress:
            task = progress.add_task(
                f"train {cfg.method}", total=(cfg.epochs - start_epoch) * steps
            )
            for epoch in range(start_epoch, cfg.epochs):
                t0 = time.perf_counter()
                train_metrics = self._train_epoch(
                    epoch, steps, source_iter, target_iter, progress, task
                )
                record = {"epoch": epoch, **train_metrics, **self._evaluate()}
                record["seconds"] = round(time.perf_counter() - t0, 3)
                if self._is_better(epoch, record, best):
                    best = {
                        "epoch": epoch,
                        "val_acc": record["val_acc"],
                        "target_acc": record["target_acc"],
                        cfg.select_metric: record[cfg.select_metric],
                    }
                    if self.ctx.is_main:
                        self._export(self.out_dir / layout.MODEL_FILE, epoch, record)
                        write_json(self.out_dir / layout.SELECTED_FILE, record)
                if self._is_better_dev(epoch, record, best_dev):
                    best_dev = {"epoch": epoch, "dev_risk": record["dev_risk"]}
                    if self.ctx.is_main:
                        self._export(self.out_dir / layout.DEV_MODEL_FILE, epoch, record)
                        write_json(self.out_dir / layout.DEV_SELECTED_FILE, record)
                if self.ctx.is_main:
                    log.append(record)
                    save_state(
                        self.out_dir,
                        epoch=epoch,
                        model=self.model,
                        optimizers=self.optimizers,
                        cfg=cfg,
                        best={**best, "dev": best_dev},
                    )
        log.close()
        history = log.records
        if self.ctx.is_main and history:
            title = f"{cfg.arch} {cfg.method}"
            plot_curves(history, self.out_dir / layout.CURVES_FILE, title=title)
        return TrainResult(
            out_dir=self.out_dir,
            checkpoint=self.out_dir / layout.MODEL_FILE,
            selected_epoch=int(best["epoch"]),
            val_acc=float(best["val_acc"]),
            target_acc=float(best["target_acc"]),
            history=history,
        )

    def _is_better(self, epoch: int, record: dict[str, Any], best: dict[str, Any]) -> bool:
        if epoch not in self.cfg.selection_epochs():
            return False
        metric = self.cfg.select_metric
        val = record[metric]
        if math.isnan(val):  # no validation slides: keep the last epoch
            return True
        return best["epoch"] < self.cfg.selection_epochs().start or val > best[metric]

    def _is_better_dev(self, epoch: int, record: dict[str, Any], best: dict[str, Any]) -> bool:
        if epoch not in self.cfg.selection_epochs() or "dev_risk" not in record:
            return False
        first = self.cfg.selection_epochs().start
        return best["epoch"] < first or record["dev_risk"] < best["dev_risk"]

    def _train_epoch(
        self, epoch, steps, source_iter, target_iter, progress, task
    ) -> dict[str, float]:
        totals: dict[str, float] = {}
        for step in range(steps):
            x_src, y_src, _ = next(source_iter)
            x_tgt = None
            domain_tgt = None
            if target_iter is not None:
                x_tgt_u8, _, d_tgt = next(target_iter)
                x_tgt = self._to_input(x_tgt_u8)
                domain_tgt = self._target_domain_labels(d_tgt)
            metrics = self.method.step(
                self.model,
                self.optimizers,
                self._to_input(x_src),
                y_src.to(self.device, non_blocking=True),
                x_tgt,
                progress=(epoch * steps + step) / (self.cfg.epochs * steps),
                layer_weights=self.layer_weights,
                domain_tgt=domain_tgt,
            )
            if not math.isfinite(metrics.get("loss_total", metrics["loss_cls"])):
                raise TrainingDivergedError(
                    f"training diverged at epoch {epoch + 1}, step {step + 1} (loss is not "
                    "finite); lower `lr` or `layer_weight`, or resume from an earlier checkpoint"
                )
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value
            progress.advance(task)
        return {("train_acc" if k == "acc_cls" else k): v / steps for k, v in totals.items()}

    def _target_domain_labels(self, store_domains: torch.Tensor) -> torch.Tensor | None:
        # Store domain index -> 1..n_target (source is 0) for the N-way domain heads.
        names = self.store_attrs["domains"]
        order = {names.index(n): i + 1 for i, n in enumerate(self.splits.target_domains)}
        return torch.tensor([order[int(d)] for d in store_domains], device=self.device)

    @torch.no_grad()
    def _confusion(self, indices: np.ndarray) -> np.ndarray:
        """Tile confusion counts (rows: true class, columns: predicted), summed over ranks."""
        n = len(self.class_map.names)
        counts = torch.zeros(n * n, dtype=torch.float64, device=self.device)
        if indices.size == 0:
            return counts.view(n, n).cpu().numpy()
        self.model.eval()
        amp = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda" and self.cfg.amp
            else contextlib.nullcontext()
        )
        for x, y, _ in self._loader(indices, train=False):
            with amp:
                pred = self.model(self._to_input(x)).argmax(dim=1)
            pairs = y.to(self.device) * n + pred
            counts += torch.bincount(pairs, minlength=n * n).to(counts.dtype)
        return all_reduce_sum(counts, self.ctx).view(n, n).cpu().numpy()

    def _evaluate(self) -> dict[str, float]:
        broadcast_buffers(self.model, self.ctx)
        val = self._confusion(self.splits.val)
        metrics = {
            "val_acc": pixel_accuracy(val),
            "val_bacc": balanced_accuracy(val),
            "target_acc": pixel_accuracy(self._confusion(self.splits.target_eval)),
        }
        if self.ctx.is_main and self.cfg.label_free_tiles > 0:
            metrics.update(self._label_free())
        return metrics

    def _label_free(self) -> dict[str, float]:
        """DEV / IWV risk and per-layer alignment; target labels are never read."""
        if self.label_free_val.size < 4 or self.label_free_target.size < 4:
            return {}

        def batches(indices: np.ndarray):
            dataset = TileDataset(self.store, indices, None)
            return make_loader(
                dataset,
                2 * self.cfg.batch_size,
                shuffle=False,
                num_workers=self.cfg.num_workers,
                seed=self.cfg.seed,
                pin_memory=False,
                distributed=False,
            )

        return label_free_metrics(
            self.model.backbone,
            batches(self.label_free_val),
            batches(self.label_free_target),
            self._to_input,
            self.alignment_taps,
            seed=self.cfg.seed,
        )

    def _export(self, path: Path, epoch: int, record: dict[str, Any]) -> None:
        plan = self.backbone_plan
        checkpoint = InferenceCheckpoint(
            arch=plan.arch,  # a hub model's own architecture; rebuilt without the hub
            class_map=self.class_map,
            mpp=float(self.store_attrs["mpp"]),
            patch_size=self.patch_size,
            # The pretrained config's mean/std (what the pipeline applied), input size and
            # interpolation.
            input_config=self.input_config,
            # Tiles were normalised at tiling time or on the fly: either way inference
            # must normalise with the same fitted parameters.
            stain=self.stain,
            timm_kwargs=plan.timm_kwargs,
            provenance={
                **provenance(self.cfg, slides=[], mpp=self.store_attrs["mpp"]),
                "store": str(Path(self.cfg.store).resolve()),
                "pretrained": plan.source.pretrained,
                "selected_epoch": epoch,
                "metrics": record,
                "splits": self.splits.summary(),
            },
        )
        save_inference_checkpoint(path, self.model.backbone, checkpoint)


def _store_class_map(class_names: Sequence[str], store: str | Path) -> ClassMap:
    """The class map a store's labels use, checked before training starts (not at export).

    Stores are labelled with the BACH class map (aliases only affect reading).
    """
    if tuple(class_names) != BACH_CLASSES.names:
        raise ConfigError(
            f"{store}: classes {list(class_names)} are not the BACH classes "
            f"({', '.join(BACH_CLASSES.names)}); re-tile with this version of pathda"
        )
    return BACH_CLASSES
