// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320): the same value as zlib.crc32,
// which the numpy reference uses for the frame checksum.
#pragma once

#include <cstddef>
#include <cstdint>

namespace collab {

// Hardware-accelerated where the CPU allows (chosen once, at first use).
uint32_t crc32(const void* data, size_t len, uint32_t crc = 0);
// Table-driven only (tests compare the two).
uint32_t crc32_portable(const void* data, size_t len, uint32_t crc = 0);

// Internal: raw-state table update, and the hardware kernels (nullptr when unavailable).
// A kernel consumes a prefix of p (a multiple of 16 bytes, at least 64) and reports its length.
uint32_t crc32_update_table(uint32_t state, const uint8_t* p, size_t len);
uint32_t (*crc32_x86_pclmul())(uint32_t state, const uint8_t* p, size_t len, size_t* done);
uint32_t (*crc32_arm_crc())(uint32_t state, const uint8_t* p, size_t len, size_t* done);

}  // namespace collab
