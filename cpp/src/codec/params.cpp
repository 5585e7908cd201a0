#include "codec/params.hpp"

#include "common/errors.hpp"

namespace collab {

void validate_params(const collab_codec_params& p) {
  COLLAB_ARG_CHECK(std::isfinite(p.sparsity) && p.sparsity >= 0.0 && p.sparsity < 1.0,
                   "sparsity must be in [0, 1), got %g", p.sparsity);
  COLLAB_ARG_CHECK(std::isfinite(p.lam) && p.lam >= 0.0 && p.lam < 1.0, "lam must be in [0, 1), got %g", p.lam);
  COLLAB_ARG_CHECK(std::isfinite(p.delta) && p.delta >= 0.0, "delta must be a finite number >= 0, got %g",
                   p.delta);
  COLLAB_ARG_CHECK(p.blocks_pos >= 1 && p.blocks_pos <= COLLAB_MAX_BLOCKS && p.blocks_neg >= 1 &&
                       p.blocks_neg <= COLLAB_MAX_BLOCKS,
                   "blocks must be (M+, M-) with each in [1, %d], got (%u, %u)", COLLAB_MAX_BLOCKS,
                   p.blocks_pos, p.blocks_neg);
  uint32_t max_blocks = p.blocks_pos > p.blocks_neg ? p.blocks_pos : p.blocks_neg;
  COLLAB_ARG_CHECK(p.n_qbits >= 1 && p.n_qbits <= max_blocks,
                   "qbits must list 1..max(M+, M-)=%u bit-widths, got %u", max_blocks, p.n_qbits);
  for (uint32_t i = 0; i < p.n_qbits; ++i)
    COLLAB_ARG_CHECK(p.qbits[i] >= 1 && p.qbits[i] <= COLLAB_MAX_QBITS,
                     "each qbits entry must be in [1, %d], got %u", COLLAB_MAX_QBITS, unsigned(p.qbits[i]));
  COLLAB_ARG_CHECK(p.index_code >= COLLAB_INDEX_AUTO && p.index_code <= COLLAB_INDEX_DELTA_RICE,
                   "index_code must be -1 (auto) or 0..3, got %d", p.index_code);
  COLLAB_ARG_CHECK(p.n_threads >= 0, "n_threads must be >= 0, got %d", p.n_threads);
}

uint64_t checked_numel(const int64_t* shape, int32_t ndim) {
  COLLAB_ARG_CHECK(ndim >= 0 && ndim <= COLLAB_MAX_NDIM, "ndim must be in [0, %d], got %d", COLLAB_MAX_NDIM,
                   ndim);
  COLLAB_ARG_CHECK(ndim == 0 || shape != nullptr, "shape is NULL");
  uint64_t n = 1;
  bool zero = false;  // an empty tensor whatever its other dimensions: look at all of them first
  for (int32_t i = 0; i < ndim; ++i) {
    COLLAB_ARG_CHECK(shape[i] >= 0, "shape[%d] is negative", i);
    COLLAB_ARG_CHECK(uint64_t(shape[i]) <= kMaxElements, "shape[%d] too large", i);
    if (shape[i] == 0) zero = true;
  }
  for (int32_t i = 0; i < ndim; ++i) {
    uint64_t d = uint64_t(shape[i]);
    if (!zero) {
      n *= d;
      COLLAB_ARG_CHECK(n <= kMaxElements, "tensor has more than %llu elements",
                       (unsigned long long)kMaxElements);
    }
  }
  return zero ? 0 : n;
}

}  // namespace collab
