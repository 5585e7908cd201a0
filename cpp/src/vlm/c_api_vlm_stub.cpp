// The VLM section of the C API in a core built without llama.cpp's mtmd: every call reports
// COLLAB_ERR_UNSUPPORTED with the reason.
#include "common/errors.hpp"

namespace {
collab_status unsupported() {
  collab::set_last_error("this collab core was built without llama.cpp's mtmd library (libmtmd)");
  return COLLAB_ERR_UNSUPPORTED;
}
}  // namespace

extern "C" {

int32_t collab_vlm_available(void) { return 0; }
collab_status collab_vlm_vision_load(const char*, const collab_llm_model*, int32_t, collab_vlm_vision** vision) {
  if (vision) *vision = nullptr;
  return unsupported();
}
void collab_vlm_vision_free(collab_vlm_vision*) {}
collab_status collab_vlm_vision_info_get(const collab_vlm_vision*, collab_vlm_vision_info*) { return unsupported(); }
collab_status collab_vlm_vision_encode(collab_vlm_vision*, const uint8_t*, int32_t, int32_t, float*, size_t) {
  return unsupported();
}

collab_status collab_vlm_device_new(collab_llm_model*, collab_vlm_vision*, collab_fcnet*,
                                    const collab_vlm_device_params*, collab_vlm_device** device) {
  if (device) *device = nullptr;
  return unsupported();
}
void collab_vlm_device_free(collab_vlm_device*) {}
collab_status collab_vlm_device_ask(collab_vlm_device*, const uint8_t*, size_t, const char*,
                                    const collab_transport*, collab_llm_token_callback, void*,
                                    collab_vlm_answer_info* info) {
  if (info) *info = collab_vlm_answer_info{};
  return unsupported();
}

}  // extern "C"
