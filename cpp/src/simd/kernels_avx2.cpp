// AVX2 + F16C kernels (x86-64). Compiled with -mavx2 -mf16c only in this file and called
// only after dispatch.cpp has checked CPUID, so the library still loads on older CPUs.
#include <immintrin.h>

#include "simd/kernels_scalar.hpp"

namespace collab {

namespace {

bool avx2_abs_bits(const void* x, collab_dtype dtype, size_t n, uint32_t* keys) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf = _mm256_set1_epi32(0x7f800000);
  __m256i bad = _mm256_setzero_si256();
  size_t i = 0;
  if (dtype == COLLAB_DTYPE_F32) {
    const float* f = static_cast<const float*>(x);
    for (; i + 8 <= n; i += 8) {
      __m256i a = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(f + i)), abs_mask);
      // a >= inf  <=>  a > inf - 1 (signed compare is fine: a < 2^31)
      bad = _mm256_or_si256(bad, _mm256_cmpgt_epi32(a, _mm256_sub_epi32(inf, _mm256_set1_epi32(1))));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(keys + i), a);
    }
  } else if (dtype == COLLAB_DTYPE_F16) {
    const uint16_t* h = static_cast<const uint16_t*>(x);
    for (; i + 8 <= n; i += 8) {
      __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i));
      __m256i a = _mm256_and_si256(_mm256_castps_si256(_mm256_cvtph_ps(raw)), abs_mask);
      bad = _mm256_or_si256(bad, _mm256_cmpgt_epi32(a, _mm256_sub_epi32(inf, _mm256_set1_epi32(1))));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(keys + i), a);
    }
  } else {
    const uint16_t* b = static_cast<const uint16_t*>(x);
    for (; i + 8 <= n; i += 8) {
      __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i));
      __m256i a = _mm256_and_si256(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16), abs_mask);
      bad = _mm256_or_si256(bad, _mm256_cmpgt_epi32(a, _mm256_sub_epi32(inf, _mm256_set1_epi32(1))));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(keys + i), a);
    }
  }
  bool ok = _mm256_testz_si256(bad, bad);
  const uint8_t* base = static_cast<const uint8_t*>(x) + i * (dtype == COLLAB_DTYPE_F32 ? 4 : 2);
  bool tail_ok = scalar_abs_bits(base, dtype, n - i, keys + i);
  return ok && tail_ok;
}

void avx2_minmax(const float* v, size_t n, float* lo, float* hi) {
  size_t i = 0;
  float a = v[0], b = v[0];
  if (n >= 8) {
    __m256 vmin = _mm256_loadu_ps(v), vmax = vmin;
    for (i = 8; i + 8 <= n; i += 8) {
      __m256 x = _mm256_loadu_ps(v + i);
      vmin = _mm256_min_ps(vmin, x);
      vmax = _mm256_max_ps(vmax, x);
    }
    alignas(32) float mn[8], mx[8];
    _mm256_store_ps(mn, vmin);
    _mm256_store_ps(mx, vmax);
    a = mn[0];
    b = mx[0];
    for (int k = 1; k < 8; ++k) {
      a = mn[k] < a ? mn[k] : a;
      b = mx[k] > b ? mx[k] : b;
    }
  }
  for (; i < n; ++i) {
    a = v[i] < a ? v[i] : a;
    b = v[i] > b ? v[i] : b;
  }
  *lo = a;
  *hi = b;
}

void avx2_quantize(const float* mag, size_t n, float lo, float step, float top, uint16_t* codes) {
  const __m256 vlo = _mm256_set1_ps(lo), vstep = _mm256_set1_ps(step), vtop = _mm256_set1_ps(top);
  const __m256 zero = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 r0 = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(mag + i), vlo), vstep);
    __m256 r1 = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(mag + i + 8), vlo), vstep);
    r0 = _mm256_round_ps(r0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r1 = _mm256_round_ps(r1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r0 = _mm256_min_ps(_mm256_max_ps(r0, zero), vtop);
    r1 = _mm256_min_ps(_mm256_max_ps(r1, zero), vtop);
    __m256i q = _mm256_packus_epi32(_mm256_cvttps_epi32(r0), _mm256_cvttps_epi32(r1));
    q = _mm256_permute4x64_epi64(q, 0xD8);  // undo the per-lane interleave of packus
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), q);
  }
  scalar_quantize(mag + i, n - i, lo, step, top, codes + i);
}

void avx2_dequantize(const uint16_t* codes, size_t n, float lo, float step, float* out) {
  const __m256 vlo = _mm256_set1_ps(lo), vstep = _mm256_set1_ps(step);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i));
    __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(raw));
    _mm256_storeu_ps(out + i, _mm256_add_ps(vlo, _mm256_mul_ps(c, vstep)));
  }
  scalar_dequantize(codes + i, n - i, lo, step, out + i);
}

// Left-pack permutations: entry m lists the set lanes of the 8-bit mask m, in order
// (one byte per lane index), built at compile time.
struct PackTable {
  uint64_t idx[256];
};
constexpr PackTable make_pack_table() {
  PackTable t{};
  for (int m = 0; m < 256; ++m) {
    uint64_t v = 0;
    int k = 0;
    for (int lane = 0; lane < 8; ++lane)
      if (m & (1 << lane)) v |= uint64_t(lane) << (8 * k++);
    t.idx[m] = v;
  }
  return t;
}
constexpr PackTable kPack = make_pack_table();

inline size_t left_pack(__m256i v, int mask, uint32_t* out) {
  const __m256i perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(kPack.idx[mask])));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_permutevar8x32_epi32(v, perm));
  return size_t(__builtin_popcount(unsigned(mask)));
}

size_t avx2_select_range(const uint32_t* keys, size_t n, uint32_t lo, uint32_t hi, uint32_t* out) {
  // keys, lo and hi are < 2^31, so signed compares are exact (lo - 1 may be -1).
  const __m256i vlo = _mm256_set1_epi32(int32_t(lo) - 1), vhi = _mm256_set1_epi32(int32_t(hi));
  size_t c = 0, i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i k = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i));
    const __m256i in = _mm256_andnot_si256(_mm256_cmpgt_epi32(k, vhi), _mm256_cmpgt_epi32(k, vlo));
    c += left_pack(k, _mm256_movemask_ps(_mm256_castsi256_ps(in)), out + c);
  }
  return c + scalar_select_range(keys + i, n - i, lo, hi, out + c);
}

void avx2_emit_by_sign(const uint32_t* keys, const void* x, collab_dtype dtype, size_t n, uint32_t thresh,
                       uint32_t first, uint32_t* pos, size_t* npos, uint32_t* neg, size_t* nneg) {
  const __m256i vth = _mm256_set1_epi32(int32_t(thresh) - 1);  // thresh in [1, 2^31)
  __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(int32_t(first)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i eight = _mm256_set1_epi32(8);
  size_t np = *npos, nn = *nneg, i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i k = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + i));
    const int in = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(k, vth)));
    int sg;
    if (dtype == COLLAB_DTYPE_F32) {
      sg = _mm256_movemask_ps(_mm256_loadu_ps(static_cast<const float*>(x) + i));
    } else {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(x) + i));
      sg = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
    np += left_pack(idx, in & ~sg, pos + np);
    nn += left_pack(idx, in & sg, neg + nn);
    idx = _mm256_add_epi32(idx, eight);
  }
  *npos = np;
  *nneg = nn;
  const size_t esize = dtype == COLLAB_DTYPE_F32 ? 4 : 2;
  scalar_emit_by_sign(keys + i, static_cast<const uint8_t*>(x) + i * esize, dtype, n - i, thresh,
                      first + uint32_t(i), pos, npos, neg, nneg);
}

void avx2_to_f16(const float* v, size_t n, uint16_t* out) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(v + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  scalar_to_f16(v + i, n - i, out + i);
}

void avx2_to_bf16(const float* v, size_t n, uint16_t* out) {
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i));
    __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i + 8));
    a = _mm256_add_epi32(a, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(a, 16), one)));
    b = _mm256_add_epi32(b, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(b, 16), one)));
    __m256i q = _mm256_packus_epi32(_mm256_srli_epi32(a, 16), _mm256_srli_epi32(b, 16));
    q = _mm256_permute4x64_epi64(q, 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), q);
  }
  scalar_to_bf16(v + i, n - i, out + i);
}

}  // namespace

const Kernels* avx2_kernels() {
  static const Kernels k{"avx2",          avx2_abs_bits,       avx2_minmax,
                         avx2_quantize,   avx2_dequantize,     avx2_select_range,
                         avx2_emit_by_sign, avx2_to_f16,       avx2_to_bf16};
  return &k;
}

}  // namespace collab
