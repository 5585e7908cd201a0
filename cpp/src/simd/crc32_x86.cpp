// CRC-32 by carry-less multiplication (PCLMULQDQ): fold 512 bits at a time, then 128,
// then Barrett-reduce to 32 bits. Constants are x^n mod P for the reflected IEEE
// polynomial (Intel, "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ").
// Compiled with -mpclmul -msse4.1; used only after a CPUID check.
#include <cpuid.h>
#include <immintrin.h>

#include "common/crc32.hpp"

namespace collab {

namespace {

inline __m128i fold(__m128i x, __m128i k) {
  return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

uint32_t crc32_pclmul(uint32_t state, const uint8_t* p, size_t len, size_t* done) {
  const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596, 0x154442bd4);
  const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);
  const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124);
  const __m128i poly = _mm_set_epi64x(0x1f7011641, 0x1db710641);  // mu, P'
  const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
  size_t n = len & ~size_t(15);
  const uint8_t* end = p + n;

  __m128i x0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  __m128i x1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
  __m128i x2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32));
  __m128i x3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 48));
  x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128(int(state)));
  p += 64;
  while (end - p >= 64) {
    x0 = _mm_xor_si128(fold(x0, k1k2), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    x1 = _mm_xor_si128(fold(x1, k1k2), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
    x2 = _mm_xor_si128(fold(x2, k1k2), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32)));
    x3 = _mm_xor_si128(fold(x3, k1k2), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 48)));
    p += 64;
  }
  x0 = _mm_xor_si128(fold(x0, k3k4), x1);
  x0 = _mm_xor_si128(fold(x0, k3k4), x2);
  x0 = _mm_xor_si128(fold(x0, k3k4), x3);
  while (end - p >= 16) {
    x0 = _mm_xor_si128(fold(x0, k3k4), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    p += 16;
  }
  // 128 -> 64 bits
  __m128i t = _mm_srli_si128(x0, 8);
  x0 = _mm_xor_si128(_mm_clmulepi64_si128(x0, k3k4, 0x10), t);
  // 64 -> 32 bits
  t = _mm_srli_si128(x0, 4);
  x0 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x0, mask32), k5, 0x00), t);
  // Barrett reduction
  t = x0;
  x0 = _mm_clmulepi64_si128(_mm_and_si128(x0, mask32), poly, 0x10);
  x0 = _mm_clmulepi64_si128(_mm_and_si128(x0, mask32), poly, 0x00);
  x0 = _mm_xor_si128(x0, t);
  *done = n;
  return uint32_t(_mm_extract_epi32(x0, 1));
}

bool cpu_has_pclmul() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c & (1u << 1)) && (c & (1u << 19));  // PCLMULQDQ, SSE4.1
}

}  // namespace

uint32_t (*crc32_x86_pclmul())(uint32_t, const uint8_t*, size_t, size_t*) {
  return cpu_has_pclmul() ? crc32_pclmul : nullptr;
}

}  // namespace collab
