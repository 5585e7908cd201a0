#!/usr/bin/env bash
# Run every test of collab on a fresh Debian machine: installs what the tests need (apt,
# pip), builds the package, then runs pytest, the C/C++ tests under ASan+UBSan, a bounded
# libFuzzer run of the frame decoder, and the C++ tests cross-compiled for ARM64 under qemu.
#
#   bash scripts/test.sh            # everything
#   COLLAB_TEST_QUICK=1 bash ...    # pytest only (skips sanitizer, fuzz and ARM64 stages)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${JOBS:-$(nproc)}
log() { printf '\n=== %s ===\n' "$*"; }

# ---- system packages, virtual environment, build ------------------------------------------
COLLAB_VENV=${COLLAB_VENV:-$ROOT/.venv-test}
COLLAB_SETUP=test
export COLLAB_VENV COLLAB_SETUP
# shellcheck disable=SC1091
source "$ROOT/scripts/setup.sh"

# ---- Python tests ------------------------------------------------------------------------
log "pytest"
# Run from a directory without the source tree's python/ on the path: tests import the
# installed package, like users do.
(cd tests && python -m pytest -q -p no:cacheprovider .)

if [ -n "${COLLAB_TEST_QUICK:-}" ]; then exit 0; fi

# ---- C/C++ tests under AddressSanitizer + UndefinedBehaviorSanitizer --------------------
log "C/C++ tests (ASan + UBSan)"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCOLLAB_BUILD_TESTS=ON -DCOLLAB_SANITIZE=ON \
  -DCOLLAB_CUDA=OFF -DCOLLAB_LLAMA=OFF > build/asan-configure.log
cmake --build build/asan -j "$JOBS"
(cd build/asan && ctest --output-on-failure)

# ---- Fuzzing the frame decoder (bounded) -------------------------------------------------
log "libFuzzer: frame decoder"
cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOLLAB_FUZZ=ON -DCOLLAB_CUDA=OFF \
  -DCOLLAB_LLAMA=OFF -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 > build/fuzz-configure.log
cmake --build build/fuzz -j "$JOBS" --target fuzz_decode fuzz_vlm_bytes
mkdir -p build/fuzz/corpus build/fuzz/corpus_vlm
cp tests/fuzz/corpus/* build/fuzz/corpus/
cp tests/fuzz/corpus_vlm/* build/fuzz/corpus_vlm/
./build/fuzz/tests/fuzz/fuzz_decode -max_total_time="${COLLAB_FUZZ_SECONDS:-60}" -rss_limit_mb=2048 \
  -print_final_stats=1 build/fuzz/corpus
log "libFuzzer: the VLM device's image headers and token messages"
./build/fuzz/tests/fuzz/fuzz_vlm_bytes -max_total_time="${COLLAB_FUZZ_VLM_SECONDS:-20}" -rss_limit_mb=2048 \
  -print_final_stats=1 build/fuzz/corpus_vlm

# ---- ARM64 build (NEON kernels) under qemu ---------------------------------------------
log "ARM64 cross build + tests under qemu-aarch64"
cmake -S . -B build/aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake \
  -DCOLLAB_BUILD_TESTS=ON -DCOLLAB_CUDA=OFF -DCOLLAB_LLAMA=OFF > build/aarch64-configure.log
cmake --build build/aarch64 -j "$JOBS"
(cd build/aarch64 && ctest --output-on-failure)
