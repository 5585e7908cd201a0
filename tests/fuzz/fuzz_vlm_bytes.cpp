// libFuzzer target: the bytes the native VLM device reads from outside: image headers (an
// app's image bytes, before the decoder allocates anything) and the server's token messages.
// The first byte picks the parser (and, for tokens, the vocabulary size). Any outcome but a
// crash, hang, over-read, leak or UB is acceptable; an accepted header is within the limits.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "common/errors.hpp"
#include "llm/wire.hpp"
#include "vlm/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t sel = data[0];
  const uint8_t* p = data + 1;
  const size_t n = size - 1;
  collab::guarded([&] {
    if (sel & 1) {
      const collab::vlm::ImageHeader h = collab::vlm::sniff_image(p, n);
      if (h.width < 1 || h.height < 1 || h.width > collab::vlm::kMaxImageSide || h.height > collab::vlm::kMaxImageSide)
        std::abort();
      if (h.width <= 64 && h.height <= 64) {  // and the resize of such an image stays in bounds
        std::vector<uint8_t> rgb(size_t(h.width) * h.height * 3, sel);
        collab::vlm::resize_rgb(rgb.data(), h.width, h.height, 1 + (sel >> 3) % 40);
      }
    } else {
      const std::vector<int32_t> t = collab::wire::parse_tokens(p, n, 1 + (sel >> 1) * 400);
      for (int32_t v : t)
        if (v < 0 || v >= 1 + (sel >> 1) * 400) std::abort();
    }
  });
  return 0;
}
