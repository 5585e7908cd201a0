// Image bytes on the device before mtmd sees them: which format and size they claim (read
// from the header alone, so a decompression bomb is refused before anything is allocated),
// and the resize to the encoder's square input. No llama.cpp here: builds (and is fuzzed)
// everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace collab::vlm {

constexpr size_t kMaxImageBytes = size_t(64) << 20;
constexpr uint32_t kMaxImageSide = 8192;

enum class ImageFormat { kPng, kJpeg };

struct ImageHeader {
  ImageFormat format;
  uint32_t width;
  uint32_t height;
};

// PNG (IHDR) or JPEG (first SOF marker) width and height. Throws collab::Error
// (COLLAB_ERR_INVALID_ARGUMENT) for other formats, truncated headers, a zero side or a side
// over kMaxImageSide, more than kMaxImageBytes.
ImageHeader sniff_image(const uint8_t* buf, size_t len);

// RGB (h rows of w pixels x 3 bytes) -> size x size RGB, as the Python device does
// (collab.vlm.mtmd.to_model_size): nearest-neighbour repeat when a square image's side
// divides size (Fashion-MNIST 28 -> 112), else Pillow's BICUBIC resample (its separable
// filter with support scaled for downsampling, its 8-bit fixed-point arithmetic, the
// horizontal pass first). The Python device calls this too (collab_vlm_image_resize), so
// both feed the encoder the same pixels; python/collab/vlm/reference.py has the numpy twin.
std::vector<uint8_t> resize_rgb(const uint8_t* rgb, uint32_t w, uint32_t h, uint32_t size);

}  // namespace collab::vlm
