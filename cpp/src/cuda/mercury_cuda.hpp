// CUDA path of Mercury's regional pruning (same API as the CPU path: collab_vit_regional_prune
// with a tensor whose device is COLLAB_DEVICE_CUDA). The O(B N^2 C) part (normalisation and
// the cosine similarity matrix, double precision, same per-element summation order as the
// CPU kernel) runs on the GPU; the N x N matrices come back to the host, where the shared
// selection code (vit::select_kept) picks the kept tokens exactly as the CPU path does.
#pragma once

#include <cstdint>

#include "collab/collab.h"
#include "vit/regional_prune.hpp"

namespace collab {
namespace cuda {

void regional_prune(const collab_tensor& attn, const vit::PruneGeometry& g, int64_t* kept);

}  // namespace cuda
}  // namespace collab
