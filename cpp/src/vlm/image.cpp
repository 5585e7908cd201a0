#include "vlm/image.hpp"

#include <algorithm>
#include <cmath>

#include "common/errors.hpp"

namespace collab::vlm {

namespace {

uint32_t be16(const uint8_t* p) { return uint32_t(p[0]) << 8 | p[1]; }
uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

ImageHeader sniff_png(const uint8_t* b, size_t len) {
  COLLAB_ARG_CHECK(len >= 33, "PNG truncated before its IHDR chunk");
  COLLAB_ARG_CHECK(be32(b + 8) == 13 && std::equal(b + 12, b + 16, "IHDR"), "PNG without an IHDR chunk first");
  return {ImageFormat::kPng, be32(b + 16), be32(b + 20)};
}

// Walk the marker segments up to the first start-of-frame (SOF0..SOF15 but DHT, JPG, DAC).
ImageHeader sniff_jpeg(const uint8_t* b, size_t len) {
  size_t i = 2;
  while (true) {
    COLLAB_ARG_CHECK(i + 1 < len, "JPEG truncated before its frame header");
    COLLAB_ARG_CHECK(b[i] == 0xFF, "JPEG marker expected at byte %zu", i);
    while (i + 1 < len && b[i + 1] == 0xFF) ++i;  // fill bytes
    COLLAB_ARG_CHECK(i + 1 < len, "JPEG truncated before its frame header");
    const uint8_t m = b[i + 1];
    i += 2;
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // TEM, RSTn: no length
    COLLAB_ARG_CHECK(m != 0xD9 && m != 0xDA, "JPEG without a frame header before its scan");
    COLLAB_ARG_CHECK(i + 2 <= len, "JPEG truncated in a segment header");
    const uint32_t seg = be16(b + i);
    COLLAB_ARG_CHECK(seg >= 2, "JPEG segment of length %u", seg);
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
      COLLAB_ARG_CHECK(seg >= 7 && i + 7 <= len, "JPEG frame header truncated");
      return {ImageFormat::kJpeg, be16(b + i + 5), be16(b + i + 3)};
    }
    i += seg;
  }
}

// Pillow's bicubic kernel (a = -0.5) and its coefficient layout (libImaging/Resample.c).
double bicubic(double x) {
  const double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // per output pixel: first input pixel, count
  std::vector<int32_t> k;   // out_size x ksize fixed-point weights
};

Coeffs coeffs(uint32_t in_size, uint32_t out_size) {
  const double scale = double(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 2.0 * filterscale;
  Coeffs c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.bounds.resize(2 * out_size);
  c.k.assign(size_t(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (uint32_t xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > int(in_size)) xmax = int(in_size);
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[size_t(xx) * c.ksize + x] = int32_t(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

uint8_t clip8(int64_t v) {
  v >>= kPrecisionBits;
  return uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One separable pass: along x (horizontal) or y, RGB interleaved.
std::vector<uint8_t> pass(const std::vector<uint8_t>& in, uint32_t w, uint32_t h, uint32_t out, bool horizontal) {
  const Coeffs c = coeffs(horizontal ? w : h, out);
  const uint32_t ow = horizontal ? out : w, oh = horizontal ? h : out;
  std::vector<uint8_t> o(size_t(ow) * oh * 3);
  for (uint32_t y = 0; y < oh; ++y)
    for (uint32_t x = 0; x < ow; ++x) {
      const uint32_t xx = horizontal ? x : y;
      const int lo = c.bounds[2 * xx], n = c.bounds[2 * xx + 1];
      const int32_t* k = &c.k[size_t(xx) * c.ksize];
      for (int ch = 0; ch < 3; ++ch) {
        int64_t ss = int64_t(1) << (kPrecisionBits - 1);
        for (int i = 0; i < n; ++i) {
          const size_t src = horizontal ? (size_t(y) * w + lo + i) : (size_t(lo + i) * w + x);
          ss += int64_t(in[src * 3 + ch]) * k[i];
        }
        o[(size_t(y) * ow + x) * 3 + ch] = clip8(ss);
      }
    }
  return o;
}

}  // namespace

ImageHeader sniff_image(const uint8_t* buf, size_t len) {
  COLLAB_ARG_CHECK(buf != nullptr && len > 0, "image bytes are empty");
  COLLAB_ARG_CHECK(len <= kMaxImageBytes, "image of %zu bytes exceeds %zu", len, kMaxImageBytes);
  static const uint8_t png[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  ImageHeader h;
  if (len >= 8 && std::equal(png, png + 8, buf)) {
    h = sniff_png(buf, len);
  } else if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) {
    h = sniff_jpeg(buf, len);
  } else {
    fail(COLLAB_ERR_INVALID_ARGUMENT, "image is neither PNG nor JPEG");
  }
  COLLAB_ARG_CHECK(h.width >= 1 && h.height >= 1 && h.width <= kMaxImageSide && h.height <= kMaxImageSide,
                   "image size %ux%u outside [1, %u]", h.width, h.height, kMaxImageSide);
  return h;
}

std::vector<uint8_t> resize_rgb(const uint8_t* rgb, uint32_t w, uint32_t h, uint32_t size) {
  COLLAB_ARG_CHECK(rgb != nullptr, "image is NULL");
  COLLAB_ARG_CHECK(w >= 1 && h >= 1 && w <= kMaxImageSide && h <= kMaxImageSide, "image size %ux%u out of range", w, h);
  COLLAB_ARG_CHECK(size >= 1 && size <= kMaxImageSide, "target size %u out of range", size);
  std::vector<uint8_t> img(rgb, rgb + size_t(w) * h * 3);
  if (w == size && h == size) return img;
  if (w == h && size % w == 0) {
    const uint32_t f = size / w;
    std::vector<uint8_t> o(size_t(size) * size * 3);
    for (uint32_t y = 0; y < size; ++y)
      for (uint32_t x = 0; x < size; ++x)
        std::copy_n(&img[(size_t(y / f) * w + x / f) * 3], 3, &o[(size_t(y) * size + x) * 3]);
    return o;
  }
  // horizontal pass first (when the width changes), then the vertical one, as Pillow's
  // ImagingResampleInner; recent Pillow releases run the vertical pass first for some tall
  // reductions, which moves a few pixels by a few levels (collab.vlm.mtmd.to_model_size
  // uses this function, so both devices see the same pixels)
  if (w != size) {
    img = pass(img, w, h, size, true);
    w = size;
  }
  if (h != size) img = pass(img, w, h, size, false);
  return img;
}

}  // namespace collab::vlm
