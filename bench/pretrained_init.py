"""Random vs pretrained initialisation, without and with L-DANN, on synthetic lab-a -> lab-b.

No pretrained weights can be downloaded on an offline machine, so the "pretrained" backbone
is pre-trained here, briefly, on labelled lab-a tiles of *other* slides than the experiment
uses, saved into a local Hugging Face cache (``models--local--<arch>-lab-a``) and loaded
through ``--pretrained hf-hub:local/<arch>-lab-a`` with ``HF_HUB_OFFLINE=1``: the code path
users hit with a hub model. Then ``{none, ldann} x {random, pretrained}`` train on the
experiment's store (lab-a labelled, lab-b unlabelled) and the table reports the selected
model's source-validation and lab-b tile accuracy (lab-b labels are only used for that).

Examples:
    python bench/pretrained_init.py --out /tmp/pretrained-bench --seeds 0
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

SIZE = 2048  # level-0 px per side at 0.467 µm/px, as the demo
TILE = {"mpp": 1.868, "patch_size": 64, "stride": 64, "min_tissue": 0.5}


def make_store(folder: Path, rows: list[tuple[str, str, int, int, str]]) -> Path:
    """Synthesise slides (domain, prefix, n, seed, split) and tile them into one store."""
    from pathda.synth import synthesise_slides
    from pathda.tiling import TileConfig, tile_slides

    if (folder / "tiles.zarr").is_dir():  # a rerun with the same --out reuses the data
        return folder / "tiles.zarr"

    lines = ["slide,annotation,domain,split"]
    for domain, prefix, n, seed, split in rows:
        for s in synthesise_slides(
            folder / "slides",
            n=n,
            domain=domain,
            size=(SIZE, SIZE),
            seed=seed,
            prefix=prefix,
            quiet=True,
        ):
            lines.append(f"{s.image},{s.annotation},{domain},{split}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return tile_slides([str(manifest)], folder / "tiles.zarr", TileConfig(**TILE), quiet=True)


def pretrain_into_cache(store: Path, out: Path, cache: Path, arch: str, steps: int) -> str:
    """Train ``arch`` on lab-a tiles, put it in the hub cache; returns the hub name."""
    from pathda.checkpoint import load_inference_checkpoint
    from pathda.models.hub_cache import save_to_hub_cache
    from pathda.train import TrainConfig, train

    repo = f"local/{arch}-lab-a"
    if (cache / f"models--local--{arch}-lab-a").is_dir():  # a rerun reuses the pre-training
        return f"hf-hub:{repo}"
    cfg = TrainConfig(
        store=store,
        arch=arch,
        method="none",
        epochs=2,
        steps_per_epoch=steps // 2,
        batch_size=32,
        lr=0.01,
        num_workers=0,
        seed=100,
    )
    (result,) = train(cfg, out, quiet=True)
    model, meta = load_inference_checkpoint(result.checkpoint)
    # The config records the normalisation and tile size it was trained with.
    data = {
        "mean": list(meta.mean),
        "std": list(meta.std),
        "input_size": (3, *[TILE["patch_size"]] * 2),
    }
    save_to_hub_cache(model, repo, cache, data_config=data)
    return f"hf-hub:{repo}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", default="resnet10t")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pretrain-steps", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32, help="tiles per domain per step")
    args = parser.parse_args()

    cache = args.out / "hf-cache"
    # huggingface_hub reads these when imported: set them before anything imports it.
    os.environ["HF_HUB_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from pathda.train import TrainConfig, train

    t0 = time.perf_counter()
    pre_store = make_store(args.out / "pretrain", [("lab-a", "pre", 3, 100, "train")])
    store = make_store(
        args.out / "experiment",
        [
            ("lab-a", "src", 2, 0, "train"),
            ("lab-a", "val", 1, 10, "val"),
            ("lab-b", "tgt", 2, 20, "train"),
        ],
    )
    t_data = time.perf_counter() - t0
    hub_name = pretrain_into_cache(
        pre_store, args.out / "pretrain" / "run", cache, args.arch, args.pretrain_steps
    )
    t_pre = time.perf_counter() - t0 - t_data
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for seed in args.seeds:
        for init, pretrained in (("random", None), ("pretrained", hub_name)):
            for method in ("none", "ldann"):
                cfg = TrainConfig(
                    store=store,
                    arch=args.arch,
                    pretrained=pretrained,
                    method=method,
                    source_domains=("lab-a",),
                    target_domains=("lab-b",),
                    epochs=args.epochs,
                    steps_per_epoch=args.steps_per_epoch,
                    batch_size=32,
                    lr=0.01,
                    layer_weight=0.3,
                    num_workers=0,
                    seed=seed,
                )
                (r,) = train(cfg, args.out / f"{method}-{init}-seed{seed}", quiet=True)
                results.setdefault((method, init), []).append((r.val_acc, r.target_acc))
    t_all = time.perf_counter() - t0

    def cell(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

    print(f"| method | init | lab-a val acc | lab-b acc |  ({len(args.seeds)} seed(s))")
    print("|---|---|---|---|")
    for (method, init), values in results.items():
        val, tgt = zip(*values, strict=True)
        print(f"| {method} | {init} | {cell(list(val))} | {cell(list(tgt))} |")
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"\nslides+tiles {t_data:.0f} s, pre-training {t_pre:.0f} s, total {t_all:.0f} s; "
        f"load average {load}"
    )


if __name__ == "__main__":
    main()
