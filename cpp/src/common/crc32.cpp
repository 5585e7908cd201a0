// CRC-32 (IEEE, reflected 0xEDB88320) with hardware paths picked at run time:
// x86-64 PCLMULQDQ folding (crc32_x86.cpp), ARMv8 CRC32 instructions (crc32_arm.cpp),
// and a portable slicing-by-8 table version that also finishes the hardware paths' tails.
#include "common/crc32.hpp"

#include <cstring>

namespace collab {

namespace {

// Slicing-by-8 tables: table[k][b] is the CRC of byte b followed by k zero bytes.
struct Tables {
  uint32_t t[8][256];
  Tables() {
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t c = b;
      for (int i = 0; i < 8; ++i) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
      t[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; ++b)
      for (int k = 1; k < 8; ++k) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xffu];
  }
};

const Tables& tables() {
  static const Tables tab;
  return tab;
}

using HwFn = uint32_t (*)(uint32_t state, const uint8_t* p, size_t len, size_t* done);

HwFn pick_hw() {
  if (HwFn f = crc32_x86_pclmul()) return f;
  if (HwFn f = crc32_arm_crc()) return f;
  return nullptr;
}

}  // namespace

// Raw (non-inverted) state update, table driven.
uint32_t crc32_update_table(uint32_t crc, const uint8_t* p, size_t len) {
  const auto& t = tables().t;
  while (len >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    lo = __builtin_bswap32(lo);
    hi = __builtin_bswap32(hi);
#endif
    lo ^= crc;
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
          t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    len -= 8;
  }
  while (len--) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xffu];
  return crc;
}

uint32_t crc32(const void* data, size_t len, uint32_t crc) {
  static const HwFn hw = pick_hw();
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t state = ~crc;
  if (hw && len >= 64) {
    size_t done = 0;
    state = hw(state, p, len, &done);
    p += done;
    len -= done;
  }
  return ~crc32_update_table(state, p, len);
}

uint32_t crc32_portable(const void* data, size_t len, uint32_t crc) {
  return ~crc32_update_table(~crc, static_cast<const uint8_t*>(data), len);
}

#if !defined(COLLAB_HAVE_X86_CRC)
uint32_t (*crc32_x86_pclmul())(uint32_t, const uint8_t*, size_t, size_t*) { return nullptr; }
#endif
#if !defined(COLLAB_HAVE_ARM_CRC)
uint32_t (*crc32_arm_crc())(uint32_t, const uint8_t*, size_t, size_t*) { return nullptr; }
#endif

}  // namespace collab
