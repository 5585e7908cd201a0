// k-th largest of an array of unsigned keys whose top bit is zero (bit patterns of
// non-negative floats/doubles order like the numbers). Radix select: histogram 11 bits at a
// time, keep only the bucket holding the answer, finish with nth_element once few remain.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "common/thread_pool.hpp"

namespace collab {

template <class K>
struct SelectResult {
  K tau;             // the k-th largest key
  uint64_t greater;  // how many keys are > tau
  uint64_t equal;    // how many keys are == tau
};

template <class K>
SelectResult<K> kth_largest(const K* keys, size_t n, uint64_t k, int threads, std::vector<K>& cand,
                            std::vector<std::vector<K>>& chunk_cand) {
  constexpr int kBits = 11, kBins = 1 << kBits;
  int hi = int(sizeof(K) * 8) - 1;  // bit hi-1 is the top non-zero bit
  uint64_t above = 0, krem = k;

  // Level 0 runs over the whole array (in parallel); later levels over the candidates.
  int lo = hi > kBits ? hi - kBits : 0;
  Chunks ch = make_chunks(n, size_t(threads), 32768);
  std::vector<uint32_t> hist(ch.parts * kBins, 0);
  parallel_for(ch.parts, threads, [&](size_t c) {
    uint32_t* h = hist.data() + c * kBins;
    const K mask = K((1u << (hi - lo)) - 1);
    for (size_t i = ch.begin(c); i < ch.end(c); ++i) ++h[(keys[i] >> lo) & mask];
  });
  for (size_t c = 1; c < ch.parts; ++c)
    for (int b = 0; b < kBins; ++b) hist[size_t(b)] += hist[c * kBins + size_t(b)];
  int bin = kBins - 1;
  for (;; --bin) {
    if (above + hist[size_t(bin)] >= k) break;
    above += hist[size_t(bin)];
  }
  krem = k - above;
  {
    const K mask = K((1u << (hi - lo)) - 1), want = K(bin);
    chunk_cand.resize(ch.parts);
    parallel_for(ch.parts, threads, [&](size_t c) {
      auto& out = chunk_cand[c];
      out.clear();
      for (size_t i = ch.begin(c); i < ch.end(c); ++i)
        if (((keys[i] >> lo) & mask) == want) out.push_back(keys[i]);
    });
    cand.clear();
    for (size_t c = 0; c < ch.parts; ++c) cand.insert(cand.end(), chunk_cand[c].begin(), chunk_cand[c].end());
  }
  hi = lo;

  while (cand.size() > 2048 && hi > 0) {
    lo = hi > kBits ? hi - kBits : 0;
    const K mask = K((1u << (hi - lo)) - 1);
    std::fill(hist.begin(), hist.begin() + kBins, 0u);
    for (K key : cand) ++hist[size_t((key >> lo) & mask)];
    int b = int(mask);
    for (;; --b) {
      if (hist[size_t(b)] >= krem) break;
      krem -= hist[size_t(b)];
      above += hist[size_t(b)];
    }
    size_t w = 0;
    for (K key : cand)
      if (((key >> lo) & mask) == K(b)) cand[w++] = key;
    cand.resize(w);
    hi = lo;
  }

  std::nth_element(cand.begin(), cand.begin() + ptrdiff_t(krem - 1), cand.end(), std::greater<K>());
  K tau = cand[size_t(krem - 1)];
  uint64_t gt = 0, eq = 0;
  for (K key : cand) {
    gt += key > tau;
    eq += key == tau;
  }
  return {tau, above + gt, eq};
}

}  // namespace collab
