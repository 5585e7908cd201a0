// mtmd aborts (GGML_ASSERT) on some inputs it does not expect, so everything it reads is
// checked here first: the mmproj's header and data extent (gguf, no tensor data loaded), its
// projection width against the text model, the image's size.
#include "vlm/vision.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "gguf.h"
#include "llama.h"
#include "mtmd-helper.h"
#include "mtmd.h"
#include "vlm/image.hpp"

namespace collab::vlm {

namespace {

struct ChunksDel {
  void operator()(mtmd_input_chunks* c) const { mtmd_input_chunks_free(c); }
};
struct BitmapDel {
  void operator()(mtmd_bitmap* b) const { mtmd_bitmap_free(b); }
};
using Chunks = std::unique_ptr<mtmd_input_chunks, ChunksDel>;
using Bitmap = std::unique_ptr<mtmd_bitmap, BitmapDel>;

// mtmd logs every tensor it loads: errors only, unless COLLAB_LLM_VERBOSE is set.
void quiet_log(enum ggml_log_level level, const char* text, void*) {
  static const bool verbose = std::getenv("COLLAB_LLM_VERBOSE") != nullptr;
  if (verbose || level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

int64_t file_size(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  COLLAB_ARG_CHECK(f != nullptr, "cannot open mmproj file %s", path.c_str());
  char magic[4] = {0, 0, 0, 0};
  const size_t got = std::fread(magic, 1, 4, f);
  std::fseek(f, 0, SEEK_END);
  const long n = std::ftell(f);
  std::fclose(f);
  COLLAB_ARG_CHECK(got == 4 && std::memcmp(magic, "GGUF", 4) == 0, "%s is not a GGUF file", path.c_str());
  return n;
}

uint32_t u32(const gguf_context* g, const char* key, const std::string& path) {
  const int64_t id = gguf_find_key(g, key);
  COLLAB_ARG_CHECK(id >= 0, "%s: missing key %s (not an mmproj file)", path.c_str(), key);
  COLLAB_ARG_CHECK(gguf_get_kv_type(g, id) == GGUF_TYPE_UINT32, "%s: key %s is not uint32", path.c_str(), key);
  return gguf_get_val_u32(g, id);
}

// Header facts of the mmproj; throws on a file mtmd would misread or crash on.
void check_mmproj(const std::string& path, int32_t n_embd_text, int32_t* image_size, int32_t* patch) {
  const int64_t size = file_size(path);
  gguf_init_params gp{true, nullptr};
  gguf_context* g = gguf_init_from_file(path.c_str(), gp);
  COLLAB_ARG_CHECK(g != nullptr, "%s: unreadable GGUF header", path.c_str());
  std::unique_ptr<gguf_context, void (*)(gguf_context*)> guard(g, gguf_free);
  const int64_t pt = gguf_find_key(g, "clip.projector_type");
  COLLAB_ARG_CHECK(pt >= 0 && gguf_get_kv_type(g, pt) == GGUF_TYPE_STRING, "%s: no clip.projector_type (not an mmproj)",
                   path.c_str());
  COLLAB_ARG_CHECK(std::strcmp(gguf_get_val_str(g, pt), "internvl") == 0,
                   "%s: projector type %s, collab's VLM needs internvl", path.c_str(), gguf_get_val_str(g, pt));
  const uint32_t proj = u32(g, "clip.vision.projection_dim", path);
  COLLAB_ARG_CHECK(int64_t(proj) == n_embd_text, "mmproj projects to width %u but the text model has n_embd %d",
                   proj, n_embd_text);
  *image_size = int32_t(u32(g, "clip.vision.image_size", path));
  *patch = int32_t(u32(g, "clip.vision.patch_size", path));
  COLLAB_ARG_CHECK(*patch > 0 && *image_size > 0 && *image_size <= 4096 && *image_size % *patch == 0,
                   "%s: image_size %d is not a multiple of patch_size %d", path.c_str(), *image_size, *patch);
  // every tensor's data inside the file (a truncated download must not reach the loader)
  const size_t base = gguf_get_data_offset(g);
  for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
    const size_t end = base + gguf_get_tensor_offset(g, i) + gguf_get_tensor_size(g, i);
    COLLAB_ARG_CHECK(end <= size_t(size), "%s: truncated (tensor %s ends at %zu, file has %lld bytes)", path.c_str(),
                     gguf_get_tensor_name(g, i), end, static_cast<long long>(size));
  }
}

}  // namespace

Vision::Vision(const std::string& mmproj, const llama_model* text_model, int32_t n_threads) {
  COLLAB_ARG_CHECK(text_model != nullptr, "text model is NULL");
  COLLAB_ARG_CHECK(n_threads >= 0 && n_threads <= 512, "n_threads %d out of range", n_threads);
  static std::once_flag quiet;
  std::call_once(quiet, [] { mtmd_helper_log_set(quiet_log, nullptr); });  // also sets mtmd's
  n_embd_ = llama_model_n_embd(text_model);
  int32_t patch = 0;
  check_mmproj(mmproj, n_embd_, &image_size_, &patch);
  mtmd_context_params p = mtmd_context_params_default();
  p.use_gpu = false;
  p.print_timings = false;
  p.n_threads = n_threads ? n_threads : 2;
  p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;  // AUTO casts K/V to F16 on the CPU
  p.warmup = false;
  ctx_ = mtmd_init_from_file(mmproj.c_str(), text_model, p);
  if (!ctx_) fail(COLLAB_ERR_INVALID_ARGUMENT, "mtmd could not load %s (COLLAB_LLM_VERBOSE=1 shows why)", mmproj.c_str());
  COLLAB_ARG_CHECK(mtmd_support_vision(ctx_), "%s has no vision encoder", mmproj.c_str());
  n_tokens_ = (image_size_ / patch) * (image_size_ / patch);
}

Vision::~Vision() {
  if (ctx_) mtmd_free(ctx_);
}

void Vision::encode(const uint8_t* rgb, int32_t nx, int32_t ny, float* out, size_t capacity) {
  COLLAB_ARG_CHECK(rgb != nullptr, "image is NULL");
  COLLAB_ARG_CHECK(nx == image_size_ && ny == image_size_, "image is %dx%d, the mmproj takes %dx%d (resize first)",
                   nx, ny, image_size_, image_size_);
  const size_t need = size_t(n_tokens_) * size_t(n_embd_);
  COLLAB_ARG_CHECK(out != nullptr && capacity >= need, "out must hold n_tokens x n_embd = %zu floats", need);
  Bitmap bmp(mtmd_bitmap_init(uint32_t(nx), uint32_t(ny), rgb));
  if (!bmp) fail(COLLAB_ERR_OUT_OF_MEMORY, "mtmd_bitmap_init failed");
  Chunks chunks(mtmd_input_chunks_init());
  if (!chunks) fail(COLLAB_ERR_OUT_OF_MEMORY, "mtmd_input_chunks_init failed");
  const std::string text = mtmd_default_marker();
  mtmd_input_text it{text.c_str(), text.size(), false, false};
  const mtmd_bitmap* bitmaps[1] = {bmp.get()};
  const int32_t rc = mtmd_tokenize(ctx_, chunks.get(), &it, bitmaps, 1);
  if (rc != 0) fail(COLLAB_ERR_INTERNAL, "mtmd_tokenize failed (%d)", rc);
  const mtmd_input_chunk* image = nullptr;
  for (size_t i = 0; i < mtmd_input_chunks_size(chunks.get()); ++i) {
    const mtmd_input_chunk* c = mtmd_input_chunks_get(chunks.get(), i);
    if (mtmd_input_chunk_get_type(c) != MTMD_INPUT_CHUNK_TYPE_IMAGE) continue;
    if (image) fail(COLLAB_ERR_INTERNAL, "mtmd split the image into several chunks");
    image = c;
  }
  if (!image) fail(COLLAB_ERR_INTERNAL, "mtmd produced no image chunk");
  if (int32_t(mtmd_input_chunk_get_n_tokens(image)) != n_tokens_)
    fail(COLLAB_ERR_INTERNAL, "mtmd made %zu image tokens, expected %d", mtmd_input_chunk_get_n_tokens(image),
         n_tokens_);
  if (mtmd_encode_chunk(ctx_, image) != 0) fail(COLLAB_ERR_INTERNAL, "mtmd_encode_chunk failed");
  const float* embd = mtmd_get_output_embd(ctx_);
  if (!embd) fail(COLLAB_ERR_INTERNAL, "mtmd returned no embeddings");
  std::memcpy(out, embd, sizeof(float) * need);
}

std::vector<uint8_t> Vision::decode_image(const uint8_t* buf, size_t len) {
  sniff_image(buf, len);  // format and claimed size before the decoder allocates anything
  mtmd_helper_bitmap_wrapper w =
      mtmd_helper_bitmap_init_from_buf(ctx_, buf, len, false, mtmd_helper_init_opt_default());
  Bitmap bmp(w.bitmap);
  if (w.video_ctx) mtmd_helper_video_free(w.video_ctx);
  COLLAB_ARG_CHECK(bmp != nullptr, "cannot decode the image (corrupt PNG/JPEG data)");
  COLLAB_ARG_CHECK(!mtmd_bitmap_is_audio(bmp.get()), "the bytes are audio, not an image");
  const uint32_t nx = mtmd_bitmap_get_nx(bmp.get()), ny = mtmd_bitmap_get_ny(bmp.get());
  COLLAB_ARG_CHECK(nx >= 1 && ny >= 1 && nx <= kMaxImageSide && ny <= kMaxImageSide &&
                       mtmd_bitmap_get_n_bytes(bmp.get()) == size_t(nx) * ny * 3,
                   "decoded image of %ux%u is not RGB within [1, %u]", nx, ny, kMaxImageSide);
  return resize_rgb(mtmd_bitmap_get_data(bmp.get()), nx, ny, uint32_t(image_size_));
}

void Vision::layout(const std::string& question, std::vector<int32_t>* before, std::vector<int32_t>* after) {
  // the question without mtmd's marker (it would open a second image slot), trimmed
  const std::string marker = mtmd_default_marker();
  std::string q = question;
  for (size_t at; (at = q.find(marker)) != std::string::npos;) q.erase(at, marker.size());
  const char* ws = " \t\n\r\f\v";
  const size_t a = q.find_first_not_of(ws);
  COLLAB_ARG_CHECK(a != std::string::npos, "the question is empty");
  q = q.substr(a, q.find_last_not_of(ws) - a + 1);
  COLLAB_ARG_CHECK(q.size() <= 4096, "question of %zu bytes exceeds 4096", q.size());
  // collab.vlm.mtmd.chat_text: SmolLM2's ChatML, no system turn (the layout it was trained on)
  const std::string text = "<|im_start|>user\n" + marker + "\n" + q + "<|im_end|>\n<|im_start|>assistant\n";
  std::vector<uint8_t> blank(size_t(image_size_) * image_size_ * 3, 0);  // tokenizing reads no pixels
  Bitmap bmp(mtmd_bitmap_init(uint32_t(image_size_), uint32_t(image_size_), blank.data()));
  if (!bmp) fail(COLLAB_ERR_OUT_OF_MEMORY, "mtmd_bitmap_init failed");
  Chunks chunks(mtmd_input_chunks_init());
  if (!chunks) fail(COLLAB_ERR_OUT_OF_MEMORY, "mtmd_input_chunks_init failed");
  mtmd_input_text it{text.c_str(), text.size(), true, true};
  const mtmd_bitmap* bitmaps[1] = {bmp.get()};
  const int32_t rc = mtmd_tokenize(ctx_, chunks.get(), &it, bitmaps, 1);
  if (rc != 0) fail(COLLAB_ERR_INVALID_ARGUMENT, "mtmd_tokenize failed (%d)", rc);
  const size_t n = mtmd_input_chunks_size(chunks.get());
  if (n != 3) fail(COLLAB_ERR_INTERNAL, "mtmd laid the prompt out in %zu chunks, expected text, image, text", n);
  std::vector<int32_t>* out[2] = {before, after};
  for (size_t i = 0; i < 3; i += 2) {
    const mtmd_input_chunk* c = mtmd_input_chunks_get(chunks.get(), i);
    if (mtmd_input_chunk_get_type(c) != MTMD_INPUT_CHUNK_TYPE_TEXT)
      fail(COLLAB_ERR_INTERNAL, "mtmd chunk %zu is not text", i);
    size_t nt = 0;
    const llama_token* t = mtmd_input_chunk_get_tokens_text(c, &nt);
    out[i / 2]->assign(t, t + nt);
  }
  if (mtmd_input_chunk_get_type(mtmd_input_chunks_get(chunks.get(), 1)) != MTMD_INPUT_CHUNK_TYPE_IMAGE ||
      int32_t(mtmd_input_chunk_get_n_tokens(mtmd_input_chunks_get(chunks.get(), 1))) != n_tokens_)
    fail(COLLAB_ERR_INTERNAL, "mtmd's image chunk does not hold %d rows", n_tokens_);
}

}  // namespace collab::vlm
