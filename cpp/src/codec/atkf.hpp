// Asymmetric top-K filtering (SLICER Sec. 3.1, Eq. 7) followed by sign separation
// (Sec. 3.2 pre-step). See python/collab/reference/slicer.py:atkf_keys for how the
// asymmetric cut-offs are made to keep exactly k_keep elements when lam > 0.
#pragma once

#include <cstdint>
#include <vector>

#include "collab/collab.h"

namespace collab {

// Survivors of one sign, in ascending flat-index order.
struct SignedSurvivors {
  std::vector<uint32_t> pos;
  std::vector<float> mag;  // |x| as float32
};

// Growable buffer without value-initialisation on resize (hot-path scratch).
template <class T>
struct Buffer {
  std::vector<T> v;
  T* ensure(size_t n) {
    if (v.size() < n) v.resize(n + n / 4);
    return v.data();
  }
};

struct AtkfScratch {
  std::vector<uint32_t> abs_bits;  // |x| bit patterns
  std::vector<uint64_t> keys64;    // asymmetric keys (lam > 0 only)
  std::vector<uint32_t> hist;
  // per chunk: survivors by sign, and candidate keys
  std::vector<Buffer<uint32_t>> chunk_pos[2];
  std::vector<Buffer<uint32_t>> chunk_cand32;
  std::vector<Buffer<uint64_t>> chunk_cand64;
  std::vector<size_t> chunk_count[2], chunk_ncand;
  std::vector<uint32_t> cand32;
  std::vector<uint64_t> cand64;
  std::vector<uint32_t> chosen;  // tie indices kept, ascending
};

// Run ATKF on x (numel elements of dtype, host memory). Fills out[0] (positive survivors)
// and out[1] (negative survivors). Throws COLLAB_ERR_NONFINITE_INPUT on NaN/Inf.
void atkf_select(const void* x, collab_dtype dtype, uint64_t numel, double sparsity, double lam, uint64_t seed,
                 int threads, AtkfScratch& s, SignedSurvivors out[2]);

// Keep `need` of the indices tied at the threshold: the smallest (tie_priority, index)
// pairs, returned in ascending index order (a seeded, uniformly random choice).
void choose_ties(std::vector<uint32_t>& ties, uint64_t need, uint64_t seed);

// SplitMix64 priority of element idx for tie-breaking (same as the reference).
inline uint64_t tie_priority(uint64_t seed, uint64_t idx) {
  uint64_t z = seed + (idx + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace collab
