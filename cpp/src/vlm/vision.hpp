// VLM image encoder on llama.cpp's multimodal library (mtmd): an mmproj GGUF (a ViT and its
// projector) turns an RGB image into rows of the text model's width.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct mtmd_context;
struct llama_model;

namespace collab::vlm {

class Vision {
 public:
  Vision(const std::string& mmproj, const llama_model* text_model, int32_t n_threads);
  ~Vision();
  Vision(const Vision&) = delete;
  Vision& operator=(const Vision&) = delete;

  int32_t image_size() const { return image_size_; }
  int32_t n_tokens() const { return n_tokens_; }
  int32_t n_embd() const { return n_embd_; }
  // rgb: ny x nx x 3 bytes; must be image_size x image_size (callers resize: mtmd would tile
  // a larger image into several chunks). out: n_tokens x n_embd floats.
  void encode(const uint8_t* rgb, int32_t nx, int32_t ny, float* out, size_t capacity);
  // PNG / JPEG bytes -> image_size x image_size RGB (header checked first: vlm/image.hpp;
  // decoded by mtmd's helper, resized as the Python device does).
  std::vector<uint8_t> decode_image(const uint8_t* buf, size_t len);
  // The prompt around one image as mtmd lays it out for this projector: the text tokens
  // before the image rows and after them (chat_text: one user turn, the assistant prefix).
  void layout(const std::string& question, std::vector<int32_t>* before, std::vector<int32_t>* after);

 private:
  mtmd_context* ctx_ = nullptr;
  int32_t image_size_ = 0;
  int32_t n_tokens_ = 0;
  int32_t n_embd_ = 0;
};

}  // namespace collab::vlm
