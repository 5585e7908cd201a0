#include "codec/magnitude_split.hpp"

#include <algorithm>

#include "codec/params.hpp"
#include "codec/radix_select.hpp"
#include "common/dtype.hpp"

namespace collab {

namespace {

// Boundary after block b: the R-th largest magnitude tau and how many of the elements equal
// to tau (the first ones in index order) still belong above the boundary.
struct Boundary {
  uint32_t tau = 0;
  uint64_t ties_above = ~uint64_t(0);
  uint64_t seen = 0;  // occurrences of tau met so far in the assignment pass
};

}  // namespace

void magnitude_split(SignedSurvivors& s, uint32_t m_blocks, SplitScratch& scratch, std::vector<uint64_t>& offsets) {
  const uint64_t n = s.pos.size();
  offsets.assign(m_blocks + 1, 0);
  for (uint32_t m = 0; m < m_blocks; ++m) offsets[m + 1] = offsets[m] + block_size(n, m_blocks, m);
  if (m_blocks == 1 || n == 0) return;

  // One histogram of the top 11 magnitude bits locates every boundary's bucket.
  constexpr int kShift = 20;
  std::vector<uint32_t>& keys = scratch.keys;
  keys.resize(size_t(n));
  uint32_t hist4[4][2048] = {};  // interleaved, as in atkf.cpp
  size_t j = 0;
  for (; j + 4 <= n; j += 4)
    for (int u = 0; u < 4; ++u) {
      keys[j + u] = f32_bits(s.mag[j + u]);
      ++hist4[u][keys[j + u] >> kShift];
    }
  for (; j < n; ++j) {
    keys[j] = f32_bits(s.mag[j]);
    ++hist4[0][keys[j] >> kShift];
  }
  uint32_t hist[2048];
  for (int b = 0; b < 2048; ++b) hist[b] = hist4[0][b] + hist4[1][b] + hist4[2][b] + hist4[3][b];
  std::vector<Boundary> bd(m_blocks - 1);
  for (uint32_t b = 0; b + 1 < m_blocks; ++b) {
    const uint64_t rank = offsets[b + 1];  // elements above this boundary
    if (rank >= n) continue;               // trailing empty blocks: everyone is above
    uint64_t above = 0;
    uint32_t bucket = 2047;
    for (;; --bucket) {
      if (above + hist[bucket] >= rank) break;
      above += hist[bucket];
    }
    if (scratch.bucket_keys.size() < n) scratch.bucket_keys.resize(size_t(n));
    uint32_t* cand = scratch.bucket_keys.data();
    size_t nc = 0;
    for (size_t j = 0; j < n; ++j) {
      cand[nc] = keys[j];
      nc += (keys[j] >> kShift) == bucket;
    }
    SelectResult<uint32_t> r = kth_largest_in_place(cand, nc, rank - above, kShift);
    bd[b].tau = r.tau;
    bd[b].ties_above = rank - (above + r.greater);
  }

  // Assignment: block = first boundary the element is above; stable scatter by block.
  scratch.pos.resize(size_t(n));
  scratch.mag.resize(size_t(n));
  uint32_t* out_pos = scratch.pos.data();
  float* out_mag = scratch.mag.data();
  if (m_blocks == 2) {  // the common case, with both cursors in registers
    const Boundary d = bd[0];
    uint64_t seen = 0, top = 0, bottom = offsets[1];
    for (size_t j = 0; j < n; ++j) {
      const uint32_t key = keys[j];
      uint64_t above = key > d.tau;
      if (key == d.tau) above = seen++ < d.ties_above;  // rare: exact ties at the boundary
      // Branch-free: which side is data-dependent and unpredictable.
      const uint64_t at = bottom + ((top - bottom) & (0 - above));
      top += above;
      bottom += above ^ 1;
      out_pos[at] = s.pos[j];
      out_mag[at] = s.mag[j];
    }
  } else {
    std::vector<uint64_t> cursor(offsets.begin(), offsets.end() - 1);
    for (size_t j = 0; j < n; ++j) {
      const uint32_t key = keys[j];
      uint32_t block = m_blocks - 1;
      for (uint32_t b = m_blocks - 1; b-- > 0;) {  // every boundary, so tie counters stay exact
        Boundary& d = bd[b];
        bool above = key > d.tau;
        if (key == d.tau) above = d.seen++ < d.ties_above;
        if (above) block = b;
      }
      const uint64_t at = cursor[block]++;
      out_pos[at] = s.pos[j];
      out_mag[at] = s.mag[j];
    }
  }
  s.pos.swap(scratch.pos);
  s.mag.swap(scratch.mag);
}

}  // namespace collab
