// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320): the same value as zlib.crc32,
// which the numpy reference uses for the frame checksum.
#pragma once

#include <cstddef>
#include <cstdint>

namespace collab {

uint32_t crc32(const void* data, size_t len, uint32_t crc = 0);

}  // namespace collab
