// Streaming greedy generation for the C API: each token goes to a callback as soon as it is
// decoded, and the callback can stop the generation (cancellation). Written only on top of the
// public collab_llm_* functions, so it builds the same with and without llama.cpp (without it,
// the first call it makes reports COLLAB_ERR_UNSUPPORTED).
#include <cstddef>
#include <string>
#include <vector>

#include "collab/collab.h"
#include "common/errors.hpp"

namespace {

collab_status invalid(const char* what) {
  collab::set_last_error(what);
  return COLLAB_ERR_INVALID_ARGUMENT;
}

int32_t argmax(const std::vector<float>& v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;  // first one on ties, as the Python side (numpy.argmax)
  return static_cast<int32_t>(best);
}

}  // namespace

extern "C" collab_status collab_llm_session_decode_stream(collab_llm_session* session, collab_llm_session* tail,
                                                          const collab_llm_model* model, const int32_t* tokens,
                                                          size_t n_tokens, int32_t max_tokens,
                                                          collab_llm_token_callback callback, void* user_data,
                                                          int32_t* n_generated) {
  if (n_generated) *n_generated = 0;
  if (!session || !model || !callback) return invalid("session, model and callback must not be NULL");
  if (!tokens || n_tokens == 0) return invalid("the prompt must hold at least one token");
  if (max_tokens < 1) return invalid("max_tokens must be >= 1");
  collab_llm_model_info info;
  collab_status st = collab_llm_model_info_get(model, &info);
  if (st != COLLAB_OK) return st;
  if (info.n_vocab <= 0 || info.n_embd <= 0) return invalid("model reports no vocabulary or width");
  std::vector<float> logits(static_cast<size_t>(info.n_vocab));
  std::vector<float> rows;
  // One step: tokens -> logits of the last one (FULL), or tokens -> head rows -> tail logits.
  auto step = [&](const int32_t* t, size_t n) -> collab_status {
    if (!tail) return collab_llm_decode_tokens(session, t, n, 1, logits.data(), logits.size());
    rows.resize(n * static_cast<size_t>(info.n_embd));
    collab_status s = collab_llm_decode_tokens(session, t, n, 1, rows.data(), rows.size());
    if (s != COLLAB_OK) return s;
    return collab_llm_decode_rows(tail, rows.data(), n, 1, logits.data(), logits.size());
  };
  st = step(tokens, n_tokens);
  if (st != COLLAB_OK) return st;
  collab_llm_session* last = tail ? tail : session;
  std::string piece(64, '\0');
  for (int32_t n = 1;; ++n) {
    int32_t tok = argmax(logits);
    size_t len = 0;
    st = collab_llm_token_to_piece(model, tok, piece.data(), piece.size(), &len);
    if (st == COLLAB_ERR_BUFFER_TOO_SMALL) {
      piece.resize(len);
      st = collab_llm_token_to_piece(model, tok, piece.data(), piece.size(), &len);
    }
    if (st != COLLAB_OK) return st;
    if (n_generated) *n_generated = n;
    const bool stop = callback(tok, piece.data(), len, user_data) != 0;
    if (stop || n >= max_tokens || collab_llm_token_is_eog(model, tok) ||
        collab_llm_session_n_past(last) >= collab_llm_session_n_ctx(last))
      return COLLAB_OK;
    st = step(&tok, 1);
    if (st != COLLAB_OK) return st;
  }
}
