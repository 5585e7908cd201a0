// Per-block asymmetric integer quantization (AIQ) and adaptive bit quantization (ABQ),
// SLICER Sec. 3.2.1, Eq. 8-9. See the reference (aiq_codes) for the zero-point form used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace collab {

struct BlockQuant {
  int bits;
  float lo;    // v_min, the zero-point
  float step;  // o_m = (v_max - v_min) / (2^q - 1)
};

// o_m computed in double and rounded once to float32.
inline float aiq_step(float lo, float hi, int bits) {
  return float((double(hi) - double(lo)) / double((1u << bits) - 1u));
}

// Quantize one block's magnitudes mag[0, n) (n >= 1): start at q_bit, lower the width while
// the mean integer mismatch DS (Eq. 9) stays <= delta, write the final codes.
BlockQuant abq_quantize(const float* mag, size_t n, int q_bit, double delta, int threads, uint16_t* codes,
                        std::vector<uint16_t>& scratch);

}  // namespace collab
