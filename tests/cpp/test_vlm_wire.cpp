// The native VLM device's byte-level parts, in every build (no llama.cpp): the image header
// checks, the resize, the wire writers and the token parser (run under ASan and qemu too).
// The full byte equality with the Python writers is tests/test_vlm_native_device.py.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "collab/collab.h"
#include "common/crc32.hpp"
#include "common/errors.hpp"
#include "llm/wire.hpp"
#include "vlm/image.hpp"

#include "check.hpp"

template <class Fn>
static collab_status status_of(Fn fn) {
  return collab::guarded(fn);
}

static std::vector<uint8_t> png_header(uint32_t w, uint32_t h) {
  std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (uint32_t v : {w, h})
    for (int i = 3; i >= 0; --i) b.push_back(uint8_t(v >> (8 * i)));
  for (int i = 0; i < 9; ++i) b.push_back(0);  // depth, colour, ..., CRC (not checked here)
  return b;
}

static uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

int main() {
  using collab::vlm::sniff_image;
  // PNG / JPEG headers
  auto png = png_header(28, 17);
  collab::vlm::ImageHeader h{};
  CHECK(status_of([&] { h = sniff_image(png.data(), png.size()); }) == COLLAB_OK && h.width == 28 && h.height == 17);
  auto bomb = png_header(100000, 100000);
  CHECK(status_of([&] { sniff_image(bomb.data(), bomb.size()); }) == COLLAB_ERR_INVALID_ARGUMENT);
  auto zero = png_header(0, 3);
  CHECK(status_of([&] { sniff_image(zero.data(), zero.size()); }) == COLLAB_ERR_INVALID_ARGUMENT);
  for (size_t n = 0; n < png.size(); ++n)  // every truncation is refused, no over-read (ASan)
    CHECK(status_of([&] { sniff_image(png.data(), n); }) == COLLAB_ERR_INVALID_ARGUMENT);
  const std::vector<uint8_t> jpeg = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00,  // APP0 of 4 bytes
                                     0xFF, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x11, 0x00, 0x1C, 0x03};  // SOF0 17x28
  CHECK(status_of([&] { h = sniff_image(jpeg.data(), jpeg.size()); }) == COLLAB_OK && h.width == 28 && h.height == 17);
  for (size_t n = 0; n + 1 < jpeg.size(); ++n)  // cut before the width's last byte (the component count is not read)
    CHECK(status_of([&] { sniff_image(jpeg.data(), n); }) == COLLAB_ERR_INVALID_ARGUMENT);
  const uint8_t sos_first[] = {0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02};
  CHECK(status_of([&] { sniff_image(sos_first, sizeof sos_first); }) == COLLAB_ERR_INVALID_ARGUMENT);
  const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a'};
  CHECK(status_of([&] { sniff_image(gif, sizeof gif); }) == COLLAB_ERR_INVALID_ARGUMENT);
  CHECK(status_of([&] { sniff_image(nullptr, 0); }) == COLLAB_ERR_INVALID_ARGUMENT);

  // resize: identity, integer factor (nearest), bicubic stays in range, size 1
  std::mt19937 rng(7);
  std::vector<uint8_t> img(7 * 7 * 3);
  for (auto& v : img) v = uint8_t(rng());
  std::vector<uint8_t> out(28 * 28 * 3);
  CHECK(collab_vlm_image_resize(img.data(), 7, 7, 28, out.data(), out.size()) == COLLAB_OK);
  CHECK(std::memcmp(&out[0], &img[0], 3) == 0 && std::memcmp(&out[(27 * 28 + 27) * 3], &img[(6 * 7 + 6) * 3], 3) == 0);
  CHECK(collab_vlm_image_resize(img.data(), 7, 7, 28, out.data(), out.size() - 1) == COLLAB_ERR_BUFFER_TOO_SMALL);
  CHECK(collab_vlm_image_resize(img.data(), 0, 7, 28, out.data(), out.size()) == COLLAB_ERR_INVALID_ARGUMENT);
  CHECK(collab_vlm_image_resize(nullptr, 7, 7, 28, out.data(), out.size()) == COLLAB_ERR_INVALID_ARGUMENT);
  std::vector<uint8_t> flat(5 * 3 * 3, 200), one(3);
  CHECK(collab_vlm_image_resize(flat.data(), 3, 5, 1, one.data(), 3) == COLLAB_OK && one[0] == 200 && one[2] == 200);
  std::vector<uint8_t> o2(28 * 28 * 3);
  CHECK(collab_vlm_image_resize(flat.data(), 3, 5, 28, o2.data(), o2.size()) == COLLAB_OK);
  bool all200 = true;
  for (uint8_t v : o2) all200 = all200 && v == 200;  // a constant image stays constant
  CHECK(all200);

  // wire: CLHR, CLFC (int8 rounding: half to even, zero rows), CLKV, token ids
  const float rows[6] = {1.f, -2.f, 0.5f, 3.f, 0.f, 0.f};  // 3 rows of width 2
  auto hr = collab::wire::rows_f32(rows, 3, 2);
  CHECK(hr.size() == 4 + 1 + 1 + 4 + 9 + 24 && std::memcmp(hr.data(), "CLHR", 4) == 0 && le32(&hr[6]) == 2);
  const float codes[4] = {2.5f * (127.0f / 127.0f), 127.0f, 0.f, 0.f};  // row 0: scale 1, 2.5 -> 2; row 1: zeros
  auto fc = collab::wire::fc_rows(rows, 3, 2, 1, 3, codes, 2, 2);
  const size_t want = 28 + 4 * 2 * 1 + (2 * 4 + 2 * 2) + 4;
  CHECK(fc.size() == want);
  if (fc.size() == want) {
    CHECK(std::memcmp(fc.data(), "CLFC", 4) == 0 && fc[5] == 2 && le32(&fc[20]) == 1 && le32(&fc[24]) == 3);
    float s0, s1;
    std::memcpy(&s0, &fc[36], 4);
    std::memcpy(&s1, &fc[40], 4);
    CHECK(s0 == 1.0f && s1 == 1.0f);  // absmax 127 -> 1; an all-zero row -> 1
    CHECK(int8_t(fc[44]) == 2 && int8_t(fc[45]) == 127 && fc[46] == 0 && fc[47] == 0);
    CHECK(le32(&fc[fc.size() - 4]) == collab::crc32(fc.data(), fc.size() - 4));
  }
  CHECK(status_of([&] { collab::wire::fc_rows(rows, 3, 2, 2, 1, codes, 2, 2); }) == COLLAB_ERR_INVALID_ARGUMENT);
  const float big[2] = {1e6f, -1e6f};  // f16 codes clip to +-65504
  auto f16 = collab::wire::fc_rows(rows, 1, 2, 0, 1, big, 2, 1);
  CHECK(f16.size() == 28 + 4 + 4 && f16[28] == 0xFF && f16[29] == 0x7B && f16[31] == 0xFB);
  const uint8_t st[5] = {1, 2, 3, 4, 5};
  auto kv = collab::wire::state_frame(st, 5, 4, 64, 9);
  CHECK(kv.size() == 32 + 5 && std::memcmp(kv.data(), "CLKV", 4) == 0 && le32(&kv[16]) == 9 &&
        le32(&kv[28]) == collab::crc32(st, 5));
  const uint8_t toks[8] = {5, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF};
  std::vector<int32_t> t;
  CHECK(status_of([&] { t = collab::wire::parse_tokens(toks, 4, 10); }) == COLLAB_OK && t.size() == 1 && t[0] == 5);
  CHECK(status_of([&] { collab::wire::parse_tokens(toks, 8, 10); }) == COLLAB_ERR_FRAME);   // -1
  CHECK(status_of([&] { collab::wire::parse_tokens(toks, 4, 5); }) == COLLAB_ERR_FRAME);    // >= n_vocab
  CHECK(status_of([&] { collab::wire::parse_tokens(toks, 3, 10); }) == COLLAB_ERR_FRAME);   // not int32s
  CHECK(status_of([&] { collab::wire::parse_tokens(toks, 0, 10); }) == COLLAB_ERR_FRAME);

  // params defaults; the device API without libmtmd reports UNSUPPORTED, never crashes
  collab_vlm_device_params p;
  collab_vlm_device_params_init(&p);
  CHECK(p.mode == COLLAB_VLM_SHORTCUT && p.code_dtype == COLLAB_VLM_CODE_F16 && p.max_tokens == 16 && p.task == nullptr);
  collab_vlm_device* dev = reinterpret_cast<collab_vlm_device*>(&p);
  CHECK(collab_vlm_device_new(nullptr, nullptr, nullptr, &p, &dev) != COLLAB_OK && dev == nullptr);
  CHECK(std::strcmp(collab_status_string(COLLAB_ERR_TRANSPORT), "transport error") == 0);

  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
