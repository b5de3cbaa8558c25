"""``docs/benchmarks/shift.{md,json,png}`` from the benchmark's results folder."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from pathda.atomic import write_json
from pathda.benchmark.collect import CLASSES, ArmRuns, in_domain_dir, read_arm, read_rule
from pathda.benchmark.stats import PairedDifference, paired_difference

ARM_ORDER = ("none", "stain-norm", "stain-aug", "dann", "ldann", "lwass", "ldann+stain-aug")


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def _num(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _fmt_diff(d: PairedDifference | None) -> str:
    if d is None or d.n == 0:
        return "–"
    star = " *" if d.excludes_zero else ""
    return f"{d.mean:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]{star}"


def collect(out: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Every arm, selection and bound that has results, per target domain."""
    runs = Path(out) / "runs"
    arms = [a for a in ARM_ORDER if a in cfg["arms"]] + [
        a for a in cfg["arms"] if a not in ARM_ORDER
    ]
    data: dict[str, Any] = {"arms": arms, "domains": {}}
    for domain in [d for d in cfg["target_domains"] if (runs / d).is_dir()]:
        entry = {
            "arms": {a: read_arm(runs / domain / a) for a in arms},
            "dev": {a: read_arm(runs / domain / a, "_dev") for a in arms},
            "bounds": {},
        }
        if (runs / domain / "oracle").is_dir():
            entry["bounds"]["oracle"] = read_arm(runs / domain / "oracle")
        for rule in ("all-normal", "all-in-situ"):
            if (runs / domain / rule).is_dir():
                entry["bounds"][rule] = read_rule(runs / domain / rule)
        data["domains"][domain] = entry
    # The source model on source test slides, and any other arm scored there (in_domain_arms).
    data["in_domain"] = {"in-domain": read_arm(runs / in_domain_dir("none"))}
    for arm in arms:
        if arm != "none" and (runs / in_domain_dir(arm)).is_dir():
            data["in_domain"][f"in-domain ({arm})"] = read_arm(runs / in_domain_dir(arm))
    return data


def summarise(data: dict[str, Any], n_boot: int = 10_000) -> dict[str, Any]:
    """The numbers of the report: per domain and arm, and the paired differences."""
    out: dict[str, Any] = {"domains": {}, "details": {}}
    for domain, entry in data["domains"].items():
        arms: dict[str, ArmRuns] = entry["arms"]
        none, ldann = arms.get("none"), arms.get("ldann")
        table, details = {}, {}
        for name, runs in arms.items():
            if not runs.seeds:
                continue
            bach_mean, bach_std = _mean_std(runs.seed_means("bach"))
            vs_none = (
                paired_difference(runs.by_pair(), none.by_pair(), n_boot=n_boot) if none else None
            )
            vs_ldann = (
                paired_difference(runs.by_pair(), ldann.by_pair(), n_boot=n_boot) if ldann else None
            )
            dev = entry["dev"][name]
            dev_vs_val = paired_difference(dev.by_pair(), runs.by_pair(), n_boot=n_boot)
            table[name] = {
                "bach_mean": _num(bach_mean),
                "bach_std": _num(bach_std),
                "n": len(runs.seeds),
                "diff_vs_none": _diff_json(vs_none, with_n=False),  # the promised 3 keys
            }
            acc_mean, acc_std = _mean_std(runs.seed_means("accuracy"))
            details[name] = {
                "n_slides": len(next(iter(runs.seeds.values()))),
                "accuracy_mean": _num(acc_mean),
                "accuracy_std": _num(acc_std),
                "mean_recall": _num(_mean_std(runs.seed_means("mean_recall"))[0]),
                "dice": {c: _num(runs.dice_mean(c)) for c in CLASSES},
                "diff_vs_ldann": _diff_json(vs_ldann),
                "label_free_selection": {
                    "bach_mean": _num(_mean_std(dev.seed_means("bach"))[0]),
                    "n": len(dev.seeds),
                    "diff_vs_source_val_selection": _diff_json(dev_vs_val),
                },
                "alignment_pad": _alignment(runs),
                "lesion_prediction_mix": dict(
                    zip(CLASSES, map(_num, runs.lesion_prediction_mix()), strict=False)
                ),
                "_diffs": (vs_none, vs_ldann, dev_vs_val),
            }
        bounds = {}
        for name, runs in {**data["in_domain"], **entry["bounds"]}.items():
            if runs.seeds:
                m, s = _mean_std(runs.seed_means("bach"))
                a, _ = _mean_std(runs.seed_means("accuracy"))
                bounds[name] = {
                    "bach_mean": _num(m),
                    "bach_std": _num(s),
                    "n": len(runs.seeds),
                    "accuracy_mean": _num(a),
                    "mean_recall": _num(_mean_std(runs.seed_means("mean_recall"))[0]),
                    "dice": {c: _num(runs.dice_mean(c)) for c in CLASSES},
                }
        out["domains"][domain] = table
        out["details"][domain] = {"arms": details, "bounds": bounds}
    return out


def _diff_json(d: PairedDifference | None, with_n: bool = True) -> dict[str, Any] | None:
    if d is None:
        return None
    out = {"mean": _num(d.mean), "ci_low": _num(d.ci_low), "ci_high": _num(d.ci_high)}
    return out | {"n_pairs": d.n} if with_n else out


def _alignment(runs: ArmRuns) -> dict[str, float | None]:
    """Proxy A-distance per tapped layer at the selected epoch, mean over seeds."""
    per_tap: dict[str, list[float]] = {}
    for record in runs.selected.values():
        for key, value in record.items():
            if key.startswith("pad/"):
                per_tap.setdefault(key[4:], []).append(float(value))
    return {tap: _num(_mean_std(v)[0]) for tap, v in per_tap.items()}


def selection_note(cfg: dict[str, Any]) -> str:
    """How the reported checkpoints were chosen and trained, from the benchmark config."""
    train = cfg.get("train") or {}
    metric = (
        "balanced accuracy (mean per-class recall)"
        if train.get("select_metric") == "val_bacc"
        else "accuracy"
    )
    balanced = train.get("class_balance")
    sampling = "class-balanced source sampling" if balanced else "no class balancing"
    note = f"Selection: best source-validation {metric} in the last 30 % of epochs ({sampling})"
    own = [
        arm
        for arm, spec in (cfg.get("arms") or {}).items()
        if {"select_metric", "class_balance"} & set((spec or {}).get("train") or {})
    ]
    return note + (f"; arms {', '.join(own)} set their own in the config" if own else "")


def markdown(
    summary: dict[str, Any],
    data: dict[str, Any],
    run_info: dict[str, Any],
    selection: str = "Selection: best source-validation accuracy in the last 30 % of epochs",
) -> str:
    lines = ["# Domain-shift benchmark: layer-wise adaptation against the usual baselines", ""]
    lines += _headline(summary)
    lines += ["", "## How it was run", ""]
    for key in ("command", "commit", "load", "cores", "elapsed", "config", "note"):
        if key in run_info:
            lines.append(f"- **{key}**: `{run_info[key]}`")
    lines += [
        "",
        "BACH = BACH Part B score (1 is perfect), mean ± std over seeds of the per-seed mean "
        "over test slides; n = seeds. Δ = paired difference (by seed and test slide) with a "
        "two-way (seeds × slides) percentile bootstrap 95 % CI; * = CI excludes 0. Mean "
        "recall = per slide, the mean over the classes in its truth of the share of their "
        "pixels labelled right (balanced pixel accuracy; a class never predicted costs its "
        f"full share, unlike in BACH). {selection}; "
        "'DEV' = the label-free rule (Deep Embedded Validation on unlabelled target tiles).",
    ]
    for domain, table in summary["domains"].items():
        det = summary["details"][domain]
        lines += ["", f"## Target domain `{domain}`", ""]
        lines.append(
            "| arm | n | BACH | pixel acc. | mean recall | Dice normal | Dice benign | "
            "Dice in situ | Dice invasive | Δ vs none [95 % CI] | Δ vs ldann [95 % CI] | "
            "BACH (DEV) | Δ DEV − source-val |"
        )
        lines.append("|" + "---|" * 13)
        for arm, row in table.items():
            d = det["arms"][arm]
            vs_none, vs_ldann, dev = d["_diffs"]
            lines.append(
                f"| {arm} | {row['n']} | {_fmt(row['bach_mean'])} ± {_fmt(row['bach_std'])} | "
                f"{_fmt(d['accuracy_mean'])} | {_fmt(d['mean_recall'])} | "
                + " | ".join(_fmt(d["dice"][c], 2) for c in CLASSES)
                + f" | {_fmt_diff(vs_none)} | {_fmt_diff(vs_ldann)} | "
                f"{_fmt(d['label_free_selection']['bach_mean'])} | {_fmt_diff(dev)} |"
            )
        for name, b in det["bounds"].items():
            lines.append(
                f"| *{name}* | {b['n']} | {_fmt(b['bach_mean'])} ± {_fmt(b['bach_std'])} | "
                f"{_fmt(b['accuracy_mean'])} | {_fmt(b['mean_recall'])} | "
                + " | ".join(_fmt(b["dice"][c], 2) for c in CLASSES)
                + " | | | | |"
            )
        taps = sorted({t for d in det["arms"].values() for t in d["alignment_pad"]}, key=_tap_key)
        if taps:
            lines += [
                "",
                "Per-layer alignment: proxy A-distance (0 = source and target features "
                "indistinguishable, 2 = separable) between source-validation and unlabelled "
                "target tiles at the selected epoch, mean over seeds. `none` is the "
                "before-adaptation reference.",
                "",
                "| layer | " + " | ".join(det["arms"]) + " |",
                "|---|" + "---|" * len(det["arms"]),
            ]
            for tap in taps:
                lines.append(
                    f"| {tap} | "
                    + " | ".join(_fmt(d["alignment_pad"].get(tap), 2) for d in det["arms"].values())
                    + " |"
                )
        mixes = {a: d["lesion_prediction_mix"] for a, d in det["arms"].items()}
        if any(mixes.values()):
            lines += [
                "",
                "What the models call lesion tissue (fraction of truly non-normal pixels "
                "predicted as each class, mean over seeds and slides): a column near 1 is a "
                "collapsed classifier.",
                "",
                "| arm | " + " | ".join(CLASSES) + " |",
                "|---|" + "---|" * len(CLASSES),
            ]
            for arm, mix in mixes.items():
                lines.append(
                    f"| {arm} | " + " | ".join(_fmt(mix.get(c), 2) for c in CLASSES) + " |"
                )
        heads = _domain_head_table(data["domains"][domain]["arms"])
        if heads:
            lines += [
                "",
                "Domain-head accuracy per layer (last epoch, mean over seeds; 0.5 = "
                "the head cannot tell the domains apart):",
                "",
                *heads,
            ]
    lines += ["", "![benchmark figure](shift.png)", ""]
    return "\n".join(lines)


def _tap_key(tap: str) -> tuple:
    return (
        tap == "global_pool",
        [int(p) if p.isdigit() else p for p in tap.replace("layer", "").split(".")],
    )


def _domain_head_table(arms: dict[str, ArmRuns]) -> list[str]:
    rows = {}
    for name, runs in arms.items():
        values: dict[str, list[float]] = {}
        for records in runs.training.values():
            if records:
                for key, value in records[-1].items():
                    if key.startswith("domain_acc/"):
                        values.setdefault(key[len("domain_acc/") :], []).append(float(value))
        if values:
            rows[name] = {k: statistics.fmean(v) for k, v in values.items()}
    if not rows:
        return []
    taps = sorted({t for r in rows.values() for t in r}, key=_tap_key)
    out = ["| arm | " + " | ".join(taps) + " |", "|---|" + "---|" * len(taps)]
    for name, r in rows.items():
        out.append(f"| {name} | " + " | ".join(_fmt(r.get(t), 2) for t in taps) + " |")
    return out


def _headline(summary: dict[str, Any]) -> list[str]:
    parts = []
    for domain, table in summary["domains"].items():
        if "ldann" not in table or "none" not in table:
            continue
        d = table["ldann"]["diff_vs_none"]
        if d is None or d["mean"] is None:
            continue
        best_baseline = (
            max(
                (table[a]["bach_mean"], a)
                for a in ("stain-norm", "stain-aug")
                if a in table and table[a]["bach_mean"] is not None
            )
            if any(a in table for a in ("stain-norm", "stain-aug"))
            else None
        )
        text = (
            f"on `{domain}` L-DANN vs none: {d['mean']:+.3f} BACH "
            f"[95 % CI {d['ci_low']:+.3f}, {d['ci_high']:+.3f}] (n = {table['ldann']['n']} seeds)"
        )
        if best_baseline is not None:
            text += (
                f"; L-DANN {table['ldann']['bach_mean']:.3f} vs best stain baseline "
                f"{best_baseline[1]} {best_baseline[0]:.3f}"
            )
        parts.append(text)
    if not parts:
        return ["**Headline:** no L-DANN / none pair has finished yet."]
    return ["**Headline:** " + "; ".join(parts) + "."]


def headline(summary: dict[str, Any]) -> str:
    return _headline(summary)[0]


def figure(summary: dict[str, Any], data: dict[str, Any], out_png: Path) -> Path:
    """Per domain: BACH per arm with bounds, PAD per layer, and training curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(summary["domains"])
    fig, axes = plt.subplots(
        max(1, len(domains)), 3, figsize=(16, 4 * max(1, len(domains))), squeeze=False
    )
    for row, domain in enumerate(domains):
        table, det = summary["domains"][domain], summary["details"][domain]
        ax = axes[row][0]
        names = list(table)
        ax.errorbar(
            range(len(names)),
            [table[a]["bach_mean"] or math.nan for a in names],
            yerr=[table[a]["bach_std"] or 0 for a in names],
            fmt="o",
            capsize=3,
        )
        for i, (name, b) in enumerate(det["bounds"].items()):
            if b["bach_mean"] is not None:
                ax.axhline(b["bach_mean"], ls="--", lw=0.8, color=f"C{i + 1}", label=name)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("BACH score")
        ax.set_title(f"{domain}: BACH (mean ± std over seeds)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax = axes[row][1]
        taps = sorted({t for d in det["arms"].values() for t in d["alignment_pad"]}, key=_tap_key)
        for arm, d in det["arms"].items():
            if d["alignment_pad"]:
                ax.plot(
                    range(len(taps)),
                    [d["alignment_pad"].get(t) or math.nan for t in taps],
                    marker="o",
                    label=arm,
                )
        ax.set_xticks(range(len(taps)), taps, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 2.05)
        ax.set_ylabel("proxy A-distance")
        ax.set_title("per-layer alignment at the selected epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax = axes[row][2]
        for i, (arm, runs) in enumerate(data["domains"][domain]["arms"].items()):
            curves = [r for r in runs.training.values() if r]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            for key, ls in (("val_acc", "-"), ("target_acc", ":")):
                ys = [statistics.fmean(c[e].get(key, math.nan) for c in curves) for e in range(n)]
                ax.plot(
                    range(1, n + 1),
                    ys,
                    ls,
                    color=f"C{i}",
                    label=f"{arm} {key}" if key == "val_acc" else None,
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel("tile accuracy (— source val, ··· target)")
        ax.set_title("training curves (mean over seeds)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def build(
    out: Path,
    cfg: dict[str, Any],
    out_md: Path,
    run_info: dict[str, Any] | None = None,
    n_boot: int = 10_000,
) -> dict[str, Any]:
    """Write ``out_md``, the JSON beside it (``.json``) and the figure (``.png``)."""
    run_info = run_info or {}
    data = collect(Path(out), cfg)
    summary = summarise(data, n_boot=n_boot)
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    figure(summary, data, out_md.with_suffix(".png"))
    out_md.write_text(markdown(summary, data, run_info, selection_note(cfg)))
    for det in summary["details"].values():
        for d in det["arms"].values():
            d.pop("_diffs", None)
    payload = {
        "domains": summary["domains"],
        "details": summary["details"],
        "headline": headline(summary),
        "run": run_info,
    }
    write_json(out_md.with_suffix(".json"), payload)
    return payload
