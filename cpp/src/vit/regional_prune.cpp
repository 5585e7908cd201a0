#include "vit/regional_prune.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/dtype.hpp"
#include "common/errors.hpp"

namespace collab {
namespace vit {

namespace {

int64_t isqrt64(int64_t n) {
  int64_t r = int64_t(std::sqrt(double(n)));
  while (r * r > n) --r;
  while ((r + 1) * (r + 1) <= n) ++r;
  return r;
}

float load(const void* data, collab_dtype dt, size_t i) {
  switch (dt) {
    case COLLAB_DTYPE_F32: return static_cast<const float*>(data)[i];
    case COLLAB_DTYPE_F16: return f16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case COLLAB_DTYPE_BF16: return bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
  }
  return 0.f;
}

}  // namespace

PruneGeometry prune_geometry(const collab_tensor& attn, int32_t region, int32_t has_cls, int64_t n_prune) {
  PruneGeometry g;
  COLLAB_ARG_CHECK(attn.ndim == 2 || attn.ndim == 3, "attention outputs must be (T, C) or (B, T, C), got %d dims",
                   int(attn.ndim));
  COLLAB_ARG_CHECK(has_cls == 0 || has_cls == 1, "has_cls must be 0 or 1");
  COLLAB_ARG_CHECK(region >= 1, "region must be >= 1, got %d", int(region));
  g.batch = attn.ndim == 3 ? attn.shape[0] : 1;
  g.tokens = attn.shape[attn.ndim - 2];
  g.channels = attn.shape[attn.ndim - 1];
  COLLAB_ARG_CHECK(g.batch >= 1 && g.channels >= 1, "empty batch or channel dimension");
  g.has_cls = has_cls != 0;
  const int64_t n = g.tokens - (g.has_cls ? 1 : 0);
  COLLAB_ARG_CHECK(n >= 1, "no grid tokens (T = %lld)", (long long)g.tokens);
  COLLAB_ARG_CHECK(n <= (int64_t(1) << 16), "%lld grid tokens is more than this kernel supports (65536)", (long long)n);
  g.grid = isqrt64(n);
  COLLAB_ARG_CHECK(g.grid * g.grid == n, "%lld grid tokens do not form a square grid", (long long)n);
  COLLAB_ARG_CHECK(g.grid % region == 0, "grid side %lld is not divisible by region %d", (long long)g.grid, int(region));
  g.region = region;
  const int64_t max_k = n - n / (int64_t(region) * region);
  COLLAB_ARG_CHECK(n_prune >= 0 && n_prune <= max_k, "n_prune %lld out of range [0, %lld]", (long long)n_prune,
                   (long long)max_k);
  g.n_prune = n_prune;
  return g;
}

int64_t n_prune_for_rate(int64_t n_patches, int32_t region, double rate) {
  COLLAB_ARG_CHECK(std::isfinite(rate) && rate >= 0, "rate must be finite and >= 0");
  COLLAB_ARG_CHECK(region >= 1 && n_patches >= 1, "bad region or token count");
  const int64_t max_k = n_patches - n_patches / (int64_t(region) * region);
  const double kd = std::floor(rate * double(n_patches) + 0.5);
  COLLAB_ARG_CHECK(kd <= double(max_k), "rate %g prunes more than the %lld tokens region %d allows", rate,
                   (long long)max_k, int(region));
  return int64_t(kd);
}

void select_kept(const double* sim, const PruneGeometry& g, int64_t* kept) {
  const int64_t n = g.n_patches(), k = g.grid, l = g.region;
  std::vector<double> s(size_t(n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    double acc = 0.0;
    for (int64_t j = 0; j < n; ++j) acc += sim[i * n + j];
    s[size_t(i)] = acc;
  }
  std::vector<char> preserved(size_t(n), 0);
  std::vector<int64_t> pres;
  for (int64_t p = 0; p < k / l; ++p)
    for (int64_t q = 0; q < k / l; ++q) {
      int64_t best = -1;
      double bv = 0;
      for (int64_t u = 0; u < l; ++u)
        for (int64_t v = 0; v < l; ++v) {
          const int64_t idx = (p * l + u) * k + (q * l + v);
          if (best < 0 || s[size_t(idx)] > bv) {
            best = idx;
            bv = s[size_t(idx)];
          }
        }
      preserved[size_t(best)] = 1;
      pres.push_back(best);
    }
  std::vector<int64_t> rest;
  std::vector<double> msim(size_t(n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    if (preserved[size_t(i)]) continue;
    double m = -INFINITY;
    for (int64_t j : pres) m = std::max(m, sim[i * n + j]);
    msim[size_t(i)] = m;
    rest.push_back(i);
  }
  std::stable_sort(rest.begin(), rest.end(), [&](int64_t a, int64_t b) { return msim[size_t(a)] > msim[size_t(b)]; });
  std::vector<char> pruned(size_t(n), 0);
  for (int64_t r = 0; r < g.n_prune; ++r) pruned[size_t(rest[size_t(r)])] = 1;
  int64_t o = 0;
  const int64_t off = g.has_cls ? 1 : 0;
  if (g.has_cls) kept[o++] = 0;
  for (int64_t i = 0; i < n; ++i)
    if (!pruned[size_t(i)]) kept[o++] = i + off;
}

void regional_prune_cpu(const collab_tensor& attn, const PruneGeometry& g, int64_t* kept) {
  const int64_t n = g.n_patches(), c = g.channels, off = g.has_cls ? 1 : 0;
  std::vector<double> u(size_t(n * c)), sim(size_t(n * n));
  for (int64_t b = 0; b < g.batch; ++b) {
    const size_t base = size_t(b * g.tokens * c);
    for (int64_t i = 0; i < n; ++i) {
      double nn = 0.0;
      double* row = &u[size_t(i * c)];
      for (int64_t ch = 0; ch < c; ++ch) {
        const float f = load(attn.data, collab_dtype(attn.dtype), base + size_t((i + off) * c + ch));
        if (!std::isfinite(f)) fail(COLLAB_ERR_NONFINITE_INPUT, "attention outputs contain NaN or Inf (image %lld)", (long long)b);
        row[ch] = double(f);
        nn += row[ch] * row[ch];
      }
      const double norm = std::max(std::sqrt(nn), 1e-300);  // divide (not * 1/norm): same rounding as the reference
      for (int64_t ch = 0; ch < c; ++ch) row[ch] /= norm;
    }
    // CLS is never part of the grid, but NaN there is still bad input
    if (g.has_cls)
      for (int64_t ch = 0; ch < c; ++ch)
        if (!std::isfinite(load(attn.data, collab_dtype(attn.dtype), base + size_t(ch))))
          fail(COLLAB_ERR_NONFINITE_INPUT, "attention outputs contain NaN or Inf (image %lld)", (long long)b);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i; j < n; ++j) {
        const double* a = &u[size_t(i * c)];
        const double* bb = &u[size_t(j * c)];
        double acc = 0.0;
        for (int64_t ch = 0; ch < c; ++ch) acc += a[ch] * bb[ch];
        sim[size_t(i * n + j)] = acc;
        sim[size_t(j * n + i)] = acc;
      }
    select_kept(sim.data(), g, kept + b * g.n_kept());
  }
}

}  // namespace vit
}  // namespace collab
