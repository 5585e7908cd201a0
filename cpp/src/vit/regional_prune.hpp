// Mercury regionally decentralized token pruning (Algorithm 1, Eq. 11-18), CPU kernel.
// Conventions (shared with python/collab/reference/mercury.py and the CUDA kernel):
//   * tokens (T, C) per image; with has_cls token 0 is CLS, always kept, outside the grid;
//     the other N = k*k tokens form a row-major k x k grid, region l divides k.
//   * Eq. 11 cosine similarity in double; a zero vector normalises to zero (similarity 0).
//   * Eq. 12 s_i = sum_j Sim_ij (j = 0..N-1 in order, self included).
//   * Eq. 15 argmax inside each l x l subregion, ties to the first in row-major order.
//   * Eq. 18 prune the K non-preserved tokens with the largest max-similarity to the
//     preserved set, ties to the lower index.
//   * output: the T - K kept indices into the T tokens, ascending.
#pragma once

#include <cstdint>
#include <vector>

#include "collab/collab.h"

namespace collab {
namespace vit {

struct PruneGeometry {
  int64_t batch = 1, tokens = 0, channels = 0;
  int64_t grid = 0;   // k
  int64_t region = 2; // l
  int64_t n_prune = 0;
  bool has_cls = true;
  int64_t n_patches() const { return grid * grid; }
  int64_t n_kept() const { return tokens - n_prune; }
};

// Validate the tensor and parameters; throws collab::Error (INVALID_ARGUMENT) on bad input.
PruneGeometry prune_geometry(const collab_tensor& attn, int32_t region, int32_t has_cls, int64_t n_prune);

// K for a rate in [0, 1 - 1/l^2]: floor(rate * N + 0.5); throws on a bad rate.
int64_t n_prune_for_rate(int64_t n_patches, int32_t region, double rate);

// Selection on one image given the N x N similarity matrix (row-major doubles): writes the
// kept indices (ascending, CLS offset applied) to kept[0, n_kept). Host code shared by the
// CPU path and the CUDA path (which computes sim on the device).
void select_kept(const double* sim, const PruneGeometry& g, int64_t* kept);

// CPU path over the whole batch; input must be host memory. Throws NONFINITE_INPUT on NaN/Inf.
void regional_prune_cpu(const collab_tensor& attn, const PruneGeometry& g, int64_t* kept);

}  // namespace vit
}  // namespace collab
