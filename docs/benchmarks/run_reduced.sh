#!/usr/bin/env bash
# The reduced benchmark run (configs/shift-reduced.yaml) on a loaded machine: one target
# domain (DOMAIN, default centre-d), complete seeds first, arms in priority order, then the
# bounds, then `pathda benchmark report`. OUT defaults to results/shift-reduced.
set -uo pipefail
cd "${CODE:-$(dirname "$0")/../..}"
export PYTHONPATH=$PWD PATH=/work/main/.venv/bin:$PATH
CFG=configs/shift-reduced.yaml OUT=${OUT:-results/shift-reduced}; R=$OUT/runs
D=${DOMAIN:-centre-d}
sm() { snakemake -s pipelines/shift.smk --configfile $CFG --config out=$OUT --cores 2 --quiet rules --keep-going --rerun-incomplete "$@"; }
echo "start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
for seed in 0 1 2; do
  for arm in none ldann stain-norm stain-aug; do
    sm $R/$D/$arm/seed$seed/score/scores.json $R/$D/$arm/seed$seed/score_dev/scores.json
    echo "done $D $arm seed$seed $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
  sm $R/in-domain/seed$seed/score/scores.json
done
sm $R/$D/all-normal/score/scores.json $R/$D/all-in-situ/score/scores.json
for seed in 0 1 2; do sm $R/$D/oracle/seed$seed/score/scores.json; echo "done oracle seed$seed $(date -u +%T)"; done
echo "end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
python -m pathda benchmark report $OUT --config $CFG --out $OUT/publish/shift.md
