// Lossless codes for the positions of each block's non-zeros (SLICER Sec. 3.2 step 3 uses
// CSR; the others are smaller for some sparsities). The encoder computes the exact size of
// every code and writes the smallest; the frame header records which one it used.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/params.hpp"

namespace collab {

// One block's positions: strictly increasing flat indices.
struct PositionSpan {
  const uint32_t* pos;
  uint64_t n;
};

struct IndexContext {
  uint64_t numel;
  CsrView csr;
  const std::vector<PositionSpan>* blocks;  // M+ + M- spans, in frame block order
};

// Exact encoded size of each code, indexed by collab_index_code.
std::array<uint64_t, 4> index_sizes(const IndexContext& ctx);

// The code to write and its exact size: `requested` (a collab_index_code) or, for
// COLLAB_INDEX_AUTO, the smallest (ties: the lowest code number), as index_sizes() would
// choose, but without the passes over the positions that cannot change the outcome.
struct IndexChoice {
  int code;
  uint64_t bytes;
};
IndexChoice choose_index_code(const IndexContext& ctx, int requested);

// Write code `code` into out (exactly index_sizes()[code] bytes). label_scratch must hold
// numel bytes for the bitmap code (unused otherwise).
void encode_index(const IndexContext& ctx, int code, uint8_t* out, std::vector<uint8_t>& label_scratch);

// Decode positions of every block into positions[offset_b, offset_b + count_b), offsets in
// block order. Validates everything (ranges, ordering, counts, exact section length).
void decode_index(int code, const uint8_t* in, size_t len, uint64_t numel, const CsrView& csr,
                  const std::vector<uint64_t>& counts, uint32_t* positions);

}  // namespace collab
