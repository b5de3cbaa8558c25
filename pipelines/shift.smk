# The domain-shift benchmark (configs/shift.yaml; `make shift`):
#   synth -> tile (one store, every domain) -> stain fit (per target) -> train
#   (target domain x arm x seed, plus bounds) -> segment -> score -> benchmark report.
#
#   snakemake -s pipelines/shift.smk --configfile configs/shift.yaml --cores 2
#
# A sibling of pipelines/Snakefile (same CLI calls, same resume-by-missing-outputs), kept
# separate because its layout has a target-domain level: RUNS/<domain>/<arm>/seed<k>/.
import csv
import re
import sys
from pathlib import Path

from pathda.benchmark.collect import in_domain_dir  # the results layout the report reads

CFG_FILE = workflow.configfiles[-1] if workflow.configfiles else "configs/shift.yaml"
OUT = config["out"]
SEEDS = [str(s) for s in config["seeds"]]
SYN = config["synthetic"]
SOURCE = config["source_domain"]
DOMAINS = list(config["target_domains"])
ARMS = dict(config["arms"])
# An arm: method + input handling, and optionally `train:` overrides of the train section
# (for ablations, e.g. `ldann-w1: {method: ldann, train: {layer_weight: 1.0}}`).
ARM_KEYS = {"method", "stain_norm", "stain_jitter", "train"}
for _name, _arm in ARMS.items():
    _unknown = set(_arm) - ARM_KEYS
    if _unknown or "method" not in _arm:
        raise ValueError(
            f"{CFG_FILE}: arm {_name!r}: keys must be 'method' plus any of "
            f"{sorted(ARM_KEYS - {'method'})}; got {sorted(_arm)}"
        )
BOUNDS = list(config.get("bounds", []))
RULES = [b for b in BOUNDS if b.startswith("all-")]


def known_arms(key, names):
    """``names`` (a config list of arm names) after checking that every one is an arm."""
    unknown = sorted(set(names) - set(ARMS))
    if unknown:
        raise ValueError(f"{CFG_FILE}: {key} names arms that are not in arms: {unknown}")
    return list(names)


# With the in-domain bound: the arms whose model (trained for the first target domain) is also
# scored on the source test slides; `none` is the source model, in RUNS/in-domain/.
IN_DOMAIN_ARMS = (
    known_arms("in_domain_arms", config.get("in_domain_arms", ["none"]))
    if "in-domain" in BOUNDS
    else []
)
IN_DOMAIN_ARM_OF = {in_domain_dir(a): a for a in IN_DOMAIN_ARMS}
# Arms whose label-free (DEV) checkpoint is segmented and scored too: true (every arm),
# false (none) or a list of arm names.
_LABEL_FREE = config.get("score_label_free_selection", True)
LABEL_FREE_ARMS = known_arms(
    "score_label_free_selection", list(ARMS) if _LABEL_FREE is True else (_LABEL_FREE or [])
)


def selections(arm):
    return ["", "_dev"] if arm in LABEL_FREE_ARMS else [""]


PATHDA = f"{sys.executable} -m pathda"
RUNS = f"{OUT}/runs"

# Per-rule scheduling defaults, overridden by the config's `resources:` (pipelines/resources.smk).
RESOURCES = {
    "synth": {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0},
    "tile": {"threads": 4, "mem_mb": 8000, "runtime": 240, "gpu": 0},
    "stain_fit": {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
    "train": {"threads": 4, "mem_mb": 16000, "runtime": 1440, "gpu": 0},
    "segment": {"threads": 4, "mem_mb": 8000, "runtime": 240, "gpu": 0},
    "score": {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
}
include: "resources.smk"

# Bookkeeping too small to be worth a cluster job.
localrules: all, manifest, arm_config, report

# Slide sets: (folder, domain, synth seed, count). Target test slides reuse the source test
# seed: the same tissue through another lab's stain and scanner.
SETS = {
    "source/train": (SOURCE, 0, SYN["n_train"]),
    "source/val": (SOURCE, 100, SYN["n_val"]),
    "source/test": (SOURCE, 300, SYN["n_source_test"]),
    **{f"{d}/target": (d, 200, SYN["n_target"]) for d in DOMAINS},
    **{f"{d}/test": (d, 300, SYN["n_test"]) for d in DOMAINS},
}

wildcard_constraints:
    domain="|".join(re.escape(d) for d in DOMAINS),
    arm="|".join(re.escape(a) for a in [*ARMS, "oracle"]),
    seed=r"\d+",
    sel="|_dev",
    rule_name="|".join(re.escape(r) for r in RULES) or "none^",
    in_dir="|".join(re.escape(d) for d in IN_DOMAIN_ARM_OF) or "none^",


def slides(name):
    domain, seed, n = SETS[name]
    return [f"{OUT}/slides/{name}/{name.split('/')[1]}_{i:02d}.tiff" for i in range(n)]


def truths(name):
    return " ".join(f"--truth {Path(s).with_suffix('.xml')}" for s in slides(name))


def _abs(path):
    return str(Path(path).resolve())


def arm_runs():
    runs = [f"{RUNS}/{d}/{a}/seed{s}/score{sel}/scores.json"
            for d in DOMAINS for a in ARMS for s in SEEDS for sel in selections(a)]
    if "oracle" in BOUNDS:
        runs += [f"{RUNS}/{d}/oracle/seed{s}/score/scores.json" for d in DOMAINS for s in SEEDS]
    runs += [f"{RUNS}/{d}/seed{s}/score/scores.json" for d in IN_DOMAIN_ARM_OF for s in SEEDS]
    runs += [f"{RUNS}/{d}/{r}/score/scores.json" for d in DOMAINS for r in RULES]
    return runs


rule all:
    input: f"{OUT}/shift.md"


rule synth:
    output: f"{OUT}/slides/{{group}}/{{split}}/.done"
    params:
        domain=lambda w: SETS[f"{w.group}/{w.split}"][0],
        seed=lambda w: SETS[f"{w.group}/{w.split}"][1],
        n=lambda w: SETS[f"{w.group}/{w.split}"][2],
    threads: threads_of("synth")
    resources: **resources_of("synth")
    shell:
        "{PATHDA} synth {OUT}/slides/{wildcards.group}/{wildcards.split} --prefix {wildcards.split}"
        " --n {params.n} --domain {params.domain} --size {SYN[size]} --slide-mpp {SYN[mpp]}"
        " --seed {params.seed} --quiet && touch {output}"


rule manifest:
    # Training slides only: source train/val and each target's training slides. Target
    # slides carry their annotation for the oracle; the arms never read those labels.
    input: [f"{OUT}/slides/{name}/.done" for name in SETS if not name.endswith("/test")]
    output: f"{OUT}/manifest.csv"
    run:
        rows = [("slide", "annotation", "domain", "split")]
        for name, (domain, _, _) in SETS.items():
            if name.endswith("/test"):
                continue
            split = "val" if name == "source/val" else "train"
            for slide in slides(name):
                rows.append((_abs(slide), _abs(Path(slide).with_suffix(".xml")), domain, split))
        with open(output[0], "w", newline="") as fh:
            csv.writer(fh).writerows(rows)


rule tile:
    input: f"{OUT}/manifest.csv"
    output: f"{OUT}/tiles.done"
    threads: threads_of("tile")
    resources: **resources_of("tile")
    shell:
        "{PATHDA} tile --manifest {input} --out {OUT}/tiles.zarr --config {CFG_FILE}"
        " --workers {threads} --quiet && touch {output}"


rule stain_fit:
    # Macenko reference: the first unlabelled training slide of the target domain.
    input: f"{OUT}/slides/{{domain}}/target/.done"
    output: f"{OUT}/stain/{{domain}}.json"
    params: ref=lambda w: slides(f"{w.domain}/target")[0]
    threads: threads_of("stain_fit")
    resources: **resources_of("stain_fit")
    shell: "{PATHDA} stain fit {params.ref} --method macenko --out {output} --quiet"


def train_flags(w):
    if w.arm == "oracle":  # target-supervised: the target's labelled training slides join
        return f"--method none --source-domain {SOURCE} --source-domain {w.domain}"
    arm = ARMS[w.arm]
    flags = [f"--method {arm['method']}", f"--source-domain {SOURCE}", f"--target-domain {w.domain}"]
    if arm.get("stain_jitter"):
        flags.append(f"--stain-jitter {arm['stain_jitter']}")
    if arm.get("stain_norm"):
        flags.append(f"--stain-params {OUT}/stain/{w.domain}.json")
    return " ".join(flags)


def train_inputs(w):
    needs = [f"{OUT}/tiles.done"]
    if w.arm in ARMS and ARMS[w.arm].get("stain_norm"):
        needs.append(f"{OUT}/stain/{w.domain}.json")
    return needs


def arm_config(w):
    """The arm's own config file when it overrides the train section (else [])."""
    if w.arm in ARMS and ARMS[w.arm].get("train"):
        return [f"{OUT}/arms/{w.arm}.yaml"]
    return []


rule arm_config:
    # The workflow's config with the arm's `train:` overrides merged in (also its record).
    # The params make a changed override or train section rewrite it (and retrain the arm).
    output: f"{OUT}/arms/{{arm}}.yaml"
    params: train=lambda w: config.get("train", {}), overrides=lambda w: ARMS[w.arm]["train"]
    run:
        import yaml

        merged = {**config, "train": {**params.train, **params.overrides}}
        Path(output[0]).write_text(yaml.safe_dump(merged, sort_keys=False))


rule train:
    input: train_inputs, arm_config
    output: f"{RUNS}/{{domain}}/{{arm}}/seed{{seed}}/train/model.pt"
    params: flags=train_flags, config=lambda w: (arm_config(w) or [CFG_FILE])[0]
    threads: threads_of("train")
    resources: **resources_of("train")
    shell:
        "OMP_NUM_THREADS={threads} {PATHDA} train {OUT}/tiles.zarr --out {RUNS}/{wildcards.domain}/{wildcards.arm}/seed{wildcards.seed}/train"
        " --config {params.config} {params.flags} --seed {wildcards.seed} --quiet"


def checkpoint(w):
    name = "model_dev.pt" if w.sel == "_dev" else "model.pt"
    return f"{RUNS}/{w.domain}/{w.arm}/seed{w.seed}/train/{name}"


rule segment:
    # model_dev.pt is written by the same training run as model.pt.
    input:
        model=f"{RUNS}/{{domain}}/{{arm}}/seed{{seed}}/train/model.pt",
        ready=f"{OUT}/slides/{{domain}}/test/.done",
    output: f"{RUNS}/{{domain}}/{{arm}}/seed{{seed}}/segment{{sel}}/.done"
    params: model=checkpoint, slides=lambda w: " ".join(slides(f"{w.domain}/test"))
    threads: threads_of("segment")
    resources: **resources_of("segment")
    shell:
        "OMP_NUM_THREADS={threads} {PATHDA} segment {params.slides} --model {params.model} --config {CFG_FILE}"
        " --out {RUNS}/{wildcards.domain}/{wildcards.arm}/seed{wildcards.seed}/segment{wildcards.sel}"
        " --quiet && touch {output}"


rule score:
    input:
        seg=f"{RUNS}/{{domain}}/{{arm}}/seed{{seed}}/segment{{sel}}/.done",
    output: f"{RUNS}/{{domain}}/{{arm}}/seed{{seed}}/score{{sel}}/scores.json"
    params:
        downsample=config.get("score", {}).get("downsample", 16),
        truth=lambda w: truths(f"{w.domain}/test"),
    threads: threads_of("score")
    resources: **resources_of("score")
    shell:
        "{PATHDA} score --pred {RUNS}/{wildcards.domain}/{wildcards.arm}/seed{wildcards.seed}/segment{wildcards.sel}"
        " {params.truth} --downsample {params.downsample}"
        " --out {RUNS}/{wildcards.domain}/{wildcards.arm}/seed{wildcards.seed}/score{wildcards.sel}"
        " --quiet > /dev/null"


rule in_domain:
    # An arm's model on the source test slides: for `none` (the source model; its training
    # never saw a target label and model.pt is selected on source validation) the bound.
    input:
        model=lambda w: f"{RUNS}/{DOMAINS[0]}/{IN_DOMAIN_ARM_OF[w.in_dir]}/seed{w.seed}/train/model.pt",
        ready=f"{OUT}/slides/source/test/.done",
    output: f"{RUNS}/{{in_dir}}/seed{{seed}}/score/scores.json"
    params:
        slides=" ".join(slides("source/test")),
        downsample=config.get("score", {}).get("downsample", 16),
        dir=lambda w: f"{RUNS}/{w.in_dir}/seed{w.seed}",
        truth=truths("source/test"),
    threads: threads_of("segment")
    resources: **resources_of("segment")
    shell:
        "OMP_NUM_THREADS={threads} {PATHDA} segment {params.slides} --model {input.model} --config {CFG_FILE}"
        " --out {params.dir}/segment --quiet"
        " && {PATHDA} score --pred {params.dir}/segment {params.truth}"
        " --downsample {params.downsample} --out {params.dir}/score --quiet > /dev/null"


rule classifier_free:
    input: f"{OUT}/slides/{{domain}}/test/.done"
    output: f"{RUNS}/{{domain}}/{{rule_name}}/score/scores.json"
    params: downsample=config.get("score", {}).get("downsample", 16)
    threads: threads_of("score")
    resources: **resources_of("score")
    shell:
        "{PATHDA} benchmark rule {OUT}/slides/{wildcards.domain}/test --rule {wildcards.rule_name}"
        " --downsample {params.downsample} --out {RUNS}/{wildcards.domain}/{wildcards.rule_name}/score"
        " --quiet"


rule report:
    input: arm_runs()
    output: f"{OUT}/shift.md"
    shell: "{PATHDA} benchmark report {OUT} --config {CFG_FILE} --out {output} --quiet"
