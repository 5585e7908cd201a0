// MindFusion's trained FC nets (shortcut projection, representation codec) on ggml's CPU
// backend, with the collab_fcnet_* C API. Weights live in one ggml context for the net's
// lifetime; each apply builds a small graph in a scratch context, in blocks of rows so the
// scratch memory stays bounded whatever n_rows is.
#include <ggml-cpu.h>
#include <ggml.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

#include "common/c_api_checks.hpp"
#include "common/errors.hpp"
#include "llm/fcnet_format.hpp"

using namespace collab;

struct collab_fcnet {
  collab_fcnet_info info{};
  ggml_context* weights = nullptr;
  ggml_tensor* w[4]{};  // ggml layout: ne0 = in, ne1 = out (the file's row-major (out, in))
  ggml_tensor* b[4]{};
  ~collab_fcnet() {
    if (weights) ggml_free(weights);
  }
};

namespace {

constexpr size_t kBlockRows = 256;

// kind is an expectation: ANY, SHORTCUT or CODEC; other values are refused by name.
void require_kind(collab_fcnet_kind kind) {
  COLLAB_ARG_CHECK(kind >= COLLAB_FCNET_ANY && kind <= COLLAB_FCNET_CODEC, "kind %d is not a collab_fcnet_kind",
                   int(kind));
}

collab_fcnet* build(fcnet::Parsed&& p) {
  size_t bytes = 8 * ggml_tensor_overhead() + 1024;
  for (const auto& t : p.tensors) bytes += t.data.size() * sizeof(float) + 64;
  ggml_init_params ip{bytes, nullptr, false};
  auto net = std::make_unique<collab_fcnet>();
  net->info = p.info;
  net->weights = ggml_init(ip);
  if (!net->weights) fail(COLLAB_ERR_OUT_OF_MEMORY, "ggml_init failed for %zu bytes of weights", bytes);
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    const auto& t = p.tensors[i];
    ggml_tensor* g = t.shape.size() == 2 ? ggml_new_tensor_2d(net->weights, GGML_TYPE_F32, t.shape[1], t.shape[0])
                                         : ggml_new_tensor_1d(net->weights, GGML_TYPE_F32, t.shape[0]);
    std::memcpy(g->data, t.data.data(), t.data.size() * sizeof(float));
    (i % 2 == 0 ? net->w : net->b)[i / 2] = g;
  }
  return net.release();
}

// GELU, tanh form, from exact f32 primitives (ggml_gelu may use an f16 lookup table).
ggml_tensor* gelu(ggml_context* c, ggml_tensor* x) {
  ggml_tensor* x3 = ggml_mul(c, ggml_sqr(c, x), x);
  ggml_tensor* t = ggml_tanh(c, ggml_scale(c, ggml_add(c, x, ggml_scale(c, x3, 0.044715f)), 0.7978845608028654f));
  return ggml_scale(c, ggml_add(c, x, ggml_mul(c, x, t)), 0.5f);
}

ggml_tensor* fc(ggml_context* c, ggml_tensor* w, ggml_tensor* b, ggml_tensor* x) {
  return ggml_add(c, ggml_mul_mat(c, w, x), b);
}

void run_block(collab_fcnet* net, int op, const float* in, size_t n, float* out, int n_threads) {
  const int64_t d = net->info.n_embd, k = net->info.code_dim;
  const int64_t in_dim = op == COLLAB_FCNET_DECODE ? k : d;
  const int64_t out_dim = op == COLLAB_FCNET_ENCODE ? k : d;
  const int64_t widest = net->info.kind == COLLAB_FCNET_SHORTCUT ? 4 * d : d;
  const size_t mem = 128 * ggml_tensor_overhead() + ggml_graph_overhead() +
                     static_cast<size_t>(n) * static_cast<size_t>(widest) * sizeof(float) * 40 + (1u << 16);
  ggml_init_params ip{mem, nullptr, false};
  ggml_context* c = ggml_init(ip);
  if (!c) fail(COLLAB_ERR_OUT_OF_MEMORY, "ggml_init failed for %zu bytes", mem);
  struct Free {
    ggml_context* c;
    ~Free() { ggml_free(c); }
  } guard{c};
  ggml_tensor* x = ggml_new_tensor_2d(c, GGML_TYPE_F32, in_dim, static_cast<int64_t>(n));
  std::memcpy(x->data, in, n * in_dim * sizeof(float));
  ggml_tensor* h = x;
  int lo = 0, hi = 4;
  if (op == COLLAB_FCNET_ENCODE) hi = 2;
  if (op == COLLAB_FCNET_DECODE) lo = 2;
  for (int i = lo; i < hi; ++i) {
    h = fc(c, net->w[i], net->b[i], h);
    if (i < hi - 1) h = gelu(c, h);
  }
  if (op == COLLAB_FCNET_PROJECT) h = ggml_add(c, x, h);  // skip connection
  ggml_cgraph* gf = ggml_new_graph(c);
  ggml_build_forward_expand(gf, h);
  if (ggml_graph_compute_with_ctx(c, gf, std::max(1, n_threads)) != GGML_STATUS_SUCCESS)
    fail(COLLAB_ERR_INTERNAL, "ggml graph compute failed");
  std::memcpy(out, h->data, n * out_dim * sizeof(float));
}

}  // namespace

extern "C" {

collab_status collab_fcnet_load(const void* buf, size_t len, collab_fcnet_kind kind, int32_t n_embd,
                                const uint8_t* model_digest, collab_fcnet** net) {
  return guarded([&] {
    if (net) *net = nullptr;
    require_non_null({{net, "net"}});
    require_kind(kind);
    *net = build(fcnet::parse(static_cast<const uint8_t*>(buf), len, kind, n_embd, model_digest));
  });
}

collab_status collab_fcnet_load_file(const char* path, collab_fcnet_kind kind, int32_t n_embd,
                                     const uint8_t* model_digest, collab_fcnet** net) {
  return guarded([&] {
    if (net) *net = nullptr;
    require_non_null({{path, "path"}, {net, "net"}});
    require_kind(kind);
    std::ifstream f(path, std::ios::binary);
    COLLAB_ARG_CHECK(f.good(), "cannot open net file %s", path);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<size_t>(f.tellg());
    COLLAB_FRAME_CHECK(size <= (size_t{1} << 31), "net file %s is too large (%zu bytes)", path, size);
    f.seekg(0);
    std::vector<uint8_t> data(size);
    f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size));
    COLLAB_ARG_CHECK(f.good() || size == 0, "cannot read net file %s", path);
    *net = build(fcnet::parse(data.data(), data.size(), kind, n_embd, model_digest));
  });
}

void collab_fcnet_free(collab_fcnet* net) { delete net; }

collab_status collab_fcnet_info_get(const collab_fcnet* net, collab_fcnet_info* info) {
  return guarded([&] {
    require_non_null({{net, "net"}, {info, "info"}});
    *info = net->info;
  });
}

collab_status collab_fcnet_apply(collab_fcnet* net, collab_fcnet_op op, const float* in, size_t n_rows, float* out,
                                 size_t out_len, int32_t n_threads) {
  return guarded([&] {
    require_non_null({{net, "net"}, {in, "in"}, {out, "out"}});
    const bool shortcut = net->info.kind == COLLAB_FCNET_SHORTCUT;
    COLLAB_ARG_CHECK(shortcut ? op == COLLAB_FCNET_PROJECT : (op == COLLAB_FCNET_ENCODE || op == COLLAB_FCNET_DECODE),
                     "op %d does not apply to a %s net", int(op), shortcut ? "shortcut" : "codec");
    COLLAB_ARG_CHECK(n_rows > 0 && n_rows <= (size_t{1} << 24), "n_rows %zu out of range", n_rows);
    COLLAB_ARG_CHECK(n_threads >= 0 && n_threads <= 512, "n_threads %d out of range", n_threads);
    const size_t d = net->info.n_embd, k = net->info.code_dim;
    const size_t in_dim = op == COLLAB_FCNET_DECODE ? k : d, out_dim = op == COLLAB_FCNET_ENCODE ? k : d;
    if (out_len < n_rows * out_dim)
      fail(COLLAB_ERR_BUFFER_TOO_SMALL, "needs %zu floats, buffer has %zu", n_rows * out_dim, out_len);
    for (size_t i = 0; i < n_rows * in_dim; ++i)
      if (!std::isfinite(in[i])) fail(COLLAB_ERR_NONFINITE_INPUT, "input holds NaN/Inf at %zu", i);
    for (size_t r = 0; r < n_rows; r += kBlockRows) {
      const size_t n = std::min(kBlockRows, n_rows - r);
      run_block(net, op, in + r * in_dim, n, out + r * out_dim, n_threads);
    }
  });
}

}  // extern "C"
