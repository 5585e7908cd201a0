// Codec parameters and the quantities every part of the codec derives from them.
// Mirrors python/collab/reference/slicer.py (k_keep_for, block_sizes, bits_for_block,
// rice_parameter, csr_view): change both together.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "collab/collab.h"
#include "common/bits.hpp"

namespace collab {

constexpr uint64_t kMaxElements = 0xffffffffull;  // positions are 32-bit

// Throws COLLAB_ERR_INVALID_ARGUMENT with a readable message if params are out of range.
void validate_params(const collab_codec_params& p);

// Product of the dims; throws on negative dims or more than kMaxElements elements.
uint64_t checked_numel(const int64_t* shape, int32_t ndim);

// k_keep = floor((1 - s) * T) in IEEE double (SLICER Sec. 3.1).
inline uint64_t k_keep_for(uint64_t numel, double sparsity) {
  return uint64_t(std::floor((1.0 - sparsity) * double(numel)));
}

// Equal-cardinality block sizes (Sec. 3.2 step 2): the first n % M blocks get one extra.
inline uint64_t block_size(uint64_t n, uint32_t m_blocks, uint32_t m) {
  return n / m_blocks + (m < n % m_blocks ? 1 : 0);
}

// Q lists bits largest-magnitude block first; a short list repeats its last entry.
inline int bits_for_block(const collab_codec_params& p, uint32_t rank) {
  return p.qbits[rank < p.n_qbits ? rank : p.n_qbits - 1];
}

// CSR sees the tensor as N x K with K = the last dimension (scalars: 1 x 1).
struct CsrView {
  uint64_t rows, cols;
};
inline CsrView csr_view(const int64_t* shape, int32_t ndim, uint64_t numel) {
  if (ndim == 0) return {1, 1};
  uint64_t k = uint64_t(shape[ndim - 1]);
  if (k == 0) return {0, 0};
  return {numel / k, k};
}
inline int csr_col_bits(const CsrView& v) { return v.cols > 0 ? bit_length(v.cols - 1) : 0; }

// Rice parameter for n positions over numel slots: floor(log2(floor(mu ln 2))), mu = (T-n)/n,
// with ln 2 ~ 45426/65536 so that it is exact integer arithmetic everywhere.
inline int rice_parameter(uint64_t numel, uint64_t n) {
  if (n == 0) return 0;
  uint64_t t = ((numel - n) * 45426u) / (n * 65536u);
  int k = bit_length(t) - 1;
  return k < 0 ? 0 : (k > 31 ? 31 : k);
}

}  // namespace collab
