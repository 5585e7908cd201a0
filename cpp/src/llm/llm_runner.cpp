// Split LLM runner on llama.cpp.
//
// HEAD sessions capture the residual stream after the part's last layer with llama.cpp's
// eval callback (cb_eval), the way its eval-callback tools do: the scheduler asks the callback
// about every graph node; answering "yes" only for `l_out-{n_layer-1}` makes it compute the
// graph up to that node, hand it over, and (because the callback then returns false) skip
// the rest of the graph: output norm and LM head are never computed on the head side.
// Every token is marked as an output so the last layer keeps all rows (llama.cpp drops the
// rows of non-output tokens inside the last layer).
//
// TAIL sessions feed the rows back in through llama_batch.embd with explicit positions.
#include "llm/llm_runner.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "common/errors.hpp"
#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

namespace collab::llm {

namespace {

void quiet_log(enum ggml_log_level level, const char* text, void*) {
  static const bool verbose = std::getenv("COLLAB_LLM_VERBOSE") != nullptr;
  if (verbose || level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

void backend_init_once() {
  static std::once_flag flag;
  std::call_once(flag, [] {
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
  });
}

bool cb_eval_trampoline(ggml_tensor* t, bool ask, void* user) {
  return static_cast<Session*>(user)->on_eval(t, ask);
}

int32_t meta_int(const llama_model* m, const char* key, int32_t fallback) {
  char buf[64];
  if (llama_model_meta_val_str(m, key, buf, sizeof buf) < 0) return fallback;
  char* end = nullptr;
  long v = std::strtol(buf, &end, 10);
  return end != buf ? int32_t(v) : fallback;
}

// RAII llama_batch sized for n tokens (token ids or embedding rows).
struct Batch {
  Batch(int32_t n, int32_t embd) : b(llama_batch_init(n, embd, 1)) {
    if (!b.pos) throw std::bad_alloc();
  }
  ~Batch() { llama_batch_free(b); }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  llama_batch b;
};

}  // namespace

// ---- Model ---------------------------------------------------------------------------

Model::Model(const std::string& path, const char* rpc_endpoint, int32_t n_remote_layers) {
  backend_init_once();
  FILE* f = std::fopen(path.c_str(), "rb");
  COLLAB_ARG_CHECK(f != nullptr, "cannot open model file %s", path.c_str());
  char magic[4] = {0, 0, 0, 0};
  size_t got = std::fread(magic, 1, 4, f);
  std::fclose(f);
  COLLAB_ARG_CHECK(got == 4 && std::memcmp(magic, "GGUF", 4) == 0, "%s is not a GGUF file", path.c_str());

  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  // The CPU "extra buffer types" (weight repacking, AMX) crash on some x86 CPUs in this
  // llama.cpp version and change the matmul kernels between a full model and its parts;
  // plain CPU buffers keep head+tail bit-identical to the full model.
  mp.use_extra_bufts = false;
  std::vector<ggml_backend_dev_t> devices;
  if (rpc_endpoint != nullptr) {
    COLLAB_ARG_CHECK(*rpc_endpoint != '\0' && n_remote_layers > 0, "RPC needs an endpoint and n_remote_layers > 0");
    ggml_backend_reg_t rpc = ggml_backend_reg_by_name("RPC");
    if (!rpc) fail(COLLAB_ERR_UNSUPPORTED, "this llama.cpp build has no RPC backend (GGML_RPC=OFF)");
    using add_server_t = ggml_backend_reg_t (*)(const char*);
    auto add_server = reinterpret_cast<add_server_t>(ggml_backend_reg_get_proc_address(rpc, "ggml_backend_rpc_add_server"));
    if (!add_server) fail(COLLAB_ERR_UNSUPPORTED, "RPC backend without ggml_backend_rpc_add_server");
    ggml_backend_reg_t reg = add_server(rpc_endpoint);
    if (!reg || ggml_backend_reg_dev_count(reg) == 0)
      fail(COLLAB_ERR_INVALID_ARGUMENT, "cannot reach a ggml rpc-server at %s", rpc_endpoint);
    for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); ++i) devices.push_back(ggml_backend_reg_dev_get(reg, i));
    devices.push_back(nullptr);
    mp.devices = devices.data();
    mp.n_gpu_layers = n_remote_layers;
  }
  model_ = llama_model_load_from_file(path.c_str(), mp);
  if (!model_) fail(COLLAB_ERR_INVALID_ARGUMENT, "llama.cpp could not load %s (see COLLAB_LLM_VERBOSE=1 log)",
                    path.c_str());
  const llama_vocab* vocab = llama_model_get_vocab(model_);
  info_.n_embd = llama_model_n_embd(model_);
  info_.n_layer = llama_model_n_layer(model_);
  info_.n_vocab = llama_vocab_n_tokens(vocab);
  info_.n_ctx_train = llama_model_n_ctx_train(model_);
  info_.bos = llama_vocab_bos(vocab);
  info_.eos = llama_vocab_eos(vocab);
  char part[16] = {0};
  info_.split_part = 0;
  if (llama_model_meta_val_str(model_, "collab.split.part", part, sizeof part) > 0) {
    info_.split_part = std::strcmp(part, "head") == 0 ? 1 : std::strcmp(part, "tail") == 0 ? 2 : 0;
  }
  info_.split_at = meta_int(model_, "collab.split.at", 0);
  info_.n_layer_total = meta_int(model_, "collab.split.n_layer_total", info_.n_layer);
  char arch[32] = {0};
  if (llama_model_meta_val_str(model_, "general.architecture", arch, sizeof arch) > 0)
    std::memcpy(info_.arch, arch, sizeof info_.arch - 1);
}

Model::~Model() {
  if (model_) llama_model_free(model_);
}

std::vector<int32_t> Model::tokenize(const char* text, size_t len, bool add_special, bool parse_special) const {
  COLLAB_ARG_CHECK(text != nullptr || len == 0, "text is NULL");
  COLLAB_ARG_CHECK(len < (size_t(1) << 30), "text too long (%zu bytes)", len);
  const llama_vocab* vocab = llama_model_get_vocab(model_);
  std::vector<int32_t> out(len + 8);
  int32_t n = llama_tokenize(vocab, text ? text : "", int32_t(len), out.data(), int32_t(out.size()), add_special,
                             parse_special);
  if (n < 0) {
    COLLAB_ARG_CHECK(n != INT32_MIN, "tokenization overflow");
    out.resize(size_t(-n));
    n = llama_tokenize(vocab, text, int32_t(len), out.data(), int32_t(out.size()), add_special, parse_special);
  }
  COLLAB_ARG_CHECK(n >= 0, "tokenization failed");
  out.resize(size_t(n));
  return out;
}

std::string Model::piece(int32_t token) const {
  COLLAB_ARG_CHECK(token >= 0 && token < info_.n_vocab, "token %d out of range [0, %d)", token, info_.n_vocab);
  const llama_vocab* vocab = llama_model_get_vocab(model_);
  std::string s(32, '\0');
  int32_t n = llama_token_to_piece(vocab, token, s.data(), int32_t(s.size()), 0, false);
  if (n < 0) {
    s.resize(size_t(-n));
    n = llama_token_to_piece(vocab, token, s.data(), int32_t(s.size()), 0, false);
  }
  COLLAB_ARG_CHECK(n >= 0, "cannot render token %d", token);
  s.resize(size_t(n));
  return s;
}

bool Model::is_eog(int32_t token) const {
  if (token < 0 || token >= info_.n_vocab) return false;
  return llama_vocab_is_eog(llama_model_get_vocab(model_), token);
}

std::string Model::chat_prompt(const char* user) const {
  COLLAB_ARG_CHECK(user != nullptr, "user message is NULL");
  const char* tmpl = llama_model_chat_template(model_, nullptr);
  COLLAB_ARG_CHECK(tmpl != nullptr, "the model has no chat template");
  llama_chat_message msg{"user", user};
  std::string buf(std::strlen(user) * 2 + 256, '\0');
  int32_t n = llama_chat_apply_template(tmpl, &msg, 1, true, buf.data(), int32_t(buf.size()));
  COLLAB_ARG_CHECK(n >= 0, "llama.cpp does not know this model's chat template");
  if (size_t(n) > buf.size()) {
    buf.resize(size_t(n));
    n = llama_chat_apply_template(tmpl, &msg, 1, true, buf.data(), int32_t(buf.size()));
  }
  buf.resize(size_t(n));
  return buf;
}

// ---- Session -------------------------------------------------------------------------

Session::Session(Model& model, const collab_llm_session_params& p) : model_(model) {
  COLLAB_ARG_CHECK(p.role == COLLAB_LLM_FULL || p.role == COLLAB_LLM_HEAD || p.role == COLLAB_LLM_TAIL,
                   "unknown session role %d", p.role);
  role_ = collab_llm_role(p.role);
  const auto& info = model.info();
  COLLAB_ARG_CHECK(p.n_threads >= 0 && p.n_threads <= 512, "n_threads %d out of range", p.n_threads);
  COLLAB_ARG_CHECK(p.n_ctx <= (1u << 20), "n_ctx %u too large", p.n_ctx);
  COLLAB_ARG_CHECK(p.n_batch <= 8192, "n_batch %u too large (at most 8192)", p.n_batch);
  n_ctx_ = p.n_ctx ? int32_t(p.n_ctx) : std::min<int32_t>(2048, info.n_ctx_train > 0 ? info.n_ctx_train : 2048);
  n_batch_ = p.n_batch ? int32_t(p.n_batch) : 256;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = uint32_t(n_ctx_);
  cp.n_batch = uint32_t(n_batch_);
  cp.n_ubatch = uint32_t(n_batch_);  // one ubatch per llama_decode: captured rows stay in order
  cp.n_seq_max = 1;
  cp.n_threads = p.n_threads ? p.n_threads : 2;
  cp.n_threads_batch = cp.n_threads;
  cp.no_perf = true;
  if (role_ == COLLAB_LLM_HEAD) {
    capture_name_ = "l_out-" + std::to_string(info.n_layer - 1);
    cp.cb_eval = cb_eval_trampoline;
    cp.cb_eval_user_data = this;
  }
  ctx_ = llama_init_from_model(model.get(), cp);
  if (!ctx_) fail(COLLAB_ERR_OUT_OF_MEMORY, "llama.cpp could not create a context (n_ctx %d)", n_ctx_);
  n_ctx_ = int32_t(llama_n_ctx(ctx_));
  // llama.cpp may lower n_batch (to n_ctx); one ubatch per call keeps captured rows in order.
  n_batch_ = int32_t(std::min(llama_n_batch(ctx_), llama_n_ubatch(ctx_)));
}

Session::~Session() {
  if (ctx_) llama_free(ctx_);
}

bool Session::on_eval(ggml_tensor* t, bool ask) {
  const bool match = capture_dst_ != nullptr && std::strcmp(t->name, capture_name_.c_str()) == 0;
  if (ask) return match;
  if (!match) return true;
  const int64_t n_embd = model_.info().n_embd;
  if (t->type != GGML_TYPE_F32 || t->ne[0] != n_embd || !ggml_is_contiguous(t) ||
      capture_rows_ + size_t(t->ne[1]) > capture_expect_) {
    capture_dst_ = nullptr;  // decode_tokens reports the mismatch
    return false;
  }
  ggml_backend_tensor_get(t, capture_dst_ + capture_rows_ * size_t(n_embd), 0, ggml_nbytes(t));
  capture_rows_ += size_t(t->ne[1]);
  return false;  // the rest of the graph (output norm, LM head) is not needed
}

void Session::check_room(size_t n) const {
  COLLAB_ARG_CHECK(n > 0, "nothing to decode (n = 0)");
  COLLAB_ARG_CHECK(n <= size_t(n_ctx_) && size_t(n_past_) + n <= size_t(n_ctx_),
                   "context full: n_past %d + %zu tokens > n_ctx %d", n_past_, n, n_ctx_);
}

void Session::truncate(int32_t n_past) {
  COLLAB_ARG_CHECK(n_past >= 0 && n_past <= n_past_, "truncate to %d: must be in [0, n_past=%d]", n_past, n_past_);
  llama_memory_t mem = llama_get_memory(ctx_);
  if (n_past == 0) {
    llama_memory_clear(mem, true);
  } else if (!llama_memory_seq_rm(mem, 0, n_past, -1)) {
    fail(COLLAB_ERR_UNSUPPORTED, "this model's memory cannot drop positions (recurrent state)");
  }
  n_past_ = n_past;
}

// Decode n inputs (token ids or rows) as one llama_decode call; tokens from first_output on
// produce logits, copied to logits_out (row-major) when given.
void Session::run_batch(const int32_t* tokens, const float* rows, size_t n, int32_t first_output,
                        float* logits_out) {
  const int32_t n_embd = model_.info().n_embd;
  Batch batch(int32_t(n), rows ? n_embd : 0);
  llama_batch& b = batch.b;
  b.n_tokens = int32_t(n);
  for (size_t i = 0; i < n; ++i) {
    if (rows) {
      std::memcpy(b.embd + i * size_t(n_embd), rows + i * size_t(n_embd), sizeof(float) * size_t(n_embd));
    } else {
      b.token[i] = tokens[i];
    }
    b.pos[i] = n_past_ + int32_t(i);
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = 0;
    b.logits[i] = int32_t(i) >= first_output ? 1 : 0;
  }
  const int32_t rc = llama_decode(ctx_, b);
  if (rc != 0) {
    // llama.cpp restores the memory state on rc 1 / -1; otherwise drop what got in.
    llama_memory_seq_rm(llama_get_memory(ctx_), 0, n_past_, -1);
    fail(rc == 1 ? COLLAB_ERR_OUT_OF_MEMORY : COLLAB_ERR_INTERNAL, "llama_decode failed (%d)", rc);
  }
  n_past_ += int32_t(n);
  if (logits_out) {
    const size_t n_vocab = size_t(model_.info().n_vocab);
    for (int32_t i = first_output; i < int32_t(n); ++i) {
      const float* l = llama_get_logits_ith(ctx_, i);
      COLLAB_ARG_CHECK(l != nullptr, "llama.cpp returned no logits for row %d", i);
      std::memcpy(logits_out + size_t(i - first_output) * n_vocab, l, sizeof(float) * n_vocab);
    }
  }
}

void Session::decode_tokens(const int32_t* tokens, size_t n, int32_t n_outputs, float* out, size_t capacity) {
  COLLAB_ARG_CHECK(role_ != COLLAB_LLM_TAIL, "a TAIL session takes hidden rows (decode_rows), not tokens");
  COLLAB_ARG_CHECK(tokens != nullptr, "tokens is NULL");
  check_room(n);
  const auto& info = model_.info();
  for (size_t i = 0; i < n; ++i)
    COLLAB_ARG_CHECK(tokens[i] >= 0 && tokens[i] < info.n_vocab, "token %d at %zu out of range [0, %d)", tokens[i],
                     i, info.n_vocab);
  if (role_ == COLLAB_LLM_HEAD) {
    head_capture(tokens, nullptr, n, out, capacity);
    return;
  }
  run_chunked(tokens, nullptr, n, n_outputs, out, capacity);
}

// HEAD: rows after the part's last layer for every input (token ids or embedding rows).
void Session::head_capture(const int32_t* tokens, const float* rows, size_t n, float* out, size_t capacity) {
  const auto& info = model_.info();
  COLLAB_ARG_CHECK(out != nullptr && capacity >= n * size_t(info.n_embd),
                   "out must hold n x n_embd = %zu floats", n * size_t(info.n_embd));
  for (size_t done = 0; done < n;) {
    const size_t m = std::min(n - done, size_t(n_batch_));
    capture_dst_ = out + done * size_t(info.n_embd);
    capture_rows_ = 0;
    capture_expect_ = m;
    try {
      // all inputs are outputs: keep every row
      run_batch(tokens ? tokens + done : nullptr, rows ? rows + done * size_t(info.n_embd) : nullptr, m, 0, nullptr);
    } catch (...) {
      capture_dst_ = nullptr;
      throw;
    }
    const bool ok = capture_dst_ != nullptr && capture_rows_ == m;
    capture_dst_ = nullptr;
    if (!ok) {
      truncate(n_past_ - int32_t(m));
      fail(COLLAB_ERR_INTERNAL, "captured %zu of %zu rows of %s (unexpected graph for this architecture)",
           capture_rows_, m, capture_name_.c_str());
    }
    done += m;
  }
}

// Decode n inputs in n_batch chunks; the last n_outputs produce logits into out.
void Session::run_chunked(const int32_t* tokens, const float* rows, size_t n, int32_t n_outputs, float* out,
                          size_t capacity) {
  const size_t n_vocab = size_t(model_.info().n_vocab);
  const size_t n_embd = size_t(model_.info().n_embd);
  COLLAB_ARG_CHECK(n_outputs >= 1 && size_t(n_outputs) <= n, "n_outputs %d must be in [1, n=%zu]", n_outputs, n);
  COLLAB_ARG_CHECK(out != nullptr && capacity >= size_t(n_outputs) * n_vocab,
                   "out must hold n_outputs x n_vocab = %zu floats", size_t(n_outputs) * n_vocab);
  const size_t first = n - size_t(n_outputs);
  for (size_t done = 0; done < n;) {
    const size_t m = std::min(n - done, size_t(n_batch_));
    const int32_t fo = done + m <= first ? int32_t(m) : int32_t(first > done ? first - done : 0);
    run_batch(tokens ? tokens + done : nullptr, rows ? rows + done * n_embd : nullptr, m, fo,
              fo < int32_t(m) ? out + (done + size_t(fo) - first) * n_vocab : nullptr);
    done += m;
  }
}

void Session::decode_rows(const float* rows, size_t n, int32_t n_outputs, float* out, size_t capacity) {
  COLLAB_ARG_CHECK(rows != nullptr, "rows is NULL");
  check_room(n);
  const auto& info = model_.info();
  const size_t n_embd = size_t(info.n_embd);
  for (size_t i = 0; i < n * n_embd; ++i)
    if (!std::isfinite(rows[i])) fail(COLLAB_ERR_NONFINITE_INPUT, "hidden rows hold NaN/Inf (row %zu)", i / n_embd);
  if (role_ == COLLAB_LLM_HEAD) {  // input embeddings (image rows of a VLM) -> hidden rows
    head_capture(nullptr, rows, n, out, capacity);
    return;
  }
  run_chunked(nullptr, rows, n, n_outputs, out, capacity);
}

size_t Session::state_size() { return llama_state_seq_get_size(ctx_, 0); }

size_t Session::state_get(void* buf, size_t capacity) {
  const size_t need = state_size();
  COLLAB_ARG_CHECK(buf != nullptr || capacity == 0, "buf is NULL");
  if (capacity < need) fail(COLLAB_ERR_BUFFER_TOO_SMALL, "state needs %zu bytes, buffer has %zu", need, capacity);
  const size_t got = llama_state_seq_get_data(ctx_, static_cast<uint8_t*>(buf), capacity, 0);
  if (got == 0) fail(COLLAB_ERR_INTERNAL, "llama_state_seq_get_data failed");
  return got;
}

void Session::state_set(const void* buf, size_t len) {
  COLLAB_ARG_CHECK(buf != nullptr && len > 0, "empty state");
  llama_memory_t mem = llama_get_memory(ctx_);
  llama_memory_clear(mem, true);
  n_past_ = 0;
  const size_t used = llama_state_seq_set_data(ctx_, static_cast<const uint8_t*>(buf), len, 0);
  if (used == 0) {
    llama_memory_clear(mem, true);
    fail(COLLAB_ERR_FRAME, "llama.cpp rejected the KV state (%zu bytes): wrong model, n_ctx or corrupted", len);
  }
  if (used != len) {  // llama.cpp stops reading at the end of its state: anything after it is not ours
    llama_memory_clear(mem, true);
    fail(COLLAB_ERR_FRAME, "KV state has %zu trailing bytes after the %zu llama.cpp reads", len - used, used);
  }
  const llama_pos pmin = llama_memory_seq_pos_min(mem, 0);
  const llama_pos pmax = llama_memory_seq_pos_max(mem, 0);
  if (pmax >= 0 && (pmin != 0 || pmax >= n_ctx_)) {
    llama_memory_clear(mem, true);
    fail(COLLAB_ERR_FRAME, "KV state covers positions [%d, %d], expected [0, n) with n <= %d", pmin, pmax, n_ctx_);
  }
  n_past_ = pmax + 1;
}

}  // namespace collab::llm
