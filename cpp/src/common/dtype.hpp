// Element types of collab tensors and exact scalar conversions between them.
// These are __host__ __device__ so the CUDA kernels use the very same rounding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "collab/collab.h"

#if defined(__CUDACC__)
#define COLLAB_HD __host__ __device__ __forceinline__
#else
#define COLLAB_HD inline
#endif

namespace collab {

inline size_t dtype_size(collab_dtype t) { return t == COLLAB_DTYPE_F32 ? 4 : 2; }
inline bool dtype_valid(int t) { return t >= COLLAB_DTYPE_F32 && t <= COLLAB_DTYPE_BF16; }

COLLAB_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

COLLAB_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// IEEE binary16 -> binary32 (exact, subnormals included).
COLLAB_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp != 0) return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
  if (man == 0) return bits_f32(sign);
  // subnormal: value = man * 2^-24, exactly representable in f32
  float v = float(man) * 5.9604644775390625e-8f;
  return bits_f32(sign | f32_bits(v));
}

// binary32 -> binary16 with round-to-nearest-even (what numpy's astype does).
COLLAB_HD uint16_t f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520 -> inf
  if (ax >= 0x38800000u) {                                // normal f16 range (>= 2^-14)
    uint32_t mant_odd = (ax >> 13) & 1u;
    ax += 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round to nearest even
    return uint16_t(sign | (ax >> 13));
  }
  if (ax < 0x33000000u) return uint16_t(sign);  // below half the smallest subnormal -> 0
  // subnormal result: shift the full significand and round to nearest even.
  uint32_t e = ax >> 23;
  uint32_t m = (ax & 0x7fffffu) | 0x800000u;
  uint32_t shift = 126u - e;  // 14..24 here
  uint32_t q = m >> shift;
  uint32_t rem = m & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return uint16_t(sign | q);
}

COLLAB_HD float bf16_to_f32(uint16_t b) { return bits_f32(uint32_t(b) << 16); }

// binary32 -> bfloat16 with round-to-nearest-even (ml_dtypes' rounding).
COLLAB_HD uint16_t f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return uint16_t(x >> 16);
}

// Smallest positive value of a dtype, as f32 (decoders reject block minima below it so a
// decoded non-zero can never round to zero).
inline float dtype_smallest_subnormal(collab_dtype t) {
  switch (t) {
    case COLLAB_DTYPE_F16: return 5.9604644775390625e-8f;  // 2^-24
    case COLLAB_DTYPE_BF16: return bits_f32(0x00010000u);  // 2^-133
    default: return bits_f32(1u);                          // 2^-149
  }
}

// f32 value after rounding to dtype, then back to f32 (used for overflow checks).
inline float round_to_dtype(float v, collab_dtype t) {
  switch (t) {
    case COLLAB_DTYPE_F16: return f16_to_f32(f32_to_f16(v));
    case COLLAB_DTYPE_BF16: return bf16_to_f32(f32_to_bf16(v));
    default: return v;
  }
}

}  // namespace collab
