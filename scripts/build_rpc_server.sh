#!/usr/bin/env bash
# Build llama.cpp's ggml rpc-server (the RPC baseline of `collab llm bench`) from the very
# llama.cpp sources vendored in the llama-cpp-python sdist collab links against, so client
# and server speak the same RPC protocol. Output: build/llama-rpc/bin/ggml-rpc-server
# (not committed). Idempotent.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
SDIST_DIR=$ROOT/build/llama-sdist
SRC=$SDIST_DIR/llama_cpp_python-$VERSION/vendor/llama.cpp
OUT=$ROOT/build/llama-rpc
if [ -x "$OUT/bin/ggml-rpc-server" ]; then echo "$OUT/bin/ggml-rpc-server"; exit 0; fi
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  mkdir -p "$SDIST_DIR"
  python -m pip download -q --no-deps --no-binary :all: --no-build-isolation "llama-cpp-python==$VERSION" -d "$SDIST_DIR"
  tar xzf "$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz" -C "$SDIST_DIR"
fi
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S "$SRC" -B "$OUT" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DGGML_RPC=ON -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF \
  -DGGML_NATIVE=ON > "$OUT.configure.log" 2>&1 || { tail -30 "$OUT.configure.log"; exit 1; }
cmake --build "$OUT" -j "${JOBS:-2}" --target ggml-rpc-server > "$OUT.build.log" 2>&1 || { tail -30 "$OUT.build.log"; exit 1; }
echo "$OUT/bin/ggml-rpc-server"
