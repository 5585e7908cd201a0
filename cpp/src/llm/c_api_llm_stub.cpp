// The LLM section of the C API in a core built without llama.cpp (COLLAB_LLAMA=OFF or not
// found): every call reports COLLAB_ERR_UNSUPPORTED with a message saying why, so apps that
// only need the codec and the ViT parts link the same header.
#include <cstring>

#include "common/errors.hpp"

namespace {
collab_status unsupported() {
  collab::set_last_error("this collab core was built without llama.cpp (COLLAB_LLAMA=OFF)");
  return COLLAB_ERR_UNSUPPORTED;
}
}  // namespace

extern "C" {

int32_t collab_llm_available(void) { return 0; }
void collab_llm_session_params_init(collab_llm_session_params* p) {
  if (!p) return;
  std::memset(p, 0, sizeof *p);
}
collab_status collab_llm_model_load(const char*, collab_llm_model** model) {
  if (model) *model = nullptr;
  return unsupported();
}
collab_status collab_llm_model_load_rpc(const char*, const char*, int32_t, collab_llm_model** model) {
  if (model) *model = nullptr;
  return unsupported();
}
void collab_llm_model_free(collab_llm_model*) {}
collab_status collab_llm_model_info_get(const collab_llm_model*, collab_llm_model_info*) { return unsupported(); }
collab_status collab_llm_model_tokenize(const collab_llm_model*, const char*, size_t, int32_t, int32_t, int32_t*, size_t,
                                  size_t*) {
  return unsupported();
}
collab_status collab_llm_model_token_to_piece(const collab_llm_model*, int32_t, char*, size_t, size_t*) {
  return unsupported();
}
int32_t collab_llm_model_token_is_eog(const collab_llm_model*, int32_t) { return 0; }
collab_status collab_llm_model_chat_prompt(const collab_llm_model*, const char*, char*, size_t, size_t*) {
  return unsupported();
}
collab_status collab_llm_session_new(collab_llm_model*, const collab_llm_session_params*, collab_llm_session** s) {
  if (s) *s = nullptr;
  return unsupported();
}
void collab_llm_session_free(collab_llm_session*) {}
int32_t collab_llm_session_n_past(const collab_llm_session*) { return -1; }
int32_t collab_llm_session_n_ctx(const collab_llm_session*) { return -1; }
collab_status collab_llm_session_truncate(collab_llm_session*, int32_t) { return unsupported(); }
collab_status collab_llm_session_decode_tokens(collab_llm_session*, const int32_t*, size_t, int32_t, float*, size_t) {
  return unsupported();
}
collab_status collab_llm_session_decode_rows(collab_llm_session*, const float*, size_t, int32_t, float*, size_t) {
  return unsupported();
}
collab_status collab_llm_session_state_size(collab_llm_session*, size_t*) { return unsupported(); }
collab_status collab_llm_session_state_get(collab_llm_session*, void*, size_t, size_t*) { return unsupported(); }
collab_status collab_llm_session_state_set(collab_llm_session*, const void*, size_t) { return unsupported(); }

}  // extern "C"
