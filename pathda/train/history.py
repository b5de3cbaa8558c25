"""Per-epoch metrics: JSON lines on disk, optional TensorBoard, curves PNG at the end."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pathda import layout


class MetricsLog:
    """Append-only ``metrics.jsonl`` (one JSON object per epoch), plus TensorBoard if asked.

    On resume the file is truncated to the epochs that the checkpoint covers, so
    the log never holds an epoch twice.
    """

    def __init__(self, out_dir: Path, tensorboard: bool = False, keep_epochs: int | None = None):
        self.path = Path(out_dir) / layout.METRICS_FILE
        self.records: list[dict[str, Any]] = []
        if keep_epochs is not None and self.path.exists():
            kept = [json.loads(line) for line in self.path.read_text().splitlines() if line]
            self.records = [r for r in kept if r["epoch"] < keep_epochs]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # tensorboard is an optional extra
                from pathda.errors import ConfigError

                raise ConfigError(
                    "tensorboard logging needs the tensorboard package: "
                    "pip install 'pathda[tensorboard]'"
                ) from err
            self._tb = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))

    def append(self, record: Mapping[str, Any]) -> None:
        record = dict(record)
        self.records.append(record)
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self._tb.add_scalar(key, value, record["epoch"])
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def plot_curves(records: Sequence[Mapping[str, Any]], out_png: Path, title: str = "") -> Path:
    """Loss and accuracy curves per epoch, one panel each, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] + 1 for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    loss_keys = (
        sorted(
            k
            for k in records[0]
            if k.startswith("loss_") or k in ("wasserstein", "gradient_penalty")
        )
        if records
        else []
    )
    for key in loss_keys:
        if "/" not in key:  # per-layer terms are in the JSON lines; the plot shows totals
            ax_loss.plot(epochs, [r.get(key, float("nan")) for r in records], label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title("losses")
    ax_loss.legend(fontsize=8)
    for key in ("train_acc", "val_acc", "target_acc", "domain_acc"):
        if records and key in records[0]:
            ax_acc.plot(epochs, [r.get(key, float("nan")) for r in records], label=key)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylim(0, 1)
    ax_acc.set_title("accuracy")
    ax_acc.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
