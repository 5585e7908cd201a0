// Split LLM runner on llama.cpp: models (full GGUF or head/tail parts) and sessions (one
// llama_context each) in the roles FULL, HEAD and TAIL. See the LLM section of collab.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "collab/collab.h"

struct llama_model;
struct llama_context;
struct ggml_tensor;

namespace collab::llm {

class Model {
 public:
  explicit Model(const std::string& path, const char* rpc_endpoint = nullptr, int32_t n_remote_layers = 0);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  llama_model* get() const { return model_; }
  const collab_llm_model_info& info() const { return info_; }

  std::vector<int32_t> tokenize(const char* text, size_t len, bool add_special, bool parse_special) const;
  std::string piece(int32_t token) const;
  bool is_eog(int32_t token) const;
  std::string chat_prompt(const char* user) const;

 private:
  llama_model* model_ = nullptr;
  collab_llm_model_info info_{};
};

class Session {
 public:
  Session(Model& model, const collab_llm_session_params& params);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  collab_llm_role role() const { return role_; }
  int32_t n_past() const { return n_past_; }
  int32_t n_ctx() const { return n_ctx_; }
  void truncate(int32_t n_past);

  // FULL: logits of the last n_outputs tokens; HEAD: hidden rows of all tokens.
  void decode_tokens(const int32_t* tokens, size_t n, int32_t n_outputs, float* out, size_t capacity);
  // TAIL: rows in, logits of the last n_outputs rows out. HEAD: input embedding rows (e.g.
  // a VLM's image rows) in, hidden rows of all of them out (n x n_embd).
  void decode_rows(const float* rows, size_t n, int32_t n_outputs, float* out, size_t capacity);

  size_t state_size();
  size_t state_get(void* buf, size_t capacity);
  void state_set(const void* buf, size_t len);

  // cb_eval hook (static trampoline calls this).
  bool on_eval(ggml_tensor* t, bool ask);

 private:
  void run_batch(const int32_t* tokens, const float* rows, size_t n, int32_t first_output, float* logits_out);
  void run_chunked(const int32_t* tokens, const float* rows, size_t n, int32_t n_outputs, float* out,
                   size_t capacity);
  void check_room(size_t n) const;
  void head_capture(const int32_t* tokens, const float* rows, size_t n, float* out, size_t capacity);

  Model& model_;
  llama_context* ctx_ = nullptr;
  collab_llm_role role_;
  int32_t n_ctx_ = 0;
  int32_t n_batch_ = 0;
  int32_t n_past_ = 0;
  std::string capture_name_;  // "l_out-{n_layer-1}" for HEAD sessions
  float* capture_dst_ = nullptr;
  size_t capture_rows_ = 0;     // rows written into capture_dst_ so far in this decode call
  size_t capture_expect_ = 0;   // rows this llama_decode call should produce
};

}  // namespace collab::llm
