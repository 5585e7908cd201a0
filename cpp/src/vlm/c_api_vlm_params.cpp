// The parts of the VLM device's API that need no libmtmd (the same in every build): parameter
// defaults and the image resize.
#include <cstring>

#include "common/c_api_checks.hpp"
#include "common/errors.hpp"
#include "vlm/image.hpp"

extern "C" {

void collab_vlm_device_params_init(collab_vlm_device_params* params) {
  if (!params) return;
  params->mode = COLLAB_VLM_SHORTCUT;
  params->code_dtype = COLLAB_VLM_CODE_F16;
  params->max_tokens = 16;
  params->n_ctx = 512;
  params->n_threads = 2;
  params->timeout_ms = 300000;
  params->task = nullptr;
}

collab_status collab_vlm_image_resize(const uint8_t* rgb, uint32_t w, uint32_t h, uint32_t size, uint8_t* out,
                                      size_t capacity) {
  return collab::guarded([&] {
    collab::require_non_null({{rgb, "rgb"}, {out, "out"}});
    const size_t need = size_t(size) * size * 3;
    if (capacity < need) collab::fail(COLLAB_ERR_BUFFER_TOO_SMALL, "out needs %zu bytes, has %zu", need, capacity);
    const std::vector<uint8_t> r = collab::vlm::resize_rgb(rgb, w, h, size);
    std::memcpy(out, r.data(), r.size());
  });
}

}  // extern "C"
