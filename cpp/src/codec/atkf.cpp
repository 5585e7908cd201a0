// ATKF in passes over the tensor, each a simple loop the SIMD kernels can run:
//   A. keys (|x| bits, or the asymmetric key when lam > 0), NaN/Inf check, and a histogram
//      of the top 11 key bits; the histogram names the bucket holding the k-th largest key.
//   B. the keys of that bucket are gathered and the exact threshold tau selected among them.
//   C. every element with key >= tau is appended, in index order, to its sign's list.
//   D. only if more elements tie at tau than slots remain: drop the ties the seeded choice
//      did not pick (inputs with exact duplicates at the threshold).
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
constexpr int kHistBits = 11, kHistBins = 1 << kHistBits;

inline uint32_t sign_bit(const void* x, collab_dtype dtype, size_t i) {
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

// The two key types: 32-bit |x| patterns run on the SIMD kernels; 64-bit asymmetric keys
// (lam > 0) use the same passes as plain loops.
template <class Key>
struct Keys;

template <>
struct Keys<uint32_t> {
  static constexpr int kShift = 31 - kHistBits;  // bit 31 of |x| is always 0
  static size_t select_range(const uint32_t* k, size_t n, uint32_t lo, uint32_t hi, uint32_t* out) {
    return kernels().select_range(k, n, lo, hi, out);
  }
  static void emit(const uint32_t* k, const void* x, collab_dtype dt, size_t n, uint32_t th, uint32_t first,
                   uint32_t* pos, size_t* np, uint32_t* neg, size_t* nn) {
    kernels().emit_by_sign(k, x, dt, n, th, first, pos, np, neg, nn);
  }
};

template <>
struct Keys<uint64_t> {
  static constexpr int kShift = 63 - kHistBits;
  static size_t select_range(const uint64_t* k, size_t n, uint64_t lo, uint64_t hi, uint64_t* out) {
    size_t c = 0;
    for (size_t i = 0; i < n; ++i) {
      out[c] = k[i];
      c += (k[i] >= lo) & (k[i] <= hi);
    }
    return c;
  }
  static void emit(const uint64_t* k, const void* x, collab_dtype dt, size_t n, uint64_t th, uint32_t first,
                   uint32_t* pos, size_t* np, uint32_t* neg, size_t* nn) {
    size_t a = *np, b = *nn;
    for (size_t i = 0; i < n; ++i) {
      const size_t in = k[i] >= th, sg = sign_bit(x, dt, i);
      pos[a] = first + uint32_t(i);
      neg[b] = first + uint32_t(i);
      a += in & (sg ^ 1);
      b += in & sg;
    }
    *np = a;
    *nn = b;
  }
};

template <class Key>
void select_and_emit(const void* x, collab_dtype dtype, uint64_t numel, uint64_t k, const Key* keys, uint64_t seed,
                     int threads, AtkfScratch& s, std::vector<Buffer<Key>>& chunk_cand, std::vector<Key>& cand,
                     SignedSurvivors out[2]) {
  constexpr int shift = Keys<Key>::kShift;
  uint64_t above = 0;
  uint32_t bucket = kHistBins - 1;
  for (;; --bucket) {
    if (above + s.hist[bucket] >= k) break;
    above += s.hist[bucket];
  }
  const Chunks ch = make_chunks(size_t(numel), size_t(threads), kMinChunk);
  const size_t esize = dtype_size(dtype);

  // B. candidates: the keys in the bucket.
  chunk_cand.resize(ch.parts);
  s.chunk_ncand.assign(ch.parts, 0);
  const Key lo = Key(bucket) << shift, hi = lo | ((Key(1) << shift) - 1);
  parallel_for(ch.parts, threads, [&](size_t c) {
    const size_t b = ch.begin(c), len = ch.end(c) - b;
    s.chunk_ncand[c] = Keys<Key>::select_range(keys + b, len, lo, hi, chunk_cand[c].ensure(len + 8));
  });
  size_t ncand = 0;
  for (size_t c = 0; c < ch.parts; ++c) ncand += s.chunk_ncand[c];
  if (cand.size() < ncand) cand.resize(ncand);
  for (size_t c = 0, at = 0; c < ch.parts; ++c) {
    if (s.chunk_ncand[c]) std::memcpy(cand.data() + at, chunk_cand[c].v.data(), s.chunk_ncand[c] * sizeof(Key));
    at += s.chunk_ncand[c];
  }
  const SelectResult<Key> r = kth_largest_in_place(cand.data(), ncand, k - above, shift);
  const Key tau = r.tau;
  const uint64_t need = k - above - r.greater;  // 1 <= need <= r.equal
  const bool partial_ties = tau != 0 && need < r.equal;

  // C. emission of key >= tau (key > 0 when tau == 0: the fill would pick zeros, which
  // carry nothing).
  const Key thresh = tau == 0 ? Key(1) : tau;
  for (int sg = 0; sg < 2; ++sg) {
    s.chunk_pos[sg].resize(ch.parts);
    s.chunk_count[sg].assign(ch.parts, 0);
  }
  parallel_for(ch.parts, threads, [&](size_t c) {
    const size_t b = ch.begin(c), len = ch.end(c) - b;
    Keys<Key>::emit(keys + b, static_cast<const uint8_t*>(x) + b * esize, dtype, len, thresh, uint32_t(b),
                    s.chunk_pos[0][c].ensure(len + 8), &s.chunk_count[0][c], s.chunk_pos[1][c].ensure(len + 8),
                    &s.chunk_count[1][c]);
  });
  for (int sg = 0; sg < 2; ++sg) {
    size_t total = 0;
    for (size_t c = 0; c < ch.parts; ++c) total += s.chunk_count[sg][c];
    out[sg].pos.resize(total);
    for (size_t c = 0, at = 0; c < ch.parts; ++c) {
      if (s.chunk_count[sg][c]) std::memcpy(out[sg].pos.data() + at, s.chunk_pos[sg][c].v.data(), s.chunk_count[sg][c] * 4);
      at += s.chunk_count[sg][c];
    }
  }

  // D. more ties than slots: keep the seeded choice only.
  if (partial_ties) {
    s.chosen.clear();
    for (int sg = 0; sg < 2; ++sg)
      for (uint32_t p : out[sg].pos)
        if (keys[p] == tau) s.chosen.push_back(p);
    choose_ties(s.chosen, need, seed);
    for (int sg = 0; sg < 2; ++sg) {
      size_t w = 0, next = 0;
      for (uint32_t p : out[sg].pos) {
        bool keep = keys[p] != tau;
        if (!keep) {
          while (next < s.chosen.size() && s.chosen[next] < p) ++next;
          keep = next < s.chosen.size() && s.chosen[next] == p;
        }
        out[sg].pos[w] = p;
        w += keep;
      }
      out[sg].pos.resize(w);
    }
  }
}

}  // namespace

void choose_ties(std::vector<uint32_t>& ties, uint64_t need, uint64_t seed) {
  std::vector<std::pair<uint64_t, uint32_t>> pr(ties.size());
  for (size_t i = 0; i < ties.size(); ++i) pr[i] = {tie_priority(seed, ties[i]), ties[i]};
  std::nth_element(pr.begin(), pr.begin() + ptrdiff_t(need - 1), pr.end());
  ties.resize(size_t(need));
  for (size_t i = 0; i < need; ++i) ties[i] = pr[i].second;
  std::sort(ties.begin(), ties.end());
}

void atkf_select(const void* x, collab_dtype dtype, uint64_t numel, double sparsity, double lam, uint64_t seed,
                 int threads, AtkfScratch& s, SignedSurvivors out[2]) {
  s.abs_bits.resize(size_t(numel));
  const uint64_t k = k_keep_for(numel, sparsity);
  const Kernels& kern = kernels();
  const Chunks ch = make_chunks(size_t(numel), size_t(threads), kMinChunk);
  std::vector<char> ok(ch.parts, 1);
  s.hist.assign(ch.parts * kHistBins * 4, 0);
  const size_t esize = dtype_size(dtype);
  if (lam != 0.0) s.keys64.resize(size_t(numel));

  // A. keys, finiteness, histogram of the top key bits.
  parallel_for(ch.parts, threads, [&](size_t c) {
    const size_t b = ch.begin(c), e = ch.end(c);
    uint32_t* keys = s.abs_bits.data();
    ok[c] = kern.abs_bits(static_cast<const uint8_t*>(x) + b * esize, dtype, e - b, keys + b);
    uint32_t* h = s.hist.data() + c * kHistBins * 4;
    if (k == 0) return;
    if (lam == 0.0) {
      // Four interleaved histograms: neighbouring elements often share a bucket, and one
      // histogram would serialise on store-to-load forwarding of the same counter.
      constexpr int sh = Keys<uint32_t>::kShift;
      size_t i = b;
      for (; i + 4 <= e; i += 4) {
        ++h[keys[i] >> sh];
        ++h[kHistBins + (keys[i + 1] >> sh)];
        ++h[2 * kHistBins + (keys[i + 2] >> sh)];
        ++h[3 * kHistBins + (keys[i + 3] >> sh)];
      }
      for (; i < e; ++i) ++h[keys[i] >> sh];
    } else {
      for (size_t i = b; i < e; ++i) {
        uint64_t key = asym_key(keys[i], sign_bit(x, dtype, i), lam);
        s.keys64[i] = key;
        ++h[key >> Keys<uint64_t>::kShift];
      }
    }
  });
  for (char v : ok)
    if (!v) fail(COLLAB_ERR_NONFINITE_INPUT, "input contains NaN or Inf");
  if (k == 0) {
    for (int sg = 0; sg < 2; ++sg) {
      out[sg].pos.resize(0);
      out[sg].mag.resize(0);
    }
    return;
  }
  for (size_t c = 1; c < ch.parts * 4; ++c)
    for (int b = 0; b < kHistBins; ++b) s.hist[size_t(b)] += s.hist[c * kHistBins + size_t(b)];

  if (lam == 0.0)
    select_and_emit<uint32_t>(x, dtype, numel, k, s.abs_bits.data(), seed, threads, s, s.chunk_cand32, s.cand32, out);
  else
    select_and_emit<uint64_t>(x, dtype, numel, k, s.keys64.data(), seed, threads, s, s.chunk_cand64, s.cand64, out);

  // Survivor magnitudes (float32 |x|), in list order.
  for (int sg = 0; sg < 2; ++sg) {
    const size_t n = out[sg].pos.size();
    out[sg].mag.resize(n);
    const uint32_t* p = out[sg].pos.data();
    float* m = out[sg].mag.data();
    const uint32_t* absb = s.abs_bits.data();
    for (size_t j = 0; j < n; ++j) m[j] = bits_f32(absb[p[j]]);
  }
}

}  // namespace collab
