// The opaque C handles of the LLM section, shared with the VLM section (which needs the
// llama_model behind a collab_llm_model).
#pragma once

#include "llm/llm_runner.hpp"

struct collab_llm_model {
  explicit collab_llm_model(const char* path, const char* rpc = nullptr, int32_t n_remote = 0) : m(path, rpc, n_remote) {}
  collab::llm::Model m;
};

struct collab_llm_session {
  collab_llm_session(collab_llm_model* model, const collab_llm_session_params& p) : s(model->m, p) {}
  collab::llm::Session s;
};
