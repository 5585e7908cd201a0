// LSB-first bit packing of unsigned integers (the frame's only bit order): value j of
// width w occupies bits [j*w, (j+1)*w) of the byte string, bit i of the string being
// bit (i % 8) of byte i / 8. Arrays are padded with zero bits to a whole byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/errors.hpp"

namespace collab {

inline int bit_length(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }
inline size_t packed_bytes(uint64_t count, int width) { return size_t((count * uint64_t(width) + 7) / 8); }

inline uint64_t load_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

// Pack n values of `width` bits (0..32) into out[0, packed_bytes(n, width)).
template <class T>
void pack_bits(const T* v, size_t n, int width, uint8_t* out) {
  if (width == 0 || n == 0) return;
  if (width == 8) {
    for (size_t i = 0; i < n; ++i) out[i] = uint8_t(v[i]);
    return;
  }
  if (width == 16) {
    for (size_t i = 0; i < n; ++i) {
      out[2 * i] = uint8_t(v[i]);
      out[2 * i + 1] = uint8_t(v[i] >> 8);
    }
    return;
  }
  // 64-bit accumulator, flushed 32 bits at a time (fill < 32 before each value, width <= 32).
  uint64_t acc = 0;
  int fill = 0;
  for (size_t i = 0; i < n; ++i) {
    acc |= uint64_t(v[i]) << fill;
    fill += width;
    if (fill >= 32) {
      const uint32_t lo = uint32_t(acc);
      out[0] = uint8_t(lo);
      out[1] = uint8_t(lo >> 8);
      out[2] = uint8_t(lo >> 16);
      out[3] = uint8_t(lo >> 24);
      out += 4;
      acc >>= 32;
      fill -= 32;
    }
  }
  for (; fill > 0; fill -= 8) {
    *out++ = uint8_t(acc);
    acc >>= 8;
  }
}

// Unpack n values of `width` bits from in[0, nbytes); nbytes must be >= packed_bytes(n, width).
template <class T>
void unpack_bits(const uint8_t* in, size_t nbytes, size_t n, int width, T* out) {
  if (n == 0) return;
  if (width == 0) {
    for (size_t i = 0; i < n; ++i) out[i] = 0;
    return;
  }
  if (width == 8) {
    for (size_t i = 0; i < n; ++i) out[i] = T(in[i]);
    return;
  }
  if (width == 16) {
    for (size_t i = 0; i < n; ++i) out[i] = T(uint32_t(in[2 * i]) | uint32_t(in[2 * i + 1]) << 8);
    return;
  }
  const uint64_t mask = (uint64_t(1) << width) - 1;
  size_t i = 0;
  // Fast path: an unaligned 8-byte load covers any value of <= 32 bits at any bit offset.
  if (nbytes >= 8) {
    for (; i < n; ++i) {
      uint64_t bit = uint64_t(i) * uint64_t(width);
      size_t byte = size_t(bit >> 3);
      if (byte + 8 > nbytes) break;
      out[i] = T((load_le64(in + byte) >> (bit & 7)) & mask);
    }
  }
  for (; i < n; ++i) {  // tail: assemble byte by byte
    uint64_t bit = uint64_t(i) * uint64_t(width);
    size_t byte = size_t(bit >> 3);
    uint64_t word = 0;
    for (size_t k = 0; k < 8 && byte + k < nbytes; ++k) word |= uint64_t(in[byte + k]) << (8 * k);
    out[i] = T((word >> (bit & 7)) & mask);
  }
}

// Sequential LSB-first bit writer for variable-length codes (Rice).
class BitWriter {
 public:
  explicit BitWriter(uint8_t* out) : out_(out) {}
  void put(uint64_t value, int nbits) {  // nbits <= 32, value < 2^nbits
    acc_ |= value << fill_;
    fill_ += nbits;
    if (fill_ >= 32) {
      const uint32_t lo = uint32_t(acc_);
      out_[len_] = uint8_t(lo);
      out_[len_ + 1] = uint8_t(lo >> 8);
      out_[len_ + 2] = uint8_t(lo >> 16);
      out_[len_ + 3] = uint8_t(lo >> 24);
      len_ += 4;
      acc_ >>= 32;
      fill_ -= 32;
    }
  }
  void zeros(uint64_t count) {
    while (count >= 32) {
      put(0, 32);
      count -= 32;
    }
    put(0, int(count));
  }
  size_t finish() {  // flush the partial bytes; returns bytes written
    for (; fill_ > 0; fill_ -= 8) {
      out_[len_++] = uint8_t(acc_);
      acc_ >>= 8;
    }
    acc_ = 0;
    fill_ = 0;
    return len_;
  }

 private:
  uint8_t* out_;
  uint64_t acc_ = 0;
  int fill_ = 0;
  size_t len_ = 0;
};

// Sequential LSB-first bit reader with bounds checks (throws COLLAB_ERR_FRAME at the end).
class BitReader {
 public:
  BitReader(const uint8_t* in, size_t nbytes) : in_(in), nbytes_(nbytes) {}
  // Count zero bits up to (and consuming) the next one bit; fails past max_zeros.
  uint64_t unary(uint64_t max_zeros) {
    uint64_t zeros = 0;
    for (;;) {
      refill();
      COLLAB_FRAME_CHECK(avail_ > 0, "truncated rice code");
      uint64_t window = acc_ & (avail_ >= 64 ? ~uint64_t(0) : ((uint64_t(1) << avail_) - 1));
      if (window) {
        int tz = __builtin_ctzll(window);
        zeros += uint64_t(tz);
        COLLAB_FRAME_CHECK(zeros <= max_zeros, "rice gap out of range");
        consume(tz + 1);
        return zeros;
      }
      zeros += uint64_t(avail_);
      COLLAB_FRAME_CHECK(zeros <= max_zeros, "rice gap out of range");
      consume(avail_);
    }
  }
  uint64_t bits(int n) {  // n <= 32
    if (n == 0) return 0;
    refill();
    COLLAB_FRAME_CHECK(avail_ >= n, "truncated rice code");
    uint64_t v = acc_ & ((uint64_t(1) << n) - 1);
    consume(n);
    return v;
  }
  size_t bytes_consumed() const { return size_t((consumed_ + 7) / 8); }

 private:
  void refill() {
    while (avail_ <= 56 && pos_ < nbytes_) {
      acc_ |= uint64_t(in_[pos_++]) << avail_;
      avail_ += 8;
    }
  }
  void consume(int n) {
    acc_ = n >= 64 ? 0 : acc_ >> n;
    avail_ -= n;
    consumed_ += uint64_t(n);
  }
  const uint8_t* in_;
  size_t nbytes_;
  size_t pos_ = 0;
  uint64_t acc_ = 0;
  int avail_ = 0;
  uint64_t consumed_ = 0;
};

}  // namespace collab
