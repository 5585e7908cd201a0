// C API of the split LLM runner (built with llama.cpp): argument checks and exception
// translation around collab::llm::Model / Session.
#include <cstring>
#include <string>

#include "common/c_api_checks.hpp"
#include "common/errors.hpp"
#include "llm/c_api_llm_types.hpp"

using namespace collab;


namespace {

void copy_out(const std::string& s, char* buf, size_t capacity, size_t* written) {
  require_non_null({{written, "written"}});
  require_buffer(buf, capacity, "buf");
  *written = s.size();
  if (capacity < s.size()) fail(COLLAB_ERR_BUFFER_TOO_SMALL, "needs %zu bytes, buffer has %zu", s.size(), capacity);
  if (!s.empty()) std::memcpy(buf, s.data(), s.size());
}

}  // namespace

extern "C" {

int32_t collab_llm_available(void) { return 1; }

void collab_llm_session_params_init(collab_llm_session_params* p) {
  if (!p) return;
  std::memset(p, 0, sizeof *p);
  p->role = COLLAB_LLM_FULL;
}

collab_status collab_llm_model_load(const char* path, collab_llm_model** model) {
  return guarded([&] {
    if (model) *model = nullptr;
    require_non_null({{path, "path"}, {model, "model"}});
    *model = new collab_llm_model(path);
  });
}

collab_status collab_llm_model_load_rpc(const char* path, const char* endpoint, int32_t n_remote_layers,
                                        collab_llm_model** model) {
  return guarded([&] {
    if (model) *model = nullptr;
    require_non_null({{path, "path"}, {endpoint, "endpoint"}, {model, "model"}});
    *model = new collab_llm_model(path, endpoint, n_remote_layers);
  });
}

void collab_llm_model_free(collab_llm_model* model) { delete model; }

collab_status collab_llm_model_info_get(const collab_llm_model* model, collab_llm_model_info* info) {
  return guarded([&] {
    require_non_null({{model, "model"}, {info, "info"}});
    *info = model->m.info();
  });
}

collab_status collab_llm_model_tokenize(const collab_llm_model* model, const char* text, size_t len, int32_t add_special,
                                  int32_t parse_special, int32_t* tokens, size_t capacity, size_t* n_tokens) {
  return guarded([&] {
    require_non_null({{model, "model"}, {n_tokens, "n_tokens"}});
    require_buffer(tokens, capacity, "tokens");
    COLLAB_ARG_CHECK(text != nullptr || len == 0, "text is NULL");
    auto t = model->m.tokenize(text, len, add_special != 0, parse_special != 0);
    *n_tokens = t.size();
    if (capacity < t.size())
      fail(COLLAB_ERR_BUFFER_TOO_SMALL, "needs %zu tokens, buffer has %zu", t.size(), capacity);
    if (!t.empty()) std::memcpy(tokens, t.data(), t.size() * sizeof(int32_t));
  });
}

collab_status collab_llm_model_token_to_piece(const collab_llm_model* model, int32_t token, char* buf, size_t capacity,
                                        size_t* written) {
  return guarded([&] {
    require_non_null({{model, "model"}});
    copy_out(model->m.piece(token), buf, capacity, written);
  });
}

int32_t collab_llm_model_token_is_eog(const collab_llm_model* model, int32_t token) {
  return model && model->m.is_eog(token) ? 1 : 0;
}

collab_status collab_llm_model_chat_prompt(const collab_llm_model* model, const char* user, char* buf, size_t capacity,
                                     size_t* written) {
  return guarded([&] {
    require_non_null({{model, "model"}, {user, "user"}});
    copy_out(model->m.chat_prompt(user), buf, capacity, written);
  });
}

collab_status collab_llm_session_new(collab_llm_model* model, const collab_llm_session_params* params,
                                     collab_llm_session** session) {
  return guarded([&] {
    if (session) *session = nullptr;
    require_non_null({{model, "model"}, {params, "params"}, {session, "session"}});
    *session = new collab_llm_session(model, *params);
  });
}

void collab_llm_session_free(collab_llm_session* session) { delete session; }

int32_t collab_llm_session_n_past(const collab_llm_session* session) { return session ? session->s.n_past() : -1; }
int32_t collab_llm_session_n_ctx(const collab_llm_session* session) { return session ? session->s.n_ctx() : -1; }

collab_status collab_llm_session_truncate(collab_llm_session* session, int32_t n_past) {
  return guarded([&] {
    require_non_null({{session, "session"}});
    session->s.truncate(n_past);
  });
}

collab_status collab_llm_session_decode_tokens(collab_llm_session* session, const int32_t* tokens, size_t n,
                                       int32_t n_outputs, float* out, size_t capacity) {
  return guarded([&] {
    require_non_null({{session, "session"}});
    require_buffer(tokens, n, "tokens");
    require_buffer(out, capacity, "out");
    session->s.decode_tokens(tokens, n, n_outputs, out, capacity);
  });
}

collab_status collab_llm_session_decode_rows(collab_llm_session* session, const float* rows, size_t n, int32_t n_outputs,
                                     float* logits, size_t capacity) {
  return guarded([&] {
    require_non_null({{session, "session"}});
    require_buffer(rows, n, "rows");
    require_buffer(logits, capacity, "logits");
    session->s.decode_rows(rows, n, n_outputs, logits, capacity);
  });
}

collab_status collab_llm_session_state_size(collab_llm_session* session, size_t* nbytes) {
  return guarded([&] {
    require_non_null({{session, "session"}, {nbytes, "nbytes"}});
    *nbytes = session->s.state_size();
  });
}

collab_status collab_llm_session_state_get(collab_llm_session* session, void* buf, size_t capacity, size_t* written) {
  return guarded([&] {
    require_non_null({{session, "session"}, {written, "written"}});
    require_buffer(buf, capacity, "buf");
    *written = 0;
    *written = session->s.state_get(buf, capacity);
  });
}

collab_status collab_llm_session_state_set(collab_llm_session* session, const void* buf, size_t len) {
  return guarded([&] {
    require_non_null({{session, "session"}});
    require_buffer(buf, len, "buf");
    session->s.state_set(buf, len);
  });
}

}  // extern "C"
