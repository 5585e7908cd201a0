#include "codec/magnitude_split.hpp"

#include <algorithm>
#include <functional>

#include "codec/params.hpp"
#include "common/dtype.hpp"

namespace collab {

void magnitude_split(SignedSurvivors& s, uint32_t m_blocks, SplitScratch& scratch, std::vector<uint64_t>& offsets) {
  const uint64_t n = s.pos.size();
  offsets.assign(m_blocks + 1, 0);
  for (uint32_t m = 0; m < m_blocks; ++m) offsets[m + 1] = offsets[m] + block_size(n, m_blocks, m);
  if (m_blocks == 1 || n == 0) return;

  // Composite key: larger magnitude first, then smaller index first. Unique per element.
  auto composite = [&](size_t j) { return uint64_t(f32_bits(s.mag[j])) << 32 | uint64_t(0xffffffffu - s.pos[j]); };
  auto& c = scratch.composite;
  c.resize(size_t(n));
  for (size_t j = 0; j < n; ++j) c[j] = composite(j);

  // thr[m] = smallest key of block m (0 when nothing follows block m).
  std::vector<uint64_t> thr(m_blocks - 1, 0);
  for (uint32_t m = 0; m + 1 < m_blocks; ++m) {
    uint64_t r = offsets[m + 1];
    if (r >= n || r == 0) continue;
    std::nth_element(c.begin() + ptrdiff_t(offsets[m]), c.begin() + ptrdiff_t(r - 1), c.end(), std::greater<uint64_t>());
    thr[m] = c[size_t(r - 1)];
  }

  // Stable scatter into block order.
  scratch.pos.resize(size_t(n));
  scratch.mag.resize(size_t(n));
  std::vector<uint64_t> cursor(offsets.begin(), offsets.end() - 1);
  for (size_t j = 0; j < n; ++j) {
    uint64_t key = composite(j);
    uint32_t b = 0;
    while (b + 1 < m_blocks && thr[b] > key) ++b;
    uint64_t at = cursor[b]++;
    scratch.pos[size_t(at)] = s.pos[j];
    scratch.mag[size_t(at)] = s.mag[j];
  }
  s.pos.swap(scratch.pos);
  s.mag.swap(scratch.mag);
}

}  // namespace collab
