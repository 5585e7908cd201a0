// Magnitude splitting with equal cardinality (SLICER Sec. 3.2): one sign's non-zeros,
// ranked by magnitude (descending, ties by ascending index), cut into M blocks of sizes
// block_size(n, M, m). Each block keeps its elements in ascending index order.
#pragma once

#include <cstdint>
#include <vector>

#include "codec/atkf.hpp"

namespace collab {

struct SplitScratch {
  std::vector<uint32_t> keys, bucket_keys;
  std::vector<uint32_t> pos;
  std::vector<float> mag;
};

// Reorder s in place so block m occupies [offsets[m], offsets[m+1]).
void magnitude_split(SignedSurvivors& s, uint32_t m_blocks, SplitScratch& scratch, std::vector<uint64_t>& offsets);

}  // namespace collab
