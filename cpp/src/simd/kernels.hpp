// The few element-wise loops that dominate codec time, with portable SIMD versions:
// scalar (every CPU), AVX2+F16C (x86-64, chosen at run time after a CPUID check) and NEON
// (every aarch64 CPU). All versions give bit-identical results: they use only IEEE
// operations that round the same way (sub, mul, div, round-to-nearest-even, no FMA).
#pragma once

#include <cstddef>
#include <cstdint>

#include "collab/collab.h"

namespace collab {

struct Kernels {
  const char* name;
  // keys[i] = bit pattern of |float32(x[i])|; returns false if any element is NaN or Inf.
  bool (*abs_bits)(const void* x, collab_dtype dtype, size_t n, uint32_t* keys);
  // Smallest and largest of v[0, n), n >= 1.
  void (*minmax)(const float* v, size_t n, float* lo, float* hi);
  // codes[i] = min(max(rint((mag[i] - lo) / step), 0), top), step > 0.
  void (*quantize)(const float* mag, size_t n, float lo, float step, float top, uint16_t* codes);
  // out[i] = lo + float(codes[i]) * step (two roundings, never fused).
  void (*dequantize)(const uint16_t* codes, size_t n, float lo, float step, float* out);
  // Left-pack: out[0, count) = the keys with lo <= key <= hi, in order; returns count.
  // out must have room for n + 8 entries (vector stores may write past count).
  size_t (*select_range)(const uint32_t* keys, size_t n, uint32_t lo, uint32_t hi, uint32_t* out);
  // For each i with keys[i] >= thresh, append first + i to pos (sign bit of x[i] clear) or to
  // neg (set). Both outputs need room for n + 8 entries. Returns the counts via npos / nneg.
  void (*emit_by_sign)(const uint32_t* keys, const void* x, collab_dtype dtype, size_t n, uint32_t thresh,
                       uint32_t first, uint32_t* pos, size_t* npos, uint32_t* neg, size_t* nneg);
  // Round-to-nearest-even conversions.
  void (*to_f16)(const float* v, size_t n, uint16_t* out);
  void (*to_bf16)(const float* v, size_t n, uint16_t* out);
};

const Kernels& kernels();            // the active table
const Kernels& scalar_kernels();     // always available
const Kernels* avx2_kernels();       // nullptr when not compiled in
const Kernels* neon_kernels();       // nullptr when not compiled in
bool set_kernels(const char* level); // "auto", "scalar", "avx2", "neon"; false if unavailable

}  // namespace collab
