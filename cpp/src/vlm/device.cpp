// Message flow per mode (the server side is python/collab/llm/server.py):
//   open(task, {mode, max_tokens})
//   kv-handoff: "state" (CLKV, the head's KV cache of the prompt)
//   "rows" (CLHR f32, or CLFC with the image rows as FC codes) + meta chunks "a,b,c": the
//          batches the head decoded (text, image rows, text), so the tail decodes in the
//          same ones and the split answers bit for bit as the unsplit model
//   shortcut / kv-handoff: "token" messages stream back until meta eog = "1"
//   roundtrip: one "token" per "rows", the device sends each token's hidden row back
//   "end", close(0); any early stop or error: close(1) (the server stops decoding).
#include "vlm/device.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "llama.h"
#include "llm/llm_runner.hpp"
#include "llm/wire.hpp"
#include "vlm/vision.hpp"

namespace collab::vlm {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

const char* mode_name(int32_t m) {
  return m == COLLAB_VLM_SHORTCUT ? "shortcut" : m == COLLAB_VLM_KV_HANDOFF ? "kv-handoff" : "roundtrip";
}

std::string meta_source_digest(const llama_model* m) {
  char buf[80] = {0};
  return llama_model_meta_val_str(m, "collab.split.source_sha256", buf, sizeof buf) > 0 ? std::string(buf) : "";
}

std::string hex(const uint8_t* d, size_t n) {
  static const char* x = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += x[d[i] >> 4];
    s += x[d[i] & 15];
  }
  return s;
}

using Meta = std::vector<std::pair<std::string, std::string>>;

// One session over the app's transport: counts bytes, closes exactly once.
class Channel {
 public:
  Channel(const collab_transport& t, int32_t timeout_ms) : t_(t), timeout_ms_(timeout_ms) {}
  ~Channel() {
    if (open_) t_.close(t_.user_data, 1);
  }
  void open(const std::string& task, const Meta& meta) {
    const std::vector<collab_meta_entry> m = entries(meta);
    const int32_t rc = t_.open(t_.user_data, task.c_str(), m.data(), m.size());
    if (rc != 0) fail(COLLAB_ERR_TRANSPORT, "transport open failed (%d)", rc);
    open_ = true;
  }
  // One message, counted in up() (as the Python device's message_bytes: kind, payload, meta).
  void send(const char* kind, const std::vector<uint8_t>& payload, const Meta& meta = {}) {
    up_ += std::strlen(kind) + payload.size();
    for (const auto& kv : meta) up_ += kv.first.size() + kv.second.size();
    post(kind, payload, meta);
  }
  // The next message; its pointers are valid until the next recv / close.
  const collab_message& recv() {
    msg_ = collab_message{};
    const int32_t rc = t_.recv(t_.user_data, &msg_, timeout_ms_);
    if (rc != 0) fail(COLLAB_ERR_TRANSPORT, "transport recv failed (%d)", rc);
    COLLAB_FRAME_CHECK(msg_.kind != nullptr, "server message without a kind");
    COLLAB_FRAME_CHECK(msg_.payload != nullptr || msg_.payload_len == 0, "server message payload is NULL");
    COLLAB_FRAME_CHECK(msg_.meta != nullptr || msg_.n_meta == 0, "server message meta is NULL");
    down_ += std::strlen(msg_.kind) + msg_.payload_len;
    for (size_t i = 0; i < msg_.n_meta; ++i) {
      COLLAB_FRAME_CHECK(msg_.meta[i].key && msg_.meta[i].value, "server message meta entry %zu is NULL", i);
      down_ += std::strlen(msg_.meta[i].key) + std::strlen(msg_.meta[i].value);
    }
    return msg_;
  }
  // Normal end: "end" (not counted, as the Python device's Generation does not), then close(0).
  void finish() {
    post("end", {}, {});
    open_ = false;
    t_.close(t_.user_data, 0);
  }
  uint64_t up() const { return up_; }
  uint64_t down() const { return down_; }

 private:
  static std::vector<collab_meta_entry> entries(const Meta& meta) {
    std::vector<collab_meta_entry> m;
    for (const auto& kv : meta) m.push_back({kv.first.c_str(), kv.second.c_str()});
    return m;
  }
  void post(const char* kind, const std::vector<uint8_t>& payload, const Meta& meta) {
    const std::vector<collab_meta_entry> m = entries(meta);
    collab_message msg{kind, payload.empty() ? nullptr : payload.data(), payload.size(), m.data(), m.size()};
    const int32_t rc = t_.send(t_.user_data, &msg);
    if (rc != 0) fail(COLLAB_ERR_TRANSPORT, "transport send of '%s' failed (%d)", kind, rc);
  }

  const collab_transport& t_;
  int32_t timeout_ms_;
  bool open_ = false;
  collab_message msg_{};
  uint64_t up_ = 0, down_ = 0;
};

std::string meta_get(const collab_message& m, const char* key) {
  for (size_t i = 0; i < m.n_meta; ++i)
    if (std::strcmp(m.meta[i].key, key) == 0) return m.meta[i].value;
  return "";
}

}  // namespace

Device::Device(llm::Model& head, Vision& vision, collab_fcnet* codec, const collab_vlm_device_params& params)
    : head_(head), vision_(vision), codec_(codec), params_(params) {
  const collab_llm_model_info& hi = head_.info();
  COLLAB_ARG_CHECK(hi.split_part == 1, "the device needs a head part of the text model (split_gguf writes those)");
  COLLAB_ARG_CHECK(vision_.n_embd() == hi.n_embd, "the mmproj projects to %d, the head has n_embd %d",
                   vision_.n_embd(), hi.n_embd);
  COLLAB_ARG_CHECK(params.mode >= COLLAB_VLM_SHORTCUT && params.mode <= COLLAB_VLM_ROUNDTRIP, "mode %d unknown",
                   int(params.mode));
  COLLAB_ARG_CHECK(params.code_dtype >= COLLAB_VLM_CODE_F32 && params.code_dtype <= COLLAB_VLM_CODE_INT8,
                   "code_dtype %d unknown", int(params.code_dtype));
  COLLAB_ARG_CHECK(params.max_tokens >= 1 && params.max_tokens <= 4096, "max_tokens %d not in [1, 4096]",
                   int(params.max_tokens));
  COLLAB_ARG_CHECK(params.n_ctx >= 16 && params.n_ctx <= (1u << 20), "n_ctx %u out of range", params.n_ctx);
  COLLAB_ARG_CHECK(params.n_threads >= 1 && params.n_threads <= 512, "n_threads %d out of range",
                   int(params.n_threads));
  task_ = params.task ? params.task : "llm";
  COLLAB_ARG_CHECK(!task_.empty() && task_.size() <= 128, "task name must be 1..128 bytes");
  params_.task = nullptr;  // the caller's string need not outlive this call
  if (codec_) {
    collab_fcnet_info ci{};
    if (collab_fcnet_info_get(codec_, &ci) != COLLAB_OK) fail(COLLAB_ERR_INVALID_ARGUMENT, "bad image codec");
    COLLAB_ARG_CHECK(ci.kind == COLLAB_FCNET_CODEC, "image_codec is a shortcut net, not a codec");
    COLLAB_ARG_CHECK(ci.n_embd == hi.n_embd, "image codec width %d, the head has %d", ci.n_embd, hi.n_embd);
    COLLAB_ARG_CHECK(ci.split_at == hi.split_at, "image codec is for split point %d, the head is split at %d",
                     ci.split_at, hi.split_at);
    const std::string want = meta_source_digest(head_.get());
    COLLAB_ARG_CHECK(!want.empty(), "the head part carries no source digest: re-split the model");
    COLLAB_ARG_CHECK(hex(ci.model_digest, 32) == want, "image codec was trained for another model");
    code_dim_ = ci.code_dim;
  }
}

void Device::ask(const uint8_t* image, size_t image_len, const char* question, const collab_transport& tr,
                 collab_llm_token_callback callback, void* user_data, collab_vlm_answer_info* info) {
  COLLAB_ARG_CHECK(tr.open && tr.send && tr.recv && tr.close, "transport callbacks must all be set");
  const auto t0 = Clock::now();
  collab_vlm_answer_info out{};
  const collab_llm_model_info& hi = head_.info();
  const size_t d = size_t(hi.n_embd);

  // prompt layout (cheap checks first), then the image
  std::vector<int32_t> before, after;
  vision_.layout(question, &before, &after);
  const std::vector<uint8_t> rgb = vision_.decode_image(image, image_len);
  const size_t m = size_t(vision_.n_tokens());
  std::vector<float> img(m * d);
  vision_.encode(rgb.data(), vision_.image_size(), vision_.image_size(), img.data(), img.size());
  out.encode_s = since(t0);
  const size_t n = before.size() + m + after.size();
  out.n_prompt = int32_t(n);
  out.n_image_rows = int32_t(m);
  COLLAB_ARG_CHECK(n + size_t(params_.max_tokens) <= params_.n_ctx,
                   "prompt (%zu positions) + max_tokens (%d) > n_ctx %u", n, int(params_.max_tokens), params_.n_ctx);

  // head layers [0, l) over text | image rows | text, in three batches
  const auto th = Clock::now();
  collab_llm_session_params sp{};
  sp.role = COLLAB_LLM_HEAD;
  sp.n_ctx = params_.n_ctx;
  sp.n_batch = 0;
  sp.n_threads = params_.n_threads;
  llm::Session s(head_, sp);
  std::vector<float> rows(n * d);
  s.decode_tokens(before.data(), before.size(), 0, rows.data(), before.size() * d);
  s.decode_rows(img.data(), m, 0, rows.data() + before.size() * d, m * d);
  s.decode_tokens(after.data(), after.size(), 0, rows.data() + (before.size() + m) * d, after.size() * d);
  std::vector<uint8_t> payload;
  if (codec_) {  // Eq. 1: the image rows [len(before), n - len(after)) as codes, the text exact
    std::vector<float> codes(m * size_t(code_dim_));
    const collab_status st = collab_fcnet_apply(codec_, COLLAB_FCNET_ENCODE, rows.data() + before.size() * d, m,
                                                codes.data(), codes.size(), params_.n_threads);
    if (st != COLLAB_OK) fail(st, "image codec: %s", collab_last_error());
    payload = wire::fc_rows(rows.data(), n, uint32_t(d), before.size(), before.size() + m, codes.data(),
                            uint32_t(code_dim_), params_.code_dtype);
  } else {
    payload = wire::rows_f32(rows.data(), n, uint32_t(d));
  }
  std::vector<uint8_t> state;
  if (params_.mode == COLLAB_VLM_KV_HANDOFF) {
    std::vector<uint8_t> raw(s.state_size());
    raw.resize(s.state_get(raw.data(), raw.size()));
    state = wire::state_frame(raw.data(), raw.size(), uint32_t(hi.n_layer), uint32_t(hi.n_embd),
                              uint32_t(s.n_past()));
  }
  out.head_s = since(th);
  out.prefill_bytes = payload.size();
  out.state_bytes = state.size();

  Channel ch(tr, params_.timeout_ms);
  ch.open(task_, {{"mode", mode_name(params_.mode)}, {"max_tokens", std::to_string(params_.max_tokens)}});
  if (!state.empty()) ch.send("state", state);
  ch.send("rows", payload,
          {{"chunks", std::to_string(before.size()) + "," + std::to_string(m) + "," + std::to_string(after.size())}});

  std::string stop;
  while (stop.empty()) {
    const collab_message& msg = ch.recv();
    const std::string kind = msg.kind;
    COLLAB_FRAME_CHECK(kind == "token" || kind == "stop", "unexpected server message '%s'", kind.c_str());
    const bool last = meta_get(msg, "eog") == "1";
    std::vector<int32_t> toks;
    if (msg.payload_len) toks = wire::parse_tokens(msg.payload, msg.payload_len, hi.n_vocab);
    for (int32_t t : toks) {
      COLLAB_FRAME_CHECK(out.n_tokens < params_.max_tokens, "server sent more than max_tokens tokens");
      const std::string piece = head_.piece(t);
      if (out.n_tokens == 0) out.ttft_s = since(t0);
      out.total_s = since(t0);
      ++out.n_tokens;
      if (callback(t, piece.data(), piece.size(), user_data) != 0 && !last) {
        stop = "callback";
        break;
      }
    }
    if (!stop.empty()) break;
    if (last) {
      stop = meta_get(msg, "stop");
      if (stop.empty()) stop = "eog";
    } else if (params_.mode == COLLAB_VLM_ROUNDTRIP) {
      COLLAB_FRAME_CHECK(toks.size() == 1, "roundtrip: one token per message, got %zu", toks.size());
      std::vector<float> row(d);
      s.decode_tokens(&toks[0], 1, 0, row.data(), d);  // single rows go exact
      ch.send("rows", wire::rows_f32(row.data(), 1, uint32_t(d)));
    }
  }
  if (stop != "callback") ch.finish();  // else the Channel's destructor cancels
  out.bytes_up = ch.up();
  out.bytes_down = ch.down();
  std::snprintf(out.stop, sizeof out.stop, "%s", stop.c_str());
  if (out.n_tokens == 0) out.ttft_s = out.total_s = since(t0);
  if (info) *info = out;
}

}  // namespace collab::vlm
