# Per-rule threads and resources (mem_mb, runtime in minutes, gpu), shared by pipelines/Snakefile
# and pipelines/shift.smk. The including workflow sets RESOURCES (its defaults) first; the
# config's `resources: {rule: {threads: .., mem_mb: .., ...}}` overrides any of them. gpu: GPUs
# per job (0 = CPU only; the SLURM executor reads it). With explicit resources any executor
# (local, SLURM, cluster-generic) can schedule the jobs; a local run caps them at --cores.
for _rule, _given in config.get("resources", {}).items():
    if _rule not in RESOURCES:
        raise ValueError(f"resources: unknown rule {_rule!r}; rules: {', '.join(RESOURCES)}")
    unknown = set(_given) - set(RESOURCES[_rule])
    if unknown:
        raise ValueError(f"resources.{_rule}: unknown key(s) {sorted(unknown)}; use {list(RESOURCES[_rule])}")
    RESOURCES[_rule] = {**RESOURCES[_rule], **_given}


def threads_of(rule):
    return int(RESOURCES[rule]["threads"])


def resources_of(rule):
    """mem_mb, runtime (minutes) and gpu (left out when 0) of a rule, as Snakemake `resources:`."""
    given = {k: int(v) for k, v in RESOURCES[rule].items() if k != "threads"}
    return {k: v for k, v in given.items() if k != "gpu" or v > 0}
