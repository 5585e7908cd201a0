// collab_fcnet_* without llama.cpp/ggml in the build: every call reports COLLAB_ERR_UNSUPPORTED.
#include "common/errors.hpp"

extern "C" {

static collab_status fcnet_unsupported() {
  collab::set_last_error("collab was built without llama.cpp/ggml (COLLAB_LLAMA=OFF): no FC nets");
  return COLLAB_ERR_UNSUPPORTED;
}

collab_status collab_fcnet_load(const void*, size_t, collab_fcnet_kind, int32_t, const uint8_t*, collab_fcnet** net) {
  if (net) *net = nullptr;
  return fcnet_unsupported();
}
collab_status collab_fcnet_load_file(const char*, collab_fcnet_kind, int32_t, const uint8_t*, collab_fcnet** net) {
  if (net) *net = nullptr;
  return fcnet_unsupported();
}
void collab_fcnet_free(collab_fcnet*) {}
collab_status collab_fcnet_info_get(const collab_fcnet*, collab_fcnet_info*) { return fcnet_unsupported(); }
collab_status collab_fcnet_apply(collab_fcnet*, collab_fcnet_op, const float*, size_t, float*, size_t, int32_t) {
  return fcnet_unsupported();
}

}  // extern "C"
