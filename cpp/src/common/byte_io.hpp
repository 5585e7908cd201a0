// Little-endian byte writer/reader. The reader checks every access against the end of
// its buffer and throws COLLAB_ERR_FRAME instead of reading past it: decoders of network
// bytes go through this and nothing else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/errors.hpp"

namespace collab {

inline size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Writes into a caller-provided buffer of known capacity.
class ByteWriter {
 public:
  ByteWriter(uint8_t* data, size_t capacity) : data_(data), cap_(capacity) {}
  size_t size() const { return pos_; }
  uint8_t* data() { return data_; }
  uint8_t* reserve(size_t n) {
    if (n > cap_ - pos_) fail(COLLAB_ERR_BUFFER_TOO_SMALL, "output buffer too small for the frame");
    uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  void bytes(const void* src, size_t n) {
    if (n) std::memcpy(reserve(n), src, n);
  }
  void u8(uint8_t v) { *reserve(1) = v; }
  void u32(uint32_t v) {
    uint8_t b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
    bytes(b, 4);
  }
  void u64(uint64_t v) {
    u32(uint32_t(v));
    u32(uint32_t(v >> 32));
  }
  void f32(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u32(u);
  }
  void f64(double v) {
    uint64_t u;
    std::memcpy(&u, &v, 8);
    u64(u);
  }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      u8(uint8_t(v | 0x80));
      v >>= 7;
    }
    u8(uint8_t(v));
  }

 private:
  uint8_t* data_;
  size_t cap_;
  size_t pos_ = 0;
};

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const uint8_t* take(size_t n) {
    COLLAB_FRAME_CHECK(n <= size_ - pos_, "frame is truncated");
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  uint8_t u8() { return *take(1); }
  uint32_t u32() {
    const uint8_t* p = take(4);
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  }
  uint64_t u64() {
    uint64_t lo = u32();
    return lo | uint64_t(u32()) << 32;
  }
  float f32() {
    uint32_t u = u32();
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  double f64() {
    uint64_t u = u64();
    double d;
    std::memcpy(&d, &u, 8);
    return d;
  }
  // Unsigned LEB128, at most 10 bytes, value <= limit.
  uint64_t varint(uint64_t limit = ~uint64_t(0)) {
    uint64_t v = 0;
    for (int i = 0, shift = 0; i < 10; ++i, shift += 7) {
      uint8_t b = u8();
      uint64_t part = uint64_t(b & 0x7f);
      COLLAB_FRAME_CHECK(shift < 63 || part <= 1, "varint overflows 64 bits");
      v |= part << shift;
      if (!(b & 0x80)) {
        COLLAB_FRAME_CHECK(v <= limit, "varint value out of range");
        return v;
      }
    }
    fail(COLLAB_ERR_FRAME, "varint longer than 10 bytes");
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace collab
