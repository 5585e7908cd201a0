// CRC-32 with the ARMv8 CRC32 instructions (crc32x = reflected IEEE polynomial).
// Compiled with +crc; used only when the kernel reports the CRC32 hardware capability.
#include <arm_acle.h>
#include <sys/auxv.h>

#include <cstring>

#include "common/crc32.hpp"

#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif

namespace collab {

namespace {

uint32_t crc32_armv8(uint32_t state, const uint8_t* p, size_t len, size_t* done) {
  const size_t n = len & ~size_t(15);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    state = __crc32d(state, v);
  }
  *done = n;
  return state;
}

}  // namespace

uint32_t (*crc32_arm_crc())(uint32_t, const uint8_t*, size_t, size_t*) {
  return (getauxval(AT_HWCAP) & HWCAP_CRC32) ? crc32_armv8 : nullptr;
}

}  // namespace collab
