#!/usr/bin/env bash
# The main job on an embedded default, on this machine: set up, then run a real split
# generation on loopback: a server process hosting the tail of SmolLM2-135M (layers 15-29),
# this process as the device running the head (layers 0-14), the hidden states crossing over
# gRPC, and the timing and byte breakdown printed (`collab llm demo --help` for options;
# split parts are cached under ~/.cache/collab/llm).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC1091
source "$ROOT/scripts/setup.sh"
collab llm demo "$@"
