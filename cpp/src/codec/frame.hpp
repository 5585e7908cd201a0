// The SLICER frame: header layout, writer and validating parser (docs/frame_format.md).
//
//   "CLBF" u8 version u8 dtype u8 index_code u8 ndim | shape: ndim varints
//   f64 sparsity f64 lam f64 delta | varint seed | u8 M+ u8 M- u8 nq | nq x u8 qbits
//   varint n_pos varint n_neg | (M+ + M-) x {u8 bits, f32 lo, f32 step}
//   varint index_len | index bytes | value bytes | u32 crc32 of everything before it
//
// All integers little-endian. Block b < M+ is the b-th positive block (largest magnitudes
// first), block M+ + r the r-th negative block. Block sizes are not stored: they follow
// from n_pos / n_neg and the equal-cardinality rule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/params.hpp"

namespace collab {

constexpr uint8_t kFrameMagic[4] = {'C', 'L', 'B', 'F'};

struct BlockMeta {
  int sign = 1;       // +1 / -1
  uint32_t rank = 0;  // 0 = largest magnitudes of its sign
  uint64_t count = 0;
  int bits = 0;
  float lo = 0.0f, step = 0.0f;
};

struct FrameHeader {
  uint8_t version = COLLAB_FRAME_VERSION;
  collab_dtype dtype = COLLAB_DTYPE_F32;
  int index_code = COLLAB_INDEX_CSR;
  int32_t ndim = 0;
  int64_t shape[COLLAB_MAX_NDIM] = {};
  uint64_t numel = 0;
  collab_codec_params params{};
  uint64_t k_keep = 0;
  uint64_t n_pos = 0, n_neg = 0;
  std::vector<BlockMeta> blocks;  // M+ + M- entries
  // Section sizes (set by the parser, or by the encoder before writing).
  uint64_t header_bytes = 0, index_bytes = 0, value_bytes = 0, total_bytes = 0;
};

// Block layout for these counts: sign, rank and size of each of the M+ + M- blocks.
std::vector<BlockMeta> block_layout(const collab_codec_params& p, uint64_t n_pos, uint64_t n_neg);

// Bytes of everything before the index section (the header proper).
size_t header_size(const FrameHeader& h);
void write_header(const FrameHeader& h, class ByteWriter& w);

// Verify checksum and parse + validate the header of frame[0, len). Throws
// COLLAB_ERR_FRAME / COLLAB_ERR_UNSUPPORTED with a message on anything wrong.
FrameHeader parse_frame(const uint8_t* frame, size_t len);

}  // namespace collab
