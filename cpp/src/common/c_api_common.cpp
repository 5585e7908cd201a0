// C API: version, errors, threads, SIMD selection, device query.
#include <cstring>

#include "collab/collab.h"
#include "common/c_api_checks.hpp"
#include "common/errors.hpp"
#include "common/thread_pool.hpp"
#include "simd/kernels.hpp"

#if defined(COLLAB_WITH_CUDA)
#include "cuda/slicer_cuda.hpp"
#endif

namespace collab {
const char* last_error() noexcept;
}

extern "C" {

const char* collab_version(void) { return "0.1.0"; }

const char* collab_status_string(collab_status status) {
  switch (status) {
    case COLLAB_OK: return "ok";
    case COLLAB_ERR_INVALID_ARGUMENT: return "invalid argument";
    case COLLAB_ERR_NONFINITE_INPUT: return "input contains NaN or Inf";
    case COLLAB_ERR_BUFFER_TOO_SMALL: return "output buffer too small";
    case COLLAB_ERR_FRAME: return "malformed frame";
    case COLLAB_ERR_UNSUPPORTED: return "unsupported";
    case COLLAB_ERR_OUT_OF_MEMORY: return "out of memory";
    case COLLAB_ERR_NO_DEVICE: return "no CUDA device";
    case COLLAB_ERR_DEVICE: return "CUDA error";
    case COLLAB_ERR_INTERNAL: return "internal error";
    case COLLAB_ERR_TRANSPORT: return "transport error";
  }
  return "unknown status";
}

const char* collab_last_error(void) { return collab::last_error(); }

void collab_num_threads_set(int32_t n) { collab::set_default_num_threads(n); }
int32_t collab_num_threads_get(void) { return collab::default_num_threads(); }

const char* collab_simd_get(void) { return collab::kernels().name; }

collab_status collab_simd_set(const char* level) {
  return collab::guarded([&] {
    collab::require_non_null({{level, "level"}});
    if (!collab::set_kernels(level))
      collab::fail(COLLAB_ERR_UNSUPPORTED, "SIMD level '%s' is not available on this CPU/build", level);
  });
}

int32_t collab_cuda_available(void) {
#if defined(COLLAB_WITH_CUDA)
  return collab::cuda::device_count() > 0 ? 1 : 0;
#else
  return 0;
#endif
}

}  // extern "C"
