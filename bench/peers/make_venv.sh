#!/usr/bin/env bash
# The peers' own virtualenv for bench/peers/*.py: peers are never pathda dependencies.
#
#   bench/peers/make_venv.sh [VENV=/tmp/peers-venv] [BASE_PYTHON=.venv/bin/python]
#
# It reuses pathda's environment (torch, numpy, OpenCV, staintools) through a .pth file, so
# every tool runs on the same torch build, and installs the peers on top. TIAToolbox pins an
# older torch/torchvision: it goes in with --no-deps, and only the modules its stain-
# normalisation import chain needs are added (no second torch).
# tiffslide and lazyslide (bench/peers/io_peers.py) install with their dependencies: lazyslide
# and wsidata require torch>=2.0, which pathda's torch satisfies through the .pth, so no second
# torch comes in; their spatialdata stack pins pandas<3 and an older dask inside this venv only
# (pip then lists TIAToolbox's exact pins as conflicts; its patch extraction still works).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${1:-/tmp/peers-venv}"
base="${2:-$repo/.venv/bin/python}"
"$base" -m venv "$venv"
base_site="$("$base" -c 'import site; print(site.getsitepackages()[0])')"
venv_site="$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')"
echo "$base_site" > "$venv_site/zz_pathda_env.pth"  # after the venv's own packages
"$venv/bin/pip" install -q torchstain kornia umap-learn pandas dask SimpleITK defusedxml \
    universal-pathlib transformers
"$venv/bin/pip" install -q --no-deps tiatoolbox torch-staintools
"$venv/bin/pip" install -q tiffslide lazyslide
"$venv/bin/python" -c "import torchstain, torch_staintools.normalizer, tiatoolbox.tools.stainnorm"
"$venv/bin/python" -c "import tiffslide, lazyslide, wsidata, tiatoolbox.tools.patchextraction"
echo "peers venv ready: $venv"
