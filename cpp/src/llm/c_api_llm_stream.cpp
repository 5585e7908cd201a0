// Streaming greedy generation for the C API: each token goes to a callback as soon as it is
// decoded, and the callback can stop the generation (cancellation). Written only on top of the
// public collab_llm_* functions, so it builds the same with and without llama.cpp (without it,
// the first call it makes reports COLLAB_ERR_UNSUPPORTED).
#include <cstddef>
#include <string>
#include <vector>

#include "collab/collab.h"
#include "common/c_api_checks.hpp"
#include "common/errors.hpp"

using namespace collab;

namespace {

// A failed public call: rethrown with its own status and message (guarded() records them again).
void check(collab_status st) {
  if (st != COLLAB_OK) throw Error(st, collab_last_error());
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
  return guarded([&] {
    require_non_null({{session, "session"}, {model, "model"}, {tokens, "tokens"}});
    COLLAB_ARG_CHECK(callback != nullptr, "callback is NULL");  // a function pointer: not a NamedPtr
    COLLAB_ARG_CHECK(n_tokens > 0, "n_tokens is 0: the prompt must hold at least one token");
    COLLAB_ARG_CHECK(max_tokens >= 1, "max_tokens is %d, must be >= 1", int(max_tokens));
    collab_llm_model_info info;
    check(collab_llm_model_info_get(model, &info));
    COLLAB_ARG_CHECK(info.n_vocab > 0 && info.n_embd > 0, "model reports no vocabulary or width");
    std::vector<float> logits(static_cast<size_t>(info.n_vocab));
    std::vector<float> rows;
    // One step: tokens -> logits of the last one (FULL), or tokens -> head rows -> tail logits.
    auto step = [&](const int32_t* t, size_t n) {
      if (!tail) {
        check(collab_llm_session_decode_tokens(session, t, n, 1, logits.data(), logits.size()));
        return;
      }
      rows.resize(n * static_cast<size_t>(info.n_embd));
      check(collab_llm_session_decode_tokens(session, t, n, 1, rows.data(), rows.size()));
      check(collab_llm_session_decode_rows(tail, rows.data(), n, 1, logits.data(), logits.size()));
    };
    step(tokens, n_tokens);
    collab_llm_session* last = tail ? tail : session;
    std::string piece(64, '\0');
    for (int32_t n = 1;; ++n) {
      int32_t tok = argmax(logits);
      size_t len = 0;
      collab_status st = collab_llm_model_token_to_piece(model, tok, &piece[0], piece.size(), &len);
      if (st == COLLAB_ERR_BUFFER_TOO_SMALL) {
        piece.resize(len);
        st = collab_llm_model_token_to_piece(model, tok, &piece[0], piece.size(), &len);
      }
      check(st);
      if (n_generated) *n_generated = n;
      const bool stop = callback(tok, piece.data(), len, user_data) != 0;
      if (stop || n >= max_tokens || collab_llm_model_token_is_eog(model, tok) ||
          collab_llm_session_n_past(last) >= collab_llm_session_n_ctx(last))
        return;
      step(&tok, 1);
    }
  });
}
