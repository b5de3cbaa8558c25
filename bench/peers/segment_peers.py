"""WSI segmentation: pathda (patch and dense modes) against TIAToolbox's patch predictor.

Runs in the peers' own virtualenv (``bench/peers/make_venv.sh``). One synthetic slide
(``pathda.synth``, ``--size``² level-0 px at 0.467 µm/px) and one seeded random timm
classifier, saved as a pathda checkpoint; TIAToolbox gets the very same tensors (read back
from that checkpoint) through its own ``weights=`` loader, in a ``ModelABC`` wrapper whose
``infer_batch`` applies the checkpoint's ImageNet mean/std and a softmax, as pathda does.
Both read 224-px patches at 0.934 µm/px with stride 112, batch 64, the same DataLoader
workers, on the CPU with ``--threads`` torch threads, and both keep the patches that touch
the same tissue mask: pathda's own (Otsu on saturation at 8 µm/px), computed by pathda in
its run and handed to TIAToolbox as a PNG (TIAToolbox's rule, any tissue under the patch,
is pathda's with ``min_tissue_fraction: 0``, so that is set). TIAToolbox's ``torch.compile``
is off (``rcParam["torch_compile_mode"] = "disable"``): both run eager torch.

Each tool runs in its own fresh interpreter; each round runs every tool once, in turn, so
load from other processes hits all alike (median over ``--rounds``). Wall time includes the
interpreter start, imports and writing outputs (pathda: stitched mask, GeoJSON, overlay,
probability zarr; TIAToolbox: a per-patch zarr). Peak RSS is ``wait4``'s ``ru_maxrss`` (the
largest process, DataLoader workers not added). Agreement: the patches each ran, and
TIAToolbox's per-patch probabilities blended onto pathda's mask grid with pathda's own
stitcher, against pathda's probability grid (argmax agreement and |Δprob| on cells both cover).

Usage (from the repository root; the issue's 8192² slide):
    PYTHONPATH=$PWD /tmp/peers-venv/bin/python bench/peers/segment_peers.py \\
        --markdown docs/benchmarks/peers_segment.md --json docs/benchmarks/peers_segment.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "bench" / "peers"))
from peer_report import command_line, load_note, lscpu, version  # noqa: E402

NORMALISE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # ImageNet
SLIDE_MPP = 0.467
PATHDA_RUNS = {
    "pathda patch": ["--mode", "patch"],
    "pathda dense": ["--mode", "dense"],
}
BF16_RUNS = {  # --bf16: bf16 autocast on the CPU too (pays with AVX-512-BF16 / AMX)
    "pathda patch bf16": ["--mode", "patch", "--precision", "bf16"],
    "pathda dense bf16": ["--mode", "dense", "--precision", "bf16"],
}


# --- TIAToolbox, run in its own interpreter (``--tiatoolbox-child SPEC``) -------------------


def tiatoolbox_model(arch: str, num_classes: int, mean: list[float], std: list[float]):
    """A timm classifier as a TIAToolbox ``ModelABC``: uint8 NHWC in, softmax out."""
    import timm
    import torch
    from tiatoolbox.models.models_abc import ModelABC

    class TimmPatchClassifier(ModelABC):
        def __init__(self) -> None:
            super().__init__()
            self.net = timm.create_model(arch, num_classes=num_classes, pretrained=False)
            m = torch.tensor(mean).view(1, 3, 1, 1)
            s = torch.tensor(std).view(1, 3, 1, 1)
            # pathda's InputPipeline arithmetic, so the inputs agree to the last bit;
            # not persistent, so the weights file holds only the network's tensors.
            self.register_buffer("scale", 1 / (255.0 * s), persistent=False)
            self.register_buffer("shift", -m / s, persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.float() * self.scale + self.shift)

        @staticmethod
        def infer_batch(model, batch_data, *, device: str) -> np.ndarray:
            x = batch_data.to(device).permute(0, 3, 1, 2)
            model.eval()
            with torch.inference_mode():
                return torch.softmax(model(x).float(), 1).cpu().numpy()

        @staticmethod
        def postproc(image):
            return np.argmax(image, axis=-1)

    return TimmPatchClassifier()


def run_tiatoolbox(spec_path: Path) -> None:
    """The TIAToolbox side: ``PatchPredictor.run`` in WSI mode, per-patch zarr output."""
    started = time.perf_counter()
    spec = json.loads(spec_path.read_text())
    import torch

    torch.set_num_threads(spec["threads"])
    from tiatoolbox import rcParam

    rcParam["torch_compile_mode"] = spec["compile_mode"]  # read by the engine's __init__
    from tiatoolbox.models.engine.io_config import IOPatchPredictorConfig
    from tiatoolbox.models.engine.patch_predictor import PatchPredictor

    imported = time.perf_counter()
    model = tiatoolbox_model(spec["arch"], spec["num_classes"], spec["mean"], spec["std"])
    predictor = PatchPredictor(
        model=model,
        weights=spec["weights"],
        batch_size=spec["batch_size"],
        num_workers=spec["workers"],
        device="cpu",
        verbose=False,
    )
    ioconfig = IOPatchPredictorConfig(
        input_resolutions=[{"units": "mpp", "resolution": spec["model_mpp"]}],
        patch_input_shape=(spec["patch"], spec["patch"]),
        stride_shape=(spec["stride"], spec["stride"]),
    )
    out = predictor.run(
        [Path(spec["slide"])],
        masks=[Path(spec["mask"])],
        ioconfig=ioconfig,
        patch_mode=False,
        save_dir=Path(spec["out"]),
        overwrite=True,
        output_type="zarr",
        return_probabilities=True,
        auto_get_mask=False,
    )
    finished = time.perf_counter()
    Path(spec["report"]).write_text(
        json.dumps(
            {
                "zarr": str(next(iter(out.values()))),
                "torch_threads": torch.get_num_threads(),
                "seconds_imports": imported - started,
                "seconds_run": finished - imported,
            }
        )
    )


# --- The orchestrator -----------------------------------------------------------------------


def prepare(work: Path, args) -> dict:
    """Slide, checkpoint, TIAToolbox weights, tissue mask PNG and pathda config in ``work``."""
    import torch
    from PIL import Image
    from segment_bench import bench_checkpoint

    from pathda.checkpoint import read_inference_checkpoint, save_inference_checkpoint
    from pathda.models import create_backbone
    from pathda.segment import grid
    from pathda.segment.config import SegmentConfig
    from pathda.segment.plan import plan_segmentation
    from pathda.slide import open_slide
    from pathda.synth import synthesise_slides
    from pathda.tissue import detect_tissue

    started = time.perf_counter()
    (slide,) = synthesise_slides(
        work / "synth", n=1, size=(args.size, args.size), seed=0, mpp=SLIDE_MPP, quiet=True
    )
    meta = bench_checkpoint(
        args.arch, args.model_mpp, args.patch, NORMALISE, "peers/segment_peers", train_steps=0
    )
    torch.manual_seed(0)
    checkpoint = save_inference_checkpoint(
        work / "model.pt", create_backbone(args.arch, meta.num_classes), meta
    )
    _, state = read_inference_checkpoint(checkpoint)  # the tensors pathda will load
    weights = work / "tiatoolbox_weights.pth"
    torch.save({f"net.{k}": v for k, v in state.items()}, weights)

    # Any tissue under a patch keeps it, as in TIAToolbox (its min_mask_ratio is 0).
    cfg = SegmentConfig(stride=args.stride, min_tissue_fraction=0.0)
    config = work / "segment.yaml"
    config.write_text("segment:\n  min_tissue_fraction: 0.0\n")
    with open_slide(slide.image) as handle:
        plan = plan_segmentation(handle, meta, cfg)
        # The thumbnail and detection plan_segmentation uses (same mpp rule, same params).
        thumb_mpp = max(min(cfg.tissue.mpp, plan.mask_downsample * SLIDE_MPP), SLIDE_MPP)
        thumbnail = handle.thumbnail(mpp=thumb_mpp)
        thumb_ds = handle.dimensions[0] / thumbnail.shape[1]
        tissue = detect_tissue(thumbnail, cfg.tissue, mpp=thumb_ds * SLIDE_MPP)
    mask = work / "tissue.png"
    Image.fromarray(np.repeat(tissue[..., None].astype(np.uint8) * 255, 3, axis=2)).save(mask)
    return {
        "slide": slide.image,
        "checkpoint": checkpoint,
        "weights": weights,
        "config": config,
        "mask": mask,
        "plan": plan,
        "tissue_share": float(tissue.mean()),
        "window": grid.get_window(cfg.window),
        "num_classes": meta.num_classes,
        "seconds": time.perf_counter() - started,
    }


def commands(setup: dict, work: Path, args) -> dict[str, list[str]]:
    pathda = [
        sys.executable, "-m", "pathda", "segment", str(setup["slide"]),
        "--model", str(setup["checkpoint"]), "--config", str(setup["config"]),
        "--stride", str(args.stride), "--batch-size", str(args.batch_size),
        "--workers", str(args.workers), "--device", "cpu", "--quiet",
    ]  # fmt: skip
    spec = {
        "slide": str(setup["slide"]),
        "mask": str(setup["mask"]),
        "weights": str(setup["weights"]),
        "arch": args.arch,
        "num_classes": setup["num_classes"],
        "model_mpp": args.model_mpp,
        "patch": args.patch,
        "stride": args.stride,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "threads": args.threads,
        "compile_mode": "disable",
        "out": str(out_dir(work, "TIAToolbox")),
        "report": str(work / "tiatoolbox_report.json"),
        **NORMALISE,
    }
    spec_path = work / "tiatoolbox_spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    pathda_runs = {**PATHDA_RUNS, **(BF16_RUNS if args.bf16 else {})}
    dense_tile = ["--tile", str(args.dense_tile)] if args.dense_tile else []
    return {
        **{name: [*pathda, "--out", str(out_dir(work, name)), *flags,
                  *(dense_tile if "dense" in flags else [])]
           for name, flags in pathda_runs.items()},
        "TIAToolbox": [sys.executable, __file__, "--tiatoolbox-child", str(spec_path)],
    }  # fmt: skip


def out_dir(work: Path, tool: str) -> Path:
    return work / "out" / tool.replace(" ", "-")


def run_once(command: list[str], out: Path, log: Path, threads: int) -> tuple[float, float, float]:
    """One tool in a fresh interpreter; returns (wall s, CPU s, peak RSS MiB)."""
    shutil.rmtree(out, ignore_errors=True)  # no resuming, no reuse of earlier outputs
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with log.open("w") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{log.read_text()[-4000:]}")
    # CPU s: the process and the children it waited for (DataLoader workers); less
    # sensitive than wall time to other load on a shared machine.
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux: KiB


def pathda_outputs(out: Path, slide: Path) -> tuple[dict, np.ndarray]:
    import zarr

    stem = slide.name.rsplit(".", 1)[0]
    summary = json.loads((out / stem / f"{stem}.summary.json").read_text())
    probs = zarr.open_array(out / stem / f"{stem}.probs.zarr", mode="r")[:]
    return summary, probs.astype(np.float32)


def stitch_tiatoolbox(zarr_path: Path, setup: dict, args) -> tuple[dict, np.ndarray]:
    """TIAToolbox's patches, matched to pathda's, blended by pathda's own stitcher."""
    import zarr

    from pathda.segment.stitch import ProbabilityStitcher

    group = zarr.open_group(str(zarr_path), mode="r")
    coords = np.asarray(group["coordinates"][:])  # (x0, y0, x1, y1) at the model mpp
    probs = np.asarray(group["probabilities"][:], dtype=np.float32)
    plan = setup["plan"]
    scale = args.model_mpp / SLIDE_MPP  # level-0 px per model px
    origins = np.round(coords[:, :2] * scale).astype(np.int64)
    ours = {tuple(o) for o in plan.origins.tolist()}
    theirs = {tuple(o) for o in origins.tolist()}
    common = np.array([tuple(o) in ours for o in origins.tolist()], dtype=bool)
    order = np.lexsort((origins[common, 0], origins[common, 1]))  # row-major, as pathda's
    grid_probs = np.zeros((setup["num_classes"], *plan.mask_shape), np.float32)

    def sink(row: int, mean: np.ndarray) -> None:
        grid_probs[:, row : row + mean.shape[1]] = mean

    stitcher = ProbabilityStitcher(
        plan.mask_shape, setup["num_classes"], plan.mask_downsample, plan.patch_l0,
        setup["window"], plan.tissue, sink,
    )  # fmt: skip
    stitcher.add(origins[common][order], probs[common][order])
    stitcher.finish()
    patches = {
        "tiatoolbox": len(origins),
        "pathda_plan": len(ours),
        "common": int(common.sum()),
        "tiatoolbox_only": len(theirs - ours),
        "pathda_only": len(ours - theirs),
        "classes_predicted_by_tiatoolbox": len(np.unique(probs.argmax(1))),
    }
    return patches, grid_probs


def agreement(probs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Argmax agreement and |Δprob| of two (C, H, W) grids on cells both cover."""
    both = (probs.sum(0) > 0) & (reference.sum(0) > 0)
    diff = np.abs(probs - reference)[:, both]
    return {
        "cells": int(both.sum()),
        "label_agreement": float((probs.argmax(0) == reference.argmax(0))[both].mean()),
        "max_abs_prob_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_prob_diff": float(diff.mean()) if diff.size else 0.0,
    }


def markdown(report: dict) -> str:
    s = report["setting"]
    p = report["patches"]
    lines = [
        "# Peer comparison: WSI segmentation",
        "",
        "Generated by `bench/peers/segment_peers.py`; do not edit by hand. Command:",
        "",
        f"    {report['command']}",
        "",
        f"Machine (`lscpu`): {report['lscpu']}  ",
        f"torch threads {s['threads']} (TIAToolbox's process saw "
        f"{report['tiatoolbox_torch_threads']}); "
        f"{load_note(report['load_before'], report['load_after'])}.  ",
        f"Synthetic slide {s['size']}² level-0 px at {SLIDE_MPP} µm/px "
        f"({100 * report['tissue_share']:.0f} % tissue); {s['arch']} (seeded random weights, "
        f"the same tensors in both), {s['patch']}-px patches at {s['model_mpp']} µm/px, stride "
        f"{s['stride']}, batch {s['batch_size']}, {s['workers']} DataLoader worker(s), CPU; "
        f"pathda dense blocks {s.get('dense_tile') or 'of the default size'} px; "
        "both keep the patches touching pathda's tissue mask (TIAToolbox gets it as a PNG); "
        "TIAToolbox without torch.compile. Each tool in its own process, "
        f"{s['rounds']} interleaved rounds (median); wall time includes interpreter start, "
        "imports and writing outputs; peak RSS of the largest process.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
        "| tool | patches | wall s | patches/s | tool wall / pathda patch wall | CPU s "
        "| peak RSS MiB | vs pathda patch: labels agree / max / mean abs Δprob |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    ref = report["tools"]["pathda patch"]["wall_s"]
    for name, row in report["tools"].items():
        a = row["agreement_with_pathda_patch"]
        agree = (
            f"{100 * a['label_agreement']:.2f} % / {a['max_abs_prob_diff']:.4f} / "
            f"{a['mean_abs_prob_diff']:.5f}"
            if a
            else "(reference)"
        )
        lines.append(
            f"| {name} | {row['patches']:,} | {row['wall_s']:.1f} | {row['patches_per_s']:.1f} "
            f"| {row['wall_s'] / ref:.2f}x | {row['cpu_s']:.1f} | {row['peak_rss_mib']:.0f} "
            f"| {agree} |"
        )
    lines += [
        "",
        f"Patches: TIAToolbox {p['tiatoolbox']:,}, pathda {p['pathda_plan']:,}, both "
        f"{p['common']:,}; TIAToolbox only {p['tiatoolbox_only']} (its grid runs one stride "
        f"further at the right and bottom edges), pathda only {p['pathda_only']}. TIAToolbox's "
        f"patch probabilities were blended on pathda's mask grid with pathda's stitcher "
        f"(common patches only) and compared on the {report['cells_compared']:,} cells both "
        f"cover; the random model predicts {p['classes_predicted_by_tiatoolbox']} of the "
        f"{report['num_classes']} classes, so |Δprob| is the sharper check. Note pathda's wall "
        "time also covers stitching and its exports (mask, GeoJSON, overlay), TIAToolbox's a "
        "per-patch zarr only. CPU s counts the tool's process and its DataLoader workers.",
        "",
        "Per-round wall s: "
        + "; ".join(
            f"{name} {' '.join(f'{w:.1f}' for w in row['rounds_s'])}"
            for name, row in report["tools"].items()
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="slide side, level-0 px")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per tool")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--patch", type=int, default=224, help="px at the model mpp")
    parser.add_argument("--stride", type=int, default=112, help="px at the model mpp")
    parser.add_argument("--model-mpp", type=float, default=0.934)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers, both tools")
    parser.add_argument("--work", type=Path, help="keep slide and outputs here")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--bf16", action="store_true", help="also pathda with --precision bf16")
    parser.add_argument("--dense-tile", type=int, help="pathda dense: --tile (block side, px)")
    parser.add_argument("--tiatoolbox-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiatoolbox_child:
        run_tiatoolbox(args.tiatoolbox_child)
        return

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="segment-peers-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        setup = prepare(work, args)
        runs = commands(setup, work, args)
        tools_run = list(runs)
        outs = {name: out_dir(work, name) for name in tools_run}
        walls: dict[str, list[float]] = {name: [] for name in tools_run}
        cpus: dict[str, list[float]] = {name: [] for name in tools_run}
        rss = dict.fromkeys(tools_run, 0.0)
        load_before = list(os.getloadavg())
        for _ in range(args.rounds):
            for name in tools_run:
                log = work / f"{name.replace(' ', '_')}.log"
                wall, cpu, peak = run_once(runs[name], outs[name], log, args.threads)
                walls[name].append(wall)
                cpus[name].append(cpu)
                rss[name] = max(rss[name], peak)
        load_after = list(os.getloadavg())
        tia = json.loads((work / "tiatoolbox_report.json").read_text())
        patches, tia_grid = stitch_tiatoolbox(Path(tia["zarr"]), setup, args)
        summaries, grids = {}, {"TIAToolbox": tia_grid}
        for name in tools_run:
            if name != "TIAToolbox":
                summaries[name], grids[name] = pathda_outputs(outs[name], setup["slide"])

    counts = {name: summary["n_patches"] for name, summary in summaries.items()}
    counts["TIAToolbox"] = patches["tiatoolbox"]
    tools = {}
    for name in tools_run:
        wall = statistics.median(walls[name])
        tools[name] = {
            "patches": counts[name],
            "wall_s": wall,
            "rounds_s": walls[name],
            "cpu_s": statistics.median(cpus[name]),
            "rounds_cpu_s": cpus[name],
            "patches_per_s": counts[name] / wall,
            "peak_rss_mib": rss[name],
            "agreement_with_pathda_patch": (
                None if name == "pathda patch" else agreement(grids[name], grids["pathda patch"])
            ),
        }
        if name in summaries:
            tools[name]["seconds_by_stage"] = summaries[name]["seconds_by_stage"]
    tools["TIAToolbox"]["seconds_in_process"] = {
        "imports": tia["seconds_imports"],
        "run": tia["seconds_run"],
    }
    report = {
        "command": command_line(),
        "lscpu": lscpu(),
        "setting": {
            "size": args.size,
            "slide_mpp": SLIDE_MPP,
            "arch": args.arch,
            "patch": args.patch,
            "stride": args.stride,
            "model_mpp": args.model_mpp,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "threads": args.threads,
            "rounds": args.rounds,
            "dense_tile": args.dense_tile,
            "normalise": NORMALISE,
            "tiatoolbox_torch_compile": "disable",
            "tissue": "pathda's mask; any tissue under a patch keeps it (both)",
        },
        "tiatoolbox_torch_threads": tia["torch_threads"],
        "load_before": load_before,
        "load_after": load_after,
        "tissue_share": setup["tissue_share"],
        "num_classes": setup["num_classes"],
        "prepare_s": setup["seconds"],
        "patches": patches,
        "cells_compared": tools["TIAToolbox"]["agreement_with_pathda_patch"]["cells"],
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            **{d: version(d) for d in ("pathda", "tiatoolbox", "timm", "numpy", "zarr")},
        },
        "tools": tools,
    }
    text = markdown(report)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
