#include "codec/abq.hpp"

#include <cstdlib>
#include <cstring>

#include "common/thread_pool.hpp"
#include "simd/kernels.hpp"

namespace collab {

namespace {

void quantize_all(const float* mag, size_t n, float lo, float step, int bits, int threads, uint16_t* codes) {
  if (step == 0.0f) {
    std::memset(codes, 0, n * sizeof(uint16_t));
    return;
  }
  const Kernels& k = kernels();
  const float top = float((1u << bits) - 1u);
  Chunks ch = make_chunks(n, size_t(threads), 65536);
  parallel_for(ch.parts, threads, [&](size_t c) {
    size_t b = ch.begin(c);
    k.quantize(mag + b, ch.end(c) - b, lo, step, top, codes + b);
  });
}

// DS(T0, q_bit, T_q, q) <= delta, computed block-wise so a clear failure (the usual case
// for delta = 0) stops after the first few thousand elements.
bool mismatch_within(const float* mag, size_t n, float lo, float hi, int q_bit, int q, double delta,
                     const uint16_t* t0, std::vector<uint16_t>& scratch) {
  const double limit = delta * double(n);
  const float step = aiq_step(lo, hi, q);
  const int shift = q_bit - q;
  const Kernels& k = kernels();
  const float top = float((1u << q) - 1u);
  constexpr size_t kBlock = 4096;
  scratch.resize(kBlock);
  uint64_t sum = 0;
  for (size_t b = 0; b < n; b += kBlock) {
    size_t m = n - b < kBlock ? n - b : kBlock;
    if (step == 0.0f)
      std::memset(scratch.data(), 0, m * sizeof(uint16_t));
    else
      k.quantize(mag + b, m, lo, step, top, scratch.data());
    for (size_t i = 0; i < m; ++i) sum += uint64_t(std::abs(int32_t(t0[b + i] >> shift) - int32_t(scratch[i])));
    if (double(sum) > limit) return false;
  }
  return double(sum) <= limit;
}

}  // namespace

BlockQuant abq_quantize(const float* mag, size_t n, int q_bit, double delta, int threads, uint16_t* codes,
                        std::vector<uint16_t>& scratch) {
  float lo, hi;
  kernels().minmax(mag, n, &lo, &hi);
  quantize_all(mag, n, lo, aiq_step(lo, hi, q_bit), q_bit, threads, codes);  // T0
  int best = q_bit;
  for (int q = q_bit - 1; q >= 1; --q) {
    if (!mismatch_within(mag, n, lo, hi, q_bit, q, delta, codes, scratch)) break;
    best = q;
  }
  if (best != q_bit) quantize_all(mag, n, lo, aiq_step(lo, hi, best), best, threads, codes);
  return {best, lo, aiq_step(lo, hi, best)};
}

}  // namespace collab
