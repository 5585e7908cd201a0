// C API tests of Mercury's regional pruning: known answers, ties, bad input (run under ASan).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "collab/collab.h"

#include "check.hpp"

static collab_tensor tensor(float* p, int64_t b, int64_t t, int64_t c) {
  collab_tensor x;
  std::memset(&x, 0, sizeof x);
  x.data = p;
  x.dtype = COLLAB_DTYPE_F32;
  x.ndim = 3;
  x.shape[0] = b;
  x.shape[1] = t;
  x.shape[2] = c;
  x.device = COLLAB_DEVICE_CPU;
  return x;
}

int main() {
  // Prune counts.
  int64_t k = -1;
  CHECK(collab_vit_prune_count(64, 2, 0.75, &k) == COLLAB_OK && k == 48);
  CHECK(collab_vit_prune_count(64, 2, 0.5, &k) == COLLAB_OK && k == 32);
  CHECK(collab_vit_prune_count(64, 2, 0.76, &k) == COLLAB_ERR_INVALID_ARGUMENT);
  CHECK(collab_vit_prune_count(64, 2, NAN, &k) == COLLAB_ERR_INVALID_ARGUMENT);
  CHECK(collab_vit_prune_count(64, 2, 0.5, nullptr) == COLLAB_ERR_INVALID_ARGUMENT);

  // All-zero tokens: every score ties, so each 2x2 region keeps its first token (row-major)
  // and the lowest-index others are pruned first.
  std::vector<float> z(1 * 17 * 3, 0.f);
  collab_tensor x = tensor(z.data(), 1, 17, 3);
  std::vector<int64_t> kept(17);
  CHECK(collab_vit_regional_prune(&x, 2, 1, 12, kept.data(), 5) == COLLAB_OK);
  const int64_t want[5] = {0, 1, 3, 9, 11};  // CLS + grid (0,0), (0,2), (2,0), (2,2)
  for (int i = 0; i < 5; ++i) CHECK(kept[size_t(i)] == want[i]);

  // Random input: CLS first, ascending, one kept token per region at the maximum rate.
  std::mt19937 gen(42);
  std::normal_distribution<float> nd;
  std::vector<float> r(2 * 65 * 8);
  for (auto& v : r) v = nd(gen);
  x = tensor(r.data(), 2, 65, 8);
  kept.assign(2 * 17, -1);
  CHECK(collab_vit_regional_prune(&x, 2, 1, 48, kept.data(), kept.size()) == COLLAB_OK);
  for (int b = 0; b < 2; ++b) {
    CHECK(kept[size_t(b * 17)] == 0);
    int cells[16] = {0};
    for (int i = 1; i < 17; ++i) {
      const int64_t t = kept[size_t(b * 17 + i)] - 1;
      CHECK(i == 1 || kept[size_t(b * 17 + i)] > kept[size_t(b * 17 + i - 1)]);
      if (t >= 0 && t < 64) cells[(t / 8 / 2) * 4 + (t % 8) / 2]++;
    }
    for (int cidx = 0; cidx < 16; ++cidx) CHECK(cells[cidx] == 1);
  }

  // Bad input.
  CHECK(collab_vit_regional_prune(&x, 2, 1, 48, kept.data(), kept.size() - 1) == COLLAB_ERR_INVALID_ARGUMENT);
  CHECK(collab_vit_regional_prune(&x, 2, 1, 49, kept.data(), kept.size()) == COLLAB_ERR_INVALID_ARGUMENT);
  CHECK(collab_vit_regional_prune(&x, 3, 1, 0, kept.data(), kept.size()) == COLLAB_ERR_INVALID_ARGUMENT);
  CHECK(collab_vit_regional_prune(&x, 0, 1, 0, kept.data(), kept.size()) == COLLAB_ERR_INVALID_ARGUMENT);
  CHECK(collab_vit_regional_prune(nullptr, 2, 1, 0, kept.data(), kept.size()) == COLLAB_ERR_INVALID_ARGUMENT);
  collab_tensor odd = tensor(r.data(), 1, 64, 8);  // 63 grid tokens: not square
  CHECK(collab_vit_regional_prune(&odd, 2, 1, 0, kept.data(), 64) == COLLAB_ERR_INVALID_ARGUMENT);
  r[70] = NAN;
  std::vector<int64_t> k2(2 * 65);
  CHECK(collab_vit_regional_prune(&x, 2, 1, 0, k2.data(), k2.size()) == COLLAB_ERR_NONFINITE_INPUT);
  collab_tensor cu = tensor(r.data(), 2, 65, 8);
  cu.device = COLLAB_DEVICE_CUDA;
  if (!collab_cuda_available()) CHECK(collab_vit_regional_prune(&cu, 2, 1, 0, k2.data(), k2.size()) == COLLAB_ERR_NO_DEVICE);

  if (failures) {
    std::fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  std::printf("vit prune C API tests passed\n");
  return 0;
}
