// Scalar kernels, exposed so the SIMD files can finish their tails with them.
#pragma once

#include "simd/kernels.hpp"

namespace collab {

bool scalar_abs_bits(const void* x, collab_dtype dtype, size_t n, uint32_t* keys);
void scalar_minmax(const float* v, size_t n, float* lo, float* hi);
void scalar_quantize(const float* mag, size_t n, float lo, float step, float top, uint16_t* codes);
void scalar_dequantize(const uint16_t* codes, size_t n, float lo, float step, float* out);
void scalar_to_f16(const float* v, size_t n, uint16_t* out);
void scalar_to_bf16(const float* v, size_t n, uint16_t* out);

}  // namespace collab
