// NEON kernels (every aarch64 CPU has Advanced SIMD; no run-time check needed).
#include <arm_neon.h>

#include "simd/kernels_scalar.hpp"

namespace collab {

namespace {

bool neon_abs_bits(const void* x, collab_dtype dtype, size_t n, uint32_t* keys) {
  const uint32x4_t abs_mask = vdupq_n_u32(0x7fffffffu), inf = vdupq_n_u32(0x7f800000u);
  uint32x4_t bad = vdupq_n_u32(0);
  size_t i = 0;
  if (dtype == COLLAB_DTYPE_F32) {
    const uint32_t* u = static_cast<const uint32_t*>(x);
    for (; i + 4 <= n; i += 4) {
      uint32x4_t a = vandq_u32(vld1q_u32(u + i), abs_mask);
      bad = vorrq_u32(bad, vcgeq_u32(a, inf));
      vst1q_u32(keys + i, a);
    }
  } else if (dtype == COLLAB_DTYPE_F16) {
    const uint16_t* h = static_cast<const uint16_t*>(x);
    for (; i + 4 <= n; i += 4) {
      float32x4_t f = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + i)));
      uint32x4_t a = vandq_u32(vreinterpretq_u32_f32(f), abs_mask);
      bad = vorrq_u32(bad, vcgeq_u32(a, inf));
      vst1q_u32(keys + i, a);
    }
  } else {
    const uint16_t* b = static_cast<const uint16_t*>(x);
    for (; i + 4 <= n; i += 4) {
      uint32x4_t a = vandq_u32(vshll_n_u16(vld1_u16(b + i), 16), abs_mask);
      bad = vorrq_u32(bad, vcgeq_u32(a, inf));
      vst1q_u32(keys + i, a);
    }
  }
  bool ok = vmaxvq_u32(bad) == 0;
  const uint8_t* base = static_cast<const uint8_t*>(x) + i * (dtype == COLLAB_DTYPE_F32 ? 4 : 2);
  bool tail_ok = scalar_abs_bits(base, dtype, n - i, keys + i);
  return ok && tail_ok;
}

void neon_minmax(const float* v, size_t n, float* lo, float* hi) {
  size_t i = 0;
  float a = v[0], b = v[0];
  if (n >= 4) {
    float32x4_t vmin = vld1q_f32(v), vmax = vmin;
    for (i = 4; i + 4 <= n; i += 4) {
      float32x4_t x = vld1q_f32(v + i);
      vmin = vminq_f32(vmin, x);
      vmax = vmaxq_f32(vmax, x);
    }
    a = vminvq_f32(vmin);
    b = vmaxvq_f32(vmax);
  }
  for (; i < n; ++i) {
    a = v[i] < a ? v[i] : a;
    b = v[i] > b ? v[i] : b;
  }
  *lo = a;
  *hi = b;
}

void neon_quantize(const float* mag, size_t n, float lo, float step, float top, uint16_t* codes) {
  const float32x4_t vlo = vdupq_n_f32(lo), vstep = vdupq_n_f32(step), vtop = vdupq_n_f32(top);
  const float32x4_t zero = vdupq_n_f32(0.0f);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    float32x4_t r0 = vdivq_f32(vsubq_f32(vld1q_f32(mag + i), vlo), vstep);
    float32x4_t r1 = vdivq_f32(vsubq_f32(vld1q_f32(mag + i + 4), vlo), vstep);
    r0 = vminq_f32(vmaxq_f32(vrndnq_f32(r0), zero), vtop);
    r1 = vminq_f32(vmaxq_f32(vrndnq_f32(r1), zero), vtop);
    uint16x8_t q = vcombine_u16(vmovn_u32(vcvtq_u32_f32(r0)), vmovn_u32(vcvtq_u32_f32(r1)));
    vst1q_u16(codes + i, q);
  }
  scalar_quantize(mag + i, n - i, lo, step, top, codes + i);
}

void neon_dequantize(const uint16_t* codes, size_t n, float lo, float step, float* out) {
  const float32x4_t vlo = vdupq_n_f32(lo), vstep = vdupq_n_f32(step);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float32x4_t c = vcvtq_f32_u32(vmovl_u16(vld1_u16(codes + i)));
    // vmulq + vaddq are separate instructions; -ffp-contract=off keeps them unfused.
    vst1q_f32(out + i, vaddq_f32(vlo, vmulq_f32(c, vstep)));
  }
  scalar_dequantize(codes + i, n - i, lo, step, out + i);
}

// Left-pack of 4 lanes: byte shuffles for each 4-bit mask, built at compile time.
struct PackTable {
  uint8_t shuf[16][16];
};
constexpr PackTable make_pack_table() {
  PackTable t{};
  for (int m = 0; m < 16; ++m) {
    int k = 0;
    for (int lane = 0; lane < 4; ++lane)
      if (m & (1 << lane)) {
        for (int b = 0; b < 4; ++b) t.shuf[m][4 * k + b] = uint8_t(4 * lane + b);
        ++k;
      }
  }
  return t;
}
constexpr PackTable kPack = make_pack_table();

inline int lane_mask(uint32x4_t m) {
  const uint32x4_t bits = {1, 2, 4, 8};
  return int(vaddvq_u32(vandq_u32(m, bits)));
}

inline size_t left_pack(uint32x4_t v, int mask, uint32_t* out) {
  const uint8x16_t shuf = vld1q_u8(kPack.shuf[mask]);
  vst1q_u32(out, vreinterpretq_u32_u8(vqtbl1q_u8(vreinterpretq_u8_u32(v), shuf)));
  return size_t(__builtin_popcount(unsigned(mask)));
}

size_t neon_select_range(const uint32_t* keys, size_t n, uint32_t lo, uint32_t hi, uint32_t* out) {
  const uint32x4_t vlo = vdupq_n_u32(lo), vhi = vdupq_n_u32(hi);
  size_t c = 0, i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32x4_t k = vld1q_u32(keys + i);
    c += left_pack(k, lane_mask(vandq_u32(vcgeq_u32(k, vlo), vcleq_u32(k, vhi))), out + c);
  }
  return c + scalar_select_range(keys + i, n - i, lo, hi, out + c);
}

void neon_emit_by_sign(const uint32_t* keys, const void* x, collab_dtype dtype, size_t n, uint32_t thresh,
                       uint32_t first, uint32_t* pos, size_t* npos, uint32_t* neg, size_t* nneg) {
  const uint32x4_t vth = vdupq_n_u32(thresh);
  uint32x4_t idx = {first, first + 1, first + 2, first + 3};
  const uint32x4_t four = vdupq_n_u32(4);
  size_t np = *npos, nn = *nneg, i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32x4_t k = vld1q_u32(keys + i);
    const int in = lane_mask(vcgeq_u32(k, vth));
    uint32x4_t sbits;
    if (dtype == COLLAB_DTYPE_F32)
      sbits = vshrq_n_u32(vld1q_u32(static_cast<const uint32_t*>(x) + i), 31);
    else
      sbits = vshrq_n_u32(vmovl_u16(vld1_u16(static_cast<const uint16_t*>(x) + i)), 15);
    const int sg = lane_mask(vceqq_u32(sbits, vdupq_n_u32(1)));
    np += left_pack(idx, in & ~sg & 15, pos + np);
    nn += left_pack(idx, in & sg, neg + nn);
    idx = vaddq_u32(idx, four);
  }
  *npos = np;
  *nneg = nn;
  const size_t esize = dtype == COLLAB_DTYPE_F32 ? 4 : 2;
  scalar_emit_by_sign(keys + i, static_cast<const uint8_t*>(x) + i * esize, dtype, n - i, thresh,
                      first + uint32_t(i), pos, npos, neg, nneg);
}

void neon_to_f16(const float* v, size_t n, uint16_t* out) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1_u16(out + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(v + i))));
  scalar_to_f16(v + i, n - i, out + i);
}

void neon_to_bf16(const float* v, size_t n, uint16_t* out) {
  const uint32x4_t bias = vdupq_n_u32(0x7fffu), one = vdupq_n_u32(1u);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    uint32x4_t a = vreinterpretq_u32_f32(vld1q_f32(v + i));
    a = vaddq_u32(a, vaddq_u32(bias, vandq_u32(vshrq_n_u32(a, 16), one)));
    vst1_u16(out + i, vshrn_n_u32(a, 16));
  }
  scalar_to_bf16(v + i, n - i, out + i);
}

}  // namespace

const Kernels* neon_kernels() {
  static const Kernels k{"neon",          neon_abs_bits,       neon_minmax,
                         neon_quantize,   neon_dequantize,     neon_select_range,
                         neon_emit_by_sign, neon_to_f16,       neon_to_bf16};
  return &k;
}

}  // namespace collab
