// Portable reference versions of the SIMD kernels (also used for the SIMD tails).
#include "simd/kernels_scalar.hpp"

#include <cmath>

#include "common/dtype.hpp"

namespace collab {

bool scalar_abs_bits(const void* x, collab_dtype dtype, size_t n, uint32_t* keys) {
  uint32_t bad = 0;
  if (dtype == COLLAB_DTYPE_F32) {
    const uint32_t* u = static_cast<const uint32_t*>(x);
    for (size_t i = 0; i < n; ++i) {
      uint32_t a = u[i] & 0x7fffffffu;
      bad |= uint32_t(a >= 0x7f800000u);
      keys[i] = a;
    }
  } else if (dtype == COLLAB_DTYPE_F16) {
    const uint16_t* h = static_cast<const uint16_t*>(x);
    for (size_t i = 0; i < n; ++i) {
      bad |= uint32_t((h[i] & 0x7c00u) == 0x7c00u);
      keys[i] = f32_bits(f16_to_f32(h[i])) & 0x7fffffffu;
    }
  } else {
    const uint16_t* b = static_cast<const uint16_t*>(x);
    for (size_t i = 0; i < n; ++i) {
      uint32_t a = (uint32_t(b[i]) << 16) & 0x7fffffffu;
      bad |= uint32_t(a >= 0x7f800000u);
      keys[i] = a;
    }
  }
  return bad == 0;
}

void scalar_minmax(const float* v, size_t n, float* lo, float* hi) {
  float a = v[0], b = v[0];
  for (size_t i = 1; i < n; ++i) {
    a = v[i] < a ? v[i] : a;
    b = v[i] > b ? v[i] : b;
  }
  *lo = a;
  *hi = b;
}

void scalar_quantize(const float* mag, size_t n, float lo, float step, float top, uint16_t* codes) {
  for (size_t i = 0; i < n; ++i) {
    float r = std::nearbyint((mag[i] - lo) / step);
    r = r < 0.0f ? 0.0f : r;
    r = r > top ? top : r;
    codes[i] = uint16_t(r);
  }
}

void scalar_dequantize(const uint16_t* codes, size_t n, float lo, float step, float* out) {
  for (size_t i = 0; i < n; ++i) {
    float t = float(codes[i]) * step;
    out[i] = lo + t;
  }
}

size_t scalar_select_range(const uint32_t* keys, size_t n, uint32_t lo, uint32_t hi, uint32_t* out) {
  size_t c = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t k = keys[i];
    out[c] = k;  // branch-free: always written, counted when in range
    c += (k >= lo) & (k <= hi);
  }
  return c;
}

void scalar_emit_by_sign(const uint32_t* keys, const void* x, collab_dtype dtype, size_t n, uint32_t thresh,
                         uint32_t first, uint32_t* pos, size_t* npos, uint32_t* neg, size_t* nneg) {
  size_t np = *npos, nn = *nneg;
  const uint32_t* x32 = static_cast<const uint32_t*>(x);
  const uint16_t* x16 = static_cast<const uint16_t*>(x);
  for (size_t i = 0; i < n; ++i) {
    const size_t in = keys[i] >= thresh;
    const size_t sg = dtype == COLLAB_DTYPE_F32 ? x32[i] >> 31 : size_t(x16[i] >> 15);
    pos[np] = first + uint32_t(i);
    neg[nn] = first + uint32_t(i);
    np += in & (sg ^ 1);
    nn += in & sg;
  }
  *npos = np;
  *nneg = nn;
}

void scalar_to_f16(const float* v, size_t n, uint16_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = f32_to_f16(v[i]);
}

void scalar_to_bf16(const float* v, size_t n, uint16_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(v[i]);
}

const Kernels& scalar_kernels() {
  static const Kernels k{"scalar",        scalar_abs_bits,     scalar_minmax,
                         scalar_quantize, scalar_dequantize,   scalar_select_range,
                         scalar_emit_by_sign, scalar_to_f16,   scalar_to_bf16};
  return k;
}

}  // namespace collab
