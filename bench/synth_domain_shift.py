"""Does the synthetic domain shift hurt a classifier? Train on lab-a patches, test on others.

Writes slides of every domain with the same seeds (same tissue), cuts 64 x 64 patches at
~1.9 µm/px (pyramid level 1 of a 0.467 µm/px slide) labelled by the ground-truth mask, trains
a small CNN on lab-a training slides and prints its patch accuracy on a held-out slide in
each domain. The drop from lab-a to lab-b is the shift domain adaptation has to undo.

Usage:
    python bench/synth_domain_shift.py [--size 4096] [--train 3] [--epochs 10] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image
from torch import nn

from pathda.synth import synthesise_slides

PATCH = 64


def patches(image: Path, mask_path: Path, stride: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Level-1 patches whose mask is >= 80 % one class and that are mostly tissue."""
    with tifffile.TiffFile(image) as tif:
        level1 = tif.series[0].levels[1].asarray()
    mask = np.asarray(Image.open(mask_path))  # downsample 8 = half of level 1
    xs, ys = [], []
    h, w = level1.shape[:2]
    for y in range(0, h - PATCH + 1, stride):
        for x in range(0, w - PATCH + 1, stride):
            tile = level1[y : y + PATCH, x : x + PATCH]
            if (tile.mean(axis=2) < 215).mean() < 0.5:
                continue  # mostly glass or fat
            m = mask[y // 2 : (y + PATCH) // 2, x // 2 : (x + PATCH) // 2]
            counts = np.bincount(m.ravel(), minlength=4)
            if counts.max() < 0.8 * m.size:
                continue
            xs.append(tile)
            ys.append(int(counts.argmax()))
    return np.stack(xs), np.array(ys)


def small_cnn() -> nn.Module:
    def block(i: int, o: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)
        )

    return nn.Sequential(
        block(3, 16), block(16, 32), block(32, 64), block(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 4),
    )  # fmt: skip


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--train", type=int, default=3, help="lab-a training slides")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        size = (args.size, args.size)
        train = synthesise_slides(tmp, n=args.train, domain="lab-a", size=size, seed=0, quiet=True)
        test = {
            d: synthesise_slides(
                tmp, n=1, domain=d, size=size, seed=args.train, prefix=f"test-{d}", quiet=True
            )[0]
            for d in ("lab-a", "lab-b", "scanner-c")
        }
        parts = [patches(s.image, s.mask) for s in train]
        x_train = np.concatenate([p[0] for p in parts])
        y_train = np.concatenate([p[1] for p in parts])
        tests = {d: patches(s.image, s.mask) for d, s in test.items()}
    print(f"slides written and cut in {time.perf_counter() - t0:.0f} s")
    print(f"train patches: {len(y_train)} per class {np.bincount(y_train, minlength=4).tolist()}")
    model = small_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    weights = torch.tensor(len(y_train) / (4 * np.bincount(y_train, minlength=4).clip(1)))
    loss_fn = nn.CrossEntropyLoss(weight=weights.float())
    xt, yt = to_tensor(x_train), torch.from_numpy(y_train)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(yt))
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            batch = xt[idx]
            if torch.rand(()) < 0.5:
                batch = batch.flip(3)
            opt.zero_grad()
            loss = loss_fn(model(batch), yt[idx])
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}")
    model.eval()
    print(f"{'domain':>10} {'patches':>8} {'accuracy':>9} {'balanced':>9}")
    with torch.no_grad():
        for d, (x, y) in tests.items():
            pred = torch.cat(
                [model(to_tensor(x[i : i + 256])).argmax(1) for i in range(0, len(x), 256)]
            )
            pred = pred.numpy()
            recalls = [float((pred[y == c] == c).mean()) for c in range(4) if (y == c).any()]
            print(f"{d:>10} {len(y):>8} {(pred == y).mean():>9.3f} {np.mean(recalls):>9.3f}")


if __name__ == "__main__":
    main()
