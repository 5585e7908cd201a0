#!/usr/bin/env bash
# The main job on an embedded default, on this machine: set up, then run the SLICER codec
# benchmark (native codec vs numpy reference, torch pipeline, fp16 and fp16+zstd).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC1091
source "$ROOT/scripts/setup.sh"
python "$ROOT/benchmarks/codec_bench.py" --quick "$@"
