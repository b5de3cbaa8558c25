#!/usr/bin/env bash
# `make demo`: the synthetic experiment end to end on the CPU (slides -> tiles -> train
# none and ldann, 2 seeds each -> segment -> score -> report), then the results table, the
# paired L-DANN - none difference with its bootstrap CI, and where to look.
set -euo pipefail
out="${1:-demo-out}"
cores="${DEMO_CORES:-2}"
cd "$(dirname "$0")/.."
start=$(date +%s)
snakemake -s pipelines/Snakefile --configfile configs/synthetic.yaml --config out="$out" \
    --cores "$cores" --quiet rules progress
pathda report "$out" --out "$out/report.md" --title "pathda demo: lab-a -> lab-b (synthetic)"
echo
echo "Paired difference over seeds and test slides (noise shows as a CI that includes 0):"
pathda benchmark paired "$out" --arm ldann --baseline none
echo
echo "Finished in $(( $(date +%s) - start )) s."
echo "Report:         $out/report.md (and report.html)"
echo "QuPath files:   $out/<method>/seed0/segment/<slide>/  (*.geojson: File > Import objects;"
echo "                *.mask.ome.tif: open as an overlay image; see README 'Opening results in QuPath')"
echo "Test slides:    $out/slides/test/*.tiff"
