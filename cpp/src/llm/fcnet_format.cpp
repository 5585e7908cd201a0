#include "llm/fcnet_format.hpp"

#include <cmath>
#include <cstring>

#include "common/crc32.hpp"
#include "common/errors.hpp"

namespace collab::fcnet {
namespace {

constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxEmbd = 1u << 15;
constexpr uint32_t kMaxMeta = 1u << 20;

struct Reader {
  const uint8_t* p;
  size_t len, off = 0;
  uint32_t u32() {
    COLLAB_FRAME_CHECK(off + 4 <= len, "net file truncated at byte %zu", off);
    uint32_t v;
    std::memcpy(&v, p + off, 4);  // little-endian hosts only (x86-64, arm64)
    off += 4;
    return v;
  }
  const uint8_t* bytes(size_t n) {
    COLLAB_FRAME_CHECK(n <= len && off <= len - n, "net file truncated at byte %zu", off);
    const uint8_t* q = p + off;
    off += n;
    return q;
  }
};

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      uint32_t m = man;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      bits = sign | (uint32_t(127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::vector<std::pair<std::string, std::vector<uint32_t>>> expected(uint32_t kind, uint32_t d, uint32_t k) {
  if (kind == COLLAB_FCNET_SHORTCUT) {
    const uint32_t dims[5] = {d, d, 4 * d, d, d};
    std::vector<std::pair<std::string, std::vector<uint32_t>>> out;
    for (int i = 0; i < 4; ++i) {
      out.push_back({"w" + std::to_string(i + 1), {dims[i + 1], dims[i]}});
      out.push_back({"b" + std::to_string(i + 1), {dims[i + 1]}});
    }
    return out;
  }
  const uint32_t h = d / 2;
  return {{"enc1.w", {h, d}}, {"enc1.b", {h}}, {"enc2.w", {k, h}}, {"enc2.b", {k}},
          {"dec1.w", {h, k}}, {"dec1.b", {h}}, {"dec2.w", {d, h}}, {"dec2.b", {d}}};
}

}  // namespace

Parsed parse(const uint8_t* buf, size_t len, int32_t kind, int32_t n_embd, const uint8_t* model_digest) {
  // Bytes read from a file, not an argument (as for codec frames): NULL is corrupt input.
  COLLAB_FRAME_CHECK(buf != nullptr || len == 0, "buf is NULL");
  COLLAB_FRAME_CHECK(len >= 72, "net file truncated (%zu bytes)", len);
  COLLAB_FRAME_CHECK(std::memcmp(buf, "CLFN", 4) == 0, "not a collab net file (bad magic)");
  uint32_t stored;
  std::memcpy(&stored, buf + len - 4, 4);
  COLLAB_FRAME_CHECK(crc32(buf, len - 4) == stored, "net file checksum mismatch (corrupt or truncated)");
  Reader r{buf, len - 4, 4};
  const uint32_t version = r.u32();
  COLLAB_FRAME_CHECK(version == kVersion, "net file version %u, this collab reads version %u", version, kVersion);
  Parsed out;
  collab_fcnet_info& info = out.info;
  const uint32_t k_ = r.u32(), d = r.u32(), at = r.u32(), nl = r.u32(), k = r.u32(), nt = r.u32();
  std::memcpy(info.model_digest, r.bytes(32), 32);
  COLLAB_FRAME_CHECK(k_ == COLLAB_FCNET_SHORTCUT || k_ == COLLAB_FCNET_CODEC, "net file holds unknown kind %u", k_);
  COLLAB_FRAME_CHECK(d > 0 && d <= kMaxEmbd && d % 2 == 0, "net file n_embd %u out of range", d);
  COLLAB_FRAME_CHECK(k_ == COLLAB_FCNET_SHORTCUT ? k == 0 : (k > 0 && k <= d), "net file code size %u invalid", k);
  if (kind) COLLAB_ARG_CHECK(static_cast<uint32_t>(kind) == k_, "net file holds a %s net, expected a %s net",
                             k_ == COLLAB_FCNET_SHORTCUT ? "shortcut" : "codec",
                             kind == COLLAB_FCNET_SHORTCUT ? "shortcut" : "codec");
  if (n_embd) COLLAB_ARG_CHECK(static_cast<uint32_t>(n_embd) == d, "net file is for n_embd %u, the model has %d", d, n_embd);
  if (model_digest)
    COLLAB_ARG_CHECK(std::memcmp(model_digest, info.model_digest, 32) == 0,
                     "net file was trained for a different model (model digest mismatch)");
  info.kind = static_cast<int32_t>(k_);
  info.n_embd = static_cast<int32_t>(d);
  info.split_at = static_cast<int32_t>(at);
  info.n_layer_total = static_cast<int32_t>(nl);
  info.code_dim = static_cast<int32_t>(k);
  const auto want = expected(k_, d, k);
  COLLAB_FRAME_CHECK(nt == want.size(), "net file tensor count %u, expected %zu", nt, want.size());
  const uint32_t meta_len = r.u32();
  COLLAB_FRAME_CHECK(meta_len <= kMaxMeta, "net file meta length %u out of range", meta_len);
  r.bytes(meta_len);  // JSON training record: not needed to run the net
  for (const auto& [name, shape] : want) {
    const uint32_t nlen = r.u32();
    COLLAB_FRAME_CHECK(nlen == name.size() && std::memcmp(r.bytes(nlen), name.data(), nlen) == 0,
                       "net file: expected tensor %s", name.c_str());
    const uint32_t ndim = r.u32();
    COLLAB_FRAME_CHECK(ndim == shape.size(), "net file tensor %s: %u dims, expected %zu", name.c_str(), ndim, shape.size());
    size_t count = 1;
    for (uint32_t s : shape) {
      COLLAB_FRAME_CHECK(r.u32() == s, "net file tensor %s: shape does not match the header", name.c_str());
      count *= s;
    }
    const uint32_t dtype = r.u32();  // 0 f32, 1 f16 (storage only: widened here)
    COLLAB_FRAME_CHECK(dtype <= 1, "net file tensor %s: unknown dtype %u", name.c_str(), dtype);
    Tensor t{name, shape, std::vector<float>(count)};
    if (dtype == 0) {
      std::memcpy(t.data.data(), r.bytes(count * 4), count * 4);
    } else {
      const uint8_t* src = r.bytes(count * 2);
      for (size_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        t.data[i] = half_to_float(h);
      }
    }
    for (float v : t.data) COLLAB_FRAME_CHECK(std::isfinite(v), "net file tensor %s holds NaN/Inf", name.c_str());
    out.tensors.push_back(std::move(t));
  }
  COLLAB_FRAME_CHECK(r.off == r.len, "trailing bytes in net file");
  return out;
}

}  // namespace collab::fcnet
