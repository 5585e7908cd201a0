// C API of the split LLM runner (built with llama.cpp): argument checks and exception
// translation around collab::llm::Model / Session.
#include <cstring>
#include <string>

#include "common/errors.hpp"
#include "llm/llm_runner.hpp"

using namespace collab;

struct collab_llm_model {
  explicit collab_llm_model(const char* path, const char* rpc = nullptr, int32_t n_remote = 0) : m(path, rpc, n_remote) {}
  llm::Model m;
};

struct collab_llm_session {
  collab_llm_session(collab_llm_model* model, const collab_llm_session_params& p) : s(model->m, p) {}
  llm::Session s;
};

namespace {

void copy_out(const std::string& s, char* buf, size_t capacity, size_t* written) {
  COLLAB_ARG_CHECK(written != nullptr, "written must not be NULL");
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
    COLLAB_ARG_CHECK(path != nullptr && model != nullptr, "path and model must not be NULL");
    *model = nullptr;
    *model = new collab_llm_model(path);
  });
}

collab_status collab_llm_model_load_rpc(const char* path, const char* endpoint, int32_t n_remote_layers,
                                        collab_llm_model** model) {
  return guarded([&] {
    COLLAB_ARG_CHECK(path != nullptr && endpoint != nullptr && model != nullptr,
                     "path, endpoint and model must not be NULL");
    *model = nullptr;
    *model = new collab_llm_model(path, endpoint, n_remote_layers);
  });
}

void collab_llm_model_free(collab_llm_model* model) { delete model; }

collab_status collab_llm_model_info_get(const collab_llm_model* model, collab_llm_model_info* info) {
  return guarded([&] {
    COLLAB_ARG_CHECK(model != nullptr && info != nullptr, "model and info must not be NULL");
    *info = model->m.info();
  });
}

collab_status collab_llm_tokenize(const collab_llm_model* model, const char* text, size_t len, int32_t add_special,
                                  int32_t parse_special, int32_t* tokens, size_t capacity, size_t* n_tokens) {
  return guarded([&] {
    COLLAB_ARG_CHECK(model != nullptr && n_tokens != nullptr, "model and n_tokens must not be NULL");
    auto t = model->m.tokenize(text, len, add_special != 0, parse_special != 0);
    *n_tokens = t.size();
    if (capacity < t.size())
      fail(COLLAB_ERR_BUFFER_TOO_SMALL, "needs %zu tokens, buffer has %zu", t.size(), capacity);
    if (!t.empty()) std::memcpy(tokens, t.data(), t.size() * sizeof(int32_t));
  });
}

collab_status collab_llm_token_to_piece(const collab_llm_model* model, int32_t token, char* buf, size_t capacity,
                                        size_t* written) {
  return guarded([&] {
    COLLAB_ARG_CHECK(model != nullptr, "model must not be NULL");
    copy_out(model->m.piece(token), buf, capacity, written);
  });
}

int32_t collab_llm_token_is_eog(const collab_llm_model* model, int32_t token) {
  return model && model->m.is_eog(token) ? 1 : 0;
}

collab_status collab_llm_chat_prompt(const collab_llm_model* model, const char* user, char* buf, size_t capacity,
                                     size_t* written) {
  return guarded([&] {
    COLLAB_ARG_CHECK(model != nullptr, "model must not be NULL");
    copy_out(model->m.chat_prompt(user), buf, capacity, written);
  });
}

collab_status collab_llm_session_new(collab_llm_model* model, const collab_llm_session_params* params,
                                     collab_llm_session** session) {
  return guarded([&] {
    COLLAB_ARG_CHECK(model != nullptr && params != nullptr && session != nullptr,
                     "model, params and session must not be NULL");
    *session = nullptr;
    *session = new collab_llm_session(model, *params);
  });
}

void collab_llm_session_free(collab_llm_session* session) { delete session; }

int32_t collab_llm_session_n_past(const collab_llm_session* session) { return session ? session->s.n_past() : -1; }
int32_t collab_llm_session_n_ctx(const collab_llm_session* session) { return session ? session->s.n_ctx() : -1; }

collab_status collab_llm_session_truncate(collab_llm_session* session, int32_t n_past) {
  return guarded([&] {
    COLLAB_ARG_CHECK(session != nullptr, "session must not be NULL");
    session->s.truncate(n_past);
  });
}

collab_status collab_llm_decode_tokens(collab_llm_session* session, const int32_t* tokens, size_t n,
                                       int32_t n_outputs, float* out, size_t capacity) {
  return guarded([&] {
    COLLAB_ARG_CHECK(session != nullptr, "session must not be NULL");
    session->s.decode_tokens(tokens, n, n_outputs, out, capacity);
  });
}

collab_status collab_llm_decode_rows(collab_llm_session* session, const float* rows, size_t n, int32_t n_outputs,
                                     float* logits, size_t capacity) {
  return guarded([&] {
    COLLAB_ARG_CHECK(session != nullptr, "session must not be NULL");
    session->s.decode_rows(rows, n, n_outputs, logits, capacity);
  });
}

collab_status collab_llm_state_size(collab_llm_session* session, size_t* nbytes) {
  return guarded([&] {
    COLLAB_ARG_CHECK(session != nullptr && nbytes != nullptr, "session and nbytes must not be NULL");
    *nbytes = session->s.state_size();
  });
}

collab_status collab_llm_state_get(collab_llm_session* session, void* buf, size_t capacity, size_t* written) {
  return guarded([&] {
    COLLAB_ARG_CHECK(session != nullptr && written != nullptr, "session and written must not be NULL");
    *written = 0;
    *written = session->s.state_get(buf, capacity);
  });
}

collab_status collab_llm_state_set(collab_llm_session* session, const void* buf, size_t len) {
  return guarded([&] {
    COLLAB_ARG_CHECK(session != nullptr, "session must not be NULL");
    session->s.state_set(buf, len);
  });
}

}  // extern "C"
