#!/usr/bin/env bash
# The main job on an embedded default, on this machine: set up, then run the SLICER codec
# benchmark (native codec vs numpy reference, torch pipeline, fp16 and fp16+zstd).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC1091
source "$ROOT/scripts/setup.sh"
# LLM split generation (issue 4): a server process hosts SmolLM2's tail (gRPC on loopback),
# this process is the device with the head; prints the answer, timing and byte breakdown.
collab llm demo
python "$ROOT/benchmarks/codec_bench.py" --quick "$@"
