// k-th largest of unsigned keys (bit patterns of non-negative floats order like the
// numbers). Radix select: histogram 11 bits at a time, keep only the bucket holding the
// answer, finish with nth_element once few keys remain.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace collab {

template <class K>
struct SelectResult {
  K tau;             // the k-th largest key
  uint64_t greater;  // how many keys are > tau
  uint64_t equal;    // how many keys are == tau
};

// Selects among keys[0, n) (1 <= k <= n), reordering and overwriting them. Only bits below
// `hi` may differ between keys (callers that already bucketed by the top bits pass that bit).
template <class K>
SelectResult<K> kth_largest_in_place(K* keys, size_t n, uint64_t k, int hi = int(sizeof(K) * 8)) {
  constexpr int kBits = 11;
  uint64_t above = 0;
  uint32_t hist[1 << kBits];
  while (n > 2048 && hi > 0) {
    const int lo = hi > kBits ? hi - kBits : 0;
    const K mask = K((1u << (hi - lo)) - 1);
    std::fill(hist, hist + mask + 1, 0u);
    for (size_t i = 0; i < n; ++i) ++hist[size_t((keys[i] >> lo) & mask)];
    size_t b = size_t(mask);
    for (;; --b) {
      if (hist[b] >= k) break;
      k -= hist[b];
      above += hist[b];
    }
    size_t w = 0;
    for (size_t i = 0; i < n; ++i) {
      const K key = keys[i];
      keys[w] = key;
      w += ((key >> lo) & mask) == K(b);
    }
    n = w;
    hi = lo;
  }
  std::nth_element(keys, keys + ptrdiff_t(k - 1), keys + n, std::greater<K>());
  const K tau = keys[size_t(k - 1)];
  uint64_t gt = 0, eq = 0;
  for (size_t i = 0; i < n; ++i) {
    gt += keys[i] > tau;
    eq += keys[i] == tau;
  }
  return {tau, above + gt, eq};
}

}  // namespace collab
