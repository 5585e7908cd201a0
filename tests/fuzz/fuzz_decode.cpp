// libFuzzer target: decode arbitrary bytes as a collab frame.
//
// Random mutations almost never keep the CRC-32 valid, so half of the inputs get their
// checksum recomputed first (selected by the first byte): that drives the fuzzer through
// the header, index-code and value parsers, which is where a hostile peer would aim.
// Any outcome but a crash, hang, over-read, leak or UB is acceptable.
//
// The first byte also picks the decoder's output limit (bit 1: a small max_output_bytes
// of 16 * (byte >> 2), else the default). A frame over the limit is decoded into a
// one-element buffer: the decoder must refuse it without writing (ASan would see it).
#include <cstdint>
#include <cstring>
#include <vector>

#include "collab/collab.h"
#include "common/crc32.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool fix_crc = data[0] & 1;
  std::vector<uint8_t> frame(data + 1, data + size);
  if (fix_crc && frame.size() >= 4) {
    uint32_t crc = collab::crc32(frame.data(), frame.size() - 4);
    std::memcpy(frame.data() + frame.size() - 4, &crc, 4);
  }
  collab_frame_info info;
  if (collab_frame_info_get(frame.data(), frame.size(), &info) != COLLAB_OK) return 0;
  collab_codec_decode_params dp;
  collab_codec_decode_params_init(&dp);
  if (data[0] & 2) dp.max_output_bytes = uint64_t(data[0] >> 2) * 16;
  const size_t esize = info.dtype == COLLAB_DTYPE_F32 ? 4 : 2;
  const uint64_t need = info.numel * esize;
  const bool over = need > dp.max_output_bytes;
  // Within the limit, stay small enough for the fuzzer's memory budget.
  if (!over && info.numel > (1u << 22)) return 0;
  std::vector<uint8_t> out(over ? esize : size_t(need) + 1);
  collab_tensor t{};
  t.data = out.data();
  t.dtype = info.dtype;
  t.ndim = info.ndim;
  std::memcpy(t.shape, info.shape, sizeof t.shape);
  t.device = COLLAB_DEVICE_CPU;
  collab_codec* codec = collab_codec_new();
  const collab_status st = collab_codec_decode(codec, frame.data(), frame.size(), &dp, &t);
  collab_codec_free(codec);
  if (over && st != COLLAB_ERR_FRAME) __builtin_trap();  // the limit must hold
  for (uint32_t b = 0; b < info.params.blocks_pos + info.params.blocks_neg + 1; ++b) {
    collab_block_info bi;
    collab_frame_block_get(frame.data(), frame.size(), b, &bi);
  }
  return 0;
}
