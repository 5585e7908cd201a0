// The C API names from before the collab_<object>_<verb> convention, kept for one release
// as thin forwards (declared deprecated in collab.h). Nothing else belongs here: when the
// release passes, this file is deleted with the declarations at the end of collab.h.
#include <cstdint>

#define COLLAB_NO_DEPRECATION_WARNINGS
#include "collab/collab.h"

extern "C" {

void collab_set_num_threads(int32_t n) { collab_num_threads_set(n); }
int32_t collab_get_num_threads(void) { return collab_num_threads_get(); }
const char* collab_get_simd(void) { return collab_simd_get(); }
collab_status collab_set_simd(const char* level) { return collab_simd_set(level); }

collab_status collab_predict_bits(const int64_t* shape, int32_t ndim, const collab_codec_params* params,
                                  uint64_t* bits) {
  return collab_codec_predict_bits(shape, ndim, params, bits);
}
collab_status collab_encode_bound(const int64_t* shape, int32_t ndim, const collab_codec_params* params,
                                  size_t* nbytes) {
  return collab_codec_encode_bound(shape, ndim, params, nbytes);
}
collab_status collab_encode(collab_codec* codec, const collab_tensor* x, const collab_codec_params* params,
                            void* out, size_t capacity, size_t* written) {
  return collab_codec_encode(codec, x, params, out, capacity, written);
}
// collab_decode had no output limit (the caller allocated out): it keeps that behaviour.
collab_status collab_decode(collab_codec* codec, const void* frame, size_t len, const collab_tensor* out) {
  collab_codec_decode_params p;
  collab_codec_decode_params_init(&p);
  p.max_output_bytes = UINT64_MAX;
  return collab_codec_decode(codec, frame, len, &p, out);
}

collab_status collab_llm_tokenize(const collab_llm_model* model, const char* text, size_t len, int32_t add_special,
                                  int32_t parse_special, int32_t* tokens, size_t capacity, size_t* n_tokens) {
  return collab_llm_model_tokenize(model, text, len, add_special, parse_special, tokens, capacity, n_tokens);
}
collab_status collab_llm_token_to_piece(const collab_llm_model* model, int32_t token, char* buf, size_t capacity,
                                        size_t* written) {
  return collab_llm_model_token_to_piece(model, token, buf, capacity, written);
}
int32_t collab_llm_token_is_eog(const collab_llm_model* model, int32_t token) {
  return collab_llm_model_token_is_eog(model, token);
}
collab_status collab_llm_chat_prompt(const collab_llm_model* model, const char* user, char* buf, size_t capacity,
                                     size_t* written) {
  return collab_llm_model_chat_prompt(model, user, buf, capacity, written);
}
collab_status collab_llm_decode_tokens(collab_llm_session* session, const int32_t* tokens, size_t n,
                                       int32_t n_outputs, float* out, size_t capacity) {
  return collab_llm_session_decode_tokens(session, tokens, n, n_outputs, out, capacity);
}
collab_status collab_llm_decode_rows(collab_llm_session* session, const float* rows, size_t n, int32_t n_outputs,
                                     float* logits, size_t capacity) {
  return collab_llm_session_decode_rows(session, rows, n, n_outputs, logits, capacity);
}
collab_status collab_llm_state_size(collab_llm_session* session, size_t* nbytes) {
  return collab_llm_session_state_size(session, nbytes);
}
collab_status collab_llm_state_get(collab_llm_session* session, void* buf, size_t capacity, size_t* written) {
  return collab_llm_session_state_get(session, buf, capacity, written);
}
collab_status collab_llm_state_set(collab_llm_session* session, const void* buf, size_t len) {
  return collab_llm_session_state_set(session, buf, len);
}

}  // extern "C"
