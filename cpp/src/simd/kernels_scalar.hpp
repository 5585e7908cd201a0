// Scalar kernels, exposed so the SIMD files can finish their tails with them.
#pragma once

#include "simd/kernels.hpp"

namespace collab {

bool scalar_abs_bits(const void* x, collab_dtype dtype, size_t n, uint32_t* keys);
void scalar_minmax(const float* v, size_t n, float* lo, float* hi);
void scalar_quantize(const float* mag, size_t n, float lo, float step, float top, uint16_t* codes);
void scalar_dequantize(const uint16_t* codes, size_t n, float lo, float step, float* out);
size_t scalar_select_range(const uint32_t* keys, size_t n, uint32_t lo, uint32_t hi, uint32_t* out);
void scalar_emit_by_sign(const uint32_t* keys, const void* x, collab_dtype dtype, size_t n, uint32_t thresh,
                         uint32_t first, uint32_t* pos, size_t* npos, uint32_t* neg, size_t* nneg);
void scalar_to_f16(const float* v, size_t n, uint16_t* out);
void scalar_to_bf16(const float* v, size_t n, uint16_t* out);

}  // namespace collab
