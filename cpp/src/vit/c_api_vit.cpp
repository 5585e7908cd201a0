// C API of the Mercury ViT kernels: argument checks, CPU/CUDA dispatch, exception translation.

#include "common/c_api_checks.hpp"
#include "common/dtype.hpp"
#include "common/errors.hpp"
#include "vit/regional_prune.hpp"

#if defined(COLLAB_WITH_CUDA)
#include "cuda/mercury_cuda.hpp"
#endif

using namespace collab;

extern "C" {

collab_status collab_vit_prune_count(int64_t n_patches, int32_t region, double rate, int64_t* n_prune) {
  return guarded([&] {
    require_non_null({{n_prune, "n_prune"}});
    *n_prune = vit::n_prune_for_rate(n_patches, region, rate);
  });
}

collab_status collab_vit_regional_prune(const collab_tensor* attn, int32_t region, int32_t has_cls, int64_t n_prune,
                                        int64_t* kept, size_t kept_len) {
  return guarded([&] {
    require_tensor(attn, "attn");
    require_non_null({{kept, "kept"}, {attn->data, "attn data"}});
    const int dev = attn->device;
    const vit::PruneGeometry g = vit::prune_geometry(*attn, region, has_cls, n_prune);
    COLLAB_ARG_CHECK(kept_len == size_t(g.batch * g.n_kept()), "kept holds %zu entries, %lld needed", kept_len,
                     (long long)(g.batch * g.n_kept()));
    if (dev == COLLAB_DEVICE_CUDA) {
#if defined(COLLAB_WITH_CUDA)
      cuda::regional_prune(*attn, g, kept);
      return;
#else
      fail(COLLAB_ERR_NO_DEVICE, "this build of collab has no CUDA support");
#endif
    }
    vit::regional_prune_cpu(*attn, g, kept);
  });
}

}  // extern "C"
