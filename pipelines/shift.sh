#!/usr/bin/env bash
# `make shift`: the domain-shift benchmark end to end, then the report into docs/benchmarks/.
#   pipelines/shift.sh [CONFIG] [OUT] [PUBLISH_DIR]      (extra snakemake args: SHIFT_ARGS)
# Resumes after an interruption: re-running only redoes what is missing.
set -euo pipefail
config="${1:-configs/shift.yaml}"
out="${2:-results/shift}"
publish="${3:-docs/benchmarks}"
cores="${SHIFT_CORES:-2}"
cd "$(dirname "$0")/.."
py="$(command -v python)"
start=$(date +%s)
mkdir -p "$out"
commit="${SHIFT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +dirty)}"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086
snakemake -s pipelines/shift.smk --configfile "$config" --config out="$out" \
    --cores "$cores" --quiet rules progress ${SHIFT_ARGS:-}
elapsed=$(( $(date +%s) - start ))
"$py" - "$out/run_info.json" <<PYEOF
import json, sys
json.dump({
    "command": "pipelines/shift.sh $config $out $publish (SHIFT_CORES=$cores)",
    "commit": "$commit",
    "load": "start $load_start, end $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average)",
    "cores": $cores,
    "elapsed": "${elapsed} s",
    "config": "$config",
}, open(sys.argv[1], "w"), indent=2)
PYEOF
pathda benchmark report "$out" --config "$config" --out "$publish/shift.md"
echo "Finished in ${elapsed} s. Report: $publish/shift.md (.json, .png)"
