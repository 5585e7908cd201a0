#include "llm/wire.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/crc32.hpp"
#include "common/dtype.hpp"
#include "common/errors.hpp"

namespace collab::wire {

namespace {

// Little-endian appends, whatever the host's byte order.
struct Out {
  std::vector<uint8_t> b;
  void u8(uint8_t v) { b.push_back(v); }
  void u16(uint16_t v) { for (int i = 0; i < 2; ++i) b.push_back(uint8_t(v >> (8 * i))); }
  void u32(uint32_t v) { for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i))); }
  void u64(uint64_t v) { for (int i = 0; i < 8; ++i) b.push_back(uint8_t(v >> (8 * i))); }
  void f32(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u32(u);
  }
  void f32s(const float* p, size_t n) {
    for (size_t i = 0; i < n; ++i) f32(p[i]);
  }
  void bytes(const char* p, size_t n) { b.insert(b.end(), p, p + n); }
};

void check_rows(size_t n_rows, uint32_t n_embd) {
  COLLAB_ARG_CHECK(n_rows >= 1 && n_rows <= (1u << 20), "%zu rows: must be 1..2^20", n_rows);
  COLLAB_ARG_CHECK(n_embd >= 1 && n_embd <= (1u << 16), "row width %u out of range", n_embd);
}

}  // namespace

std::vector<uint8_t> rows_f32(const float* rows, size_t n_rows, uint32_t n_embd) {
  check_rows(n_rows, n_embd);
  const size_t n = n_rows * n_embd;
  Out o;
  o.b.reserve(18 + 4 * n);
  o.bytes("CLHR", 4);
  o.u8(1);  // version
  o.u8(1);  // one segment
  o.u32(n_embd);
  o.u8(0);  // kind: raw float32
  o.u32(uint32_t(n_rows));
  o.u32(uint32_t(4 * n));
  o.f32s(rows, n);
  return o.b;
}

std::vector<uint8_t> fc_rows(const float* rows, size_t n_rows, uint32_t n_embd, size_t lo, size_t hi,
                             const float* codes, uint32_t code_dim, int code_dtype) {
  check_rows(n_rows, n_embd);
  COLLAB_ARG_CHECK(lo <= hi && hi <= n_rows, "coded span [%zu, %zu) outside %zu rows", lo, hi, n_rows);
  COLLAB_ARG_CHECK(code_dim >= 1 && code_dim <= n_embd, "code size %u out of range", code_dim);
  COLLAB_ARG_CHECK(code_dtype >= 0 && code_dtype <= 2, "code dtype %d unknown", code_dtype);
  const size_t m = hi - lo;
  Out o;
  o.b.reserve(32 + 4 * n_rows * n_embd);
  o.bytes("CLFC", 4);
  o.u8(1);
  o.u8(uint8_t(code_dtype));
  o.u16(0);
  o.u32(n_embd);
  o.u32(code_dim);
  o.u32(uint32_t(n_rows));
  o.u32(uint32_t(lo));
  o.u32(uint32_t(hi));
  o.f32s(rows, lo * n_embd);
  if (code_dtype == 0) {
    o.f32s(codes, m * code_dim);
  } else if (code_dtype == 1) {
    for (size_t i = 0; i < m * code_dim; ++i) o.u16(f32_to_f16(std::min(65504.0f, std::max(-65504.0f, codes[i]))));
  } else {
    std::vector<float> scale(m);
    for (size_t r = 0; r < m; ++r) {
      float mx = 0.0f;
      for (size_t j = 0; j < code_dim; ++j) mx = std::max(mx, std::fabs(codes[r * code_dim + j]));
      scale[r] = mx / 127.0f;
      if (scale[r] == 0.0f) scale[r] = 1.0f;
      o.f32(scale[r]);
    }
    for (size_t r = 0; r < m; ++r)
      for (size_t j = 0; j < code_dim; ++j) {
        // nearbyint: round half to even under the default rounding mode, as numpy's rint
        const float q = std::nearbyint(codes[r * code_dim + j] / scale[r]);
        o.u8(uint8_t(int8_t(std::min(127.0f, std::max(-127.0f, q)))));
      }
  }
  o.f32s(rows + hi * n_embd, (n_rows - hi) * n_embd);
  o.u32(crc32(o.b.data(), o.b.size()));
  return o.b;
}

std::vector<uint8_t> state_frame(const uint8_t* state, size_t len, uint32_t n_layer, uint32_t n_embd,
                                 uint32_t n_past) {
  COLLAB_ARG_CHECK(state != nullptr && len > 0, "empty KV state");
  Out o;
  o.b.reserve(36 + len);
  o.bytes("CLKV", 4);
  o.u8(1);  // version
  for (int i = 0; i < 3; ++i) o.u8(0);  // pad
  o.u32(n_layer);
  o.u32(n_embd);
  o.u32(n_past);
  o.u64(len);
  o.u32(crc32(state, len));
  o.b.insert(o.b.end(), state, state + len);
  return o.b;
}

std::vector<int32_t> parse_tokens(const uint8_t* payload, size_t len, int32_t n_vocab, size_t max_tokens) {
  COLLAB_FRAME_CHECK(payload != nullptr && len > 0 && len % 4 == 0 && len / 4 <= max_tokens,
                     "token payload of %zu bytes is not 1..%zu int32 ids", len, max_tokens);
  std::vector<int32_t> t(len / 4);
  for (size_t i = 0; i < t.size(); ++i) {
    const uint8_t* p = payload + 4 * i;
    const uint32_t u = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
    t[i] = int32_t(u);
    COLLAB_FRAME_CHECK(t[i] >= 0 && t[i] < n_vocab, "token id %d out of range [0, %d)", t[i], n_vocab);
  }
  return t;
}

}  // namespace collab::wire
