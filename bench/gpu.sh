#!/usr/bin/env bash
# One benchmark run for a machine with a GPU (see bench/gpu_bench.py): CUDA tests, stain
# normalisation tiles/s, training img/s against timm, segmentation throughput. ~7.5 minutes.
#
#   bench/gpu.sh OUT_DIR            # on a CUDA machine
#   bench/gpu.sh OUT_DIR --tiny     # CPU smoke run at toy sizes, GPU-only parts skipped
#
# Writes OUT_DIR/gpu_bench.json and OUT_DIR/gpu_bench.md (plus one log per part).
# PYTHON picks the interpreter (default: the repository's .venv, else python3).
set -euo pipefail
if [[ $# -lt 1 || "$1" == -* ]]; then
    echo "usage: bench/gpu.sh OUT_DIR [--tiny]" >&2
    exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$1"
shift
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" "$repo/bench/gpu_bench.py" --out "$out" "$@"
