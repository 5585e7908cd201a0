#include "codec/atkf.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "codec/params.hpp"
#include "codec/radix_select.hpp"
#include "common/dtype.hpp"
#include "common/errors.hpp"
#include "common/thread_pool.hpp"
#include "simd/kernels.hpp"

namespace collab {

namespace {

constexpr size_t kMinChunk = 32768;

inline uint32_t sign_of(const void* x, collab_dtype dtype, size_t i) {
  if (dtype == COLLAB_DTYPE_F32) return static_cast<const uint32_t*>(x)[i] >> 31;
  return static_cast<const uint16_t*>(x)[i] >> 15;
}

// Asymmetric key a(x) as double bits: x/(1+lam) for x > 0, |x|/(1-lam) for x < 0.
inline uint64_t asym_key(uint32_t abs_bits, uint32_t sign, double lam) {
  if (abs_bits == 0) return 0;
  double m = double(bits_f32(abs_bits));
  double a = sign ? m / (1.0 - lam) : m / (1.0 + lam);
  uint64_t u;
  std::memcpy(&u, &a, 8);
  return u;
}

// Pick `need` of the tied indices: smallest (priority, index) first (seeded, uniform).
void choose_ties(std::vector<uint32_t>& ties, uint64_t need, uint64_t seed) {
  std::vector<std::pair<uint64_t, uint32_t>> pr(ties.size());
  for (size_t i = 0; i < ties.size(); ++i) pr[i] = {tie_priority(seed, ties[i]), ties[i]};
  std::nth_element(pr.begin(), pr.begin() + ptrdiff_t(need - 1), pr.end());
  ties.resize(size_t(need));
  for (size_t i = 0; i < need; ++i) ties[i] = pr[i].second;
  std::sort(ties.begin(), ties.end());
}

// Emission pass: write every survivor (by sign) in index order. keep(i, key) decides.
template <class Key, class KeyAt>
void emit(const void* x, collab_dtype dtype, uint64_t numel, KeyAt key_at, Key tau, bool keep_all_ties,
          int threads, AtkfScratch& s, SignedSurvivors out[2]) {
  Chunks ch = make_chunks(size_t(numel), size_t(threads), kMinChunk);
  for (int sg = 0; sg < 2; ++sg) {
    s.chunk_pos[sg].resize(ch.parts);
    s.chunk_mag[sg].resize(ch.parts);
  }
  const uint32_t* absb = s.abs_bits.data();
  const std::vector<uint32_t>& chosen = s.chosen;
  parallel_for(ch.parts, threads, [&](size_t c) {
    const size_t b = ch.begin(c), e = ch.end(c);
    uint32_t* pos[2];
    float* mag[2];
    for (int sg = 0; sg < 2; ++sg) {
      s.chunk_pos[sg][c].resize(e - b + 1);
      s.chunk_mag[sg][c].resize(e - b + 1);
      pos[sg] = s.chunk_pos[sg][c].data();
      mag[sg] = s.chunk_mag[sg][c].data();
    }
    size_t cnt[2] = {0, 0};
    size_t next = size_t(std::lower_bound(chosen.begin(), chosen.end(), uint32_t(b)) - chosen.begin());
    for (size_t i = b; i < e; ++i) {
      Key k = key_at(i);
      bool keep = k > tau;
      if (k == tau && tau != 0) {
        if (keep_all_ties) {
          keep = true;
        } else if (next < chosen.size() && chosen[next] == i) {
          keep = true;
          ++next;
        }
      }
      uint32_t sg = sign_of(x, dtype, i);
      pos[sg][cnt[sg]] = uint32_t(i);  // branch-free: written always, counted if kept
      mag[sg][cnt[sg]] = bits_f32(absb[i]);
      cnt[sg] += keep;
    }
    for (int sg = 0; sg < 2; ++sg) {
      s.chunk_pos[sg][c].resize(cnt[sg]);
      s.chunk_mag[sg][c].resize(cnt[sg]);
    }
  });
  for (int sg = 0; sg < 2; ++sg) {
    size_t total = 0;
    for (size_t c = 0; c < ch.parts; ++c) total += s.chunk_pos[sg][c].size();
    out[sg].pos.resize(total);
    out[sg].mag.resize(total);
    size_t off = 0;
    for (size_t c = 0; c < ch.parts; ++c) {
      const auto& p = s.chunk_pos[sg][c];
      const auto& m = s.chunk_mag[sg][c];
      if (!p.empty()) {
        std::memcpy(out[sg].pos.data() + off, p.data(), p.size() * 4);
        std::memcpy(out[sg].mag.data() + off, m.data(), m.size() * 4);
      }
      off += p.size();
    }
  }
}

// Collect indices whose key equals tau (ascending).
template <class KeyAt>
void collect_ties(uint64_t numel, KeyAt key_at, decltype(key_at(0)) tau, int threads, AtkfScratch& s) {
  Chunks ch = make_chunks(size_t(numel), size_t(threads), kMinChunk);
  s.chunk_idx.resize(ch.parts);
  parallel_for(ch.parts, threads, [&](size_t c) {
    auto& v = s.chunk_idx[c];
    v.clear();
    for (size_t i = ch.begin(c); i < ch.end(c); ++i)
      if (key_at(i) == tau) v.push_back(uint32_t(i));
  });
  s.chosen.clear();
  for (size_t c = 0; c < ch.parts; ++c) s.chosen.insert(s.chosen.end(), s.chunk_idx[c].begin(), s.chunk_idx[c].end());
}

template <class Key, class KeyAt>
void select_and_emit(const void* x, collab_dtype dtype, uint64_t numel, uint64_t k, const Key* keys, KeyAt key_at,
                     uint64_t seed, int threads, std::vector<Key>& cand, std::vector<std::vector<Key>>& chunk_cand,
                     AtkfScratch& s, SignedSurvivors out[2]) {
  SelectResult<Key> r = kth_largest(keys, size_t(numel), k, threads, cand, chunk_cand);
  const uint64_t need = k - r.greater;  // 1 <= need <= r.equal
  bool keep_all_ties = need == r.equal;
  s.chosen.clear();
  if (r.tau != 0 && !keep_all_ties) {
    collect_ties(numel, key_at, r.tau, threads, s);
    choose_ties(s.chosen, need, seed);
  }
  // tau == 0: the fill would pick zeros, which carry nothing; all non-zeros survive.
  emit(x, dtype, numel, key_at, r.tau, keep_all_ties, threads, s, out);
}

}  // namespace

void atkf_select(const void* x, collab_dtype dtype, uint64_t numel, double sparsity, double lam, uint64_t seed,
                 int threads, AtkfScratch& s, SignedSurvivors out[2]) {
  for (int sg = 0; sg < 2; ++sg) {
    out[sg].pos.clear();
    out[sg].mag.clear();
  }
  s.abs_bits.resize(size_t(numel));
  const Kernels& kern = kernels();
  Chunks ch = make_chunks(size_t(numel), size_t(threads), kMinChunk);
  std::vector<char> ok(ch.parts, 1);
  const size_t esize = dtype_size(dtype);
  parallel_for(ch.parts, threads, [&](size_t c) {
    size_t b = ch.begin(c);
    ok[c] = kern.abs_bits(static_cast<const uint8_t*>(x) + b * esize, dtype, ch.end(c) - b, s.abs_bits.data() + b);
  });
  for (char v : ok)
    if (!v) fail(COLLAB_ERR_NONFINITE_INPUT, "input contains NaN or Inf");

  const uint64_t k = k_keep_for(numel, sparsity);
  if (k == 0) return;

  if (lam == 0.0) {
    const uint32_t* keys = s.abs_bits.data();
    auto key_at = [keys](size_t i) { return keys[i]; };
    select_and_emit<uint32_t>(x, dtype, numel, k, keys, key_at, seed, threads, s.cand32, s.chunk_cand32, s, out);
  } else {
    s.keys64.resize(size_t(numel));
    parallel_for(ch.parts, threads, [&](size_t c) {
      for (size_t i = ch.begin(c); i < ch.end(c); ++i) s.keys64[i] = asym_key(s.abs_bits[i], sign_of(x, dtype, i), lam);
    });
    const uint64_t* keys = s.keys64.data();
    auto key_at = [keys](size_t i) { return keys[i]; };
    select_and_emit<uint64_t>(x, dtype, numel, k, keys, key_at, seed, threads, s.cand64, s.chunk_cand64, s, out);
  }
}

}  // namespace collab
