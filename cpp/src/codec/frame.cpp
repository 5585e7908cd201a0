#include "codec/frame.hpp"

#include <cmath>
#include <cstring>

#include "common/byte_io.hpp"
#include "common/crc32.hpp"
#include "common/dtype.hpp"

namespace collab {

std::vector<BlockMeta> block_layout(const collab_codec_params& p, uint64_t n_pos, uint64_t n_neg) {
  std::vector<BlockMeta> out;
  out.reserve(p.blocks_pos + p.blocks_neg);
  for (uint32_t m = 0; m < p.blocks_pos; ++m) {
    BlockMeta b;
    b.sign = 1;
    b.rank = m;
    b.count = block_size(n_pos, p.blocks_pos, m);
    out.push_back(b);
  }
  for (uint32_t m = 0; m < p.blocks_neg; ++m) {
    BlockMeta b;
    b.sign = -1;
    b.rank = m;
    b.count = block_size(n_neg, p.blocks_neg, m);
    out.push_back(b);
  }
  return out;
}

size_t header_size(const FrameHeader& h) {
  size_t n = 8;
  for (int32_t i = 0; i < h.ndim; ++i) n += varint_size(uint64_t(h.shape[i]));
  n += 24 + varint_size(h.params.seed) + 3 + h.params.n_qbits;
  n += varint_size(h.n_pos) + varint_size(h.n_neg);
  n += 9 * h.blocks.size();
  n += varint_size(h.index_bytes);
  return n;
}

void write_header(const FrameHeader& h, ByteWriter& w) {
  w.bytes(kFrameMagic, 4);
  w.u8(h.version);
  w.u8(uint8_t(h.dtype));
  w.u8(uint8_t(h.index_code));
  w.u8(uint8_t(h.ndim));
  for (int32_t i = 0; i < h.ndim; ++i) w.varint(uint64_t(h.shape[i]));
  w.f64(h.params.sparsity);
  w.f64(h.params.lam);
  w.f64(h.params.delta);
  w.varint(h.params.seed);
  w.u8(uint8_t(h.params.blocks_pos));
  w.u8(uint8_t(h.params.blocks_neg));
  w.u8(uint8_t(h.params.n_qbits));
  w.bytes(h.params.qbits, h.params.n_qbits);
  w.varint(h.n_pos);
  w.varint(h.n_neg);
  for (const BlockMeta& b : h.blocks) {
    w.u8(uint8_t(b.bits));
    w.f32(b.lo);
    w.f32(b.step);
  }
  w.varint(h.index_bytes);
}

namespace {

// The index section the header implies, before anything is decoded or allocated: CSR and
// bitmap sizes follow from the shape and the block counts alone (exact); a delta+varint
// position takes at least one byte and a Rice code at least k + 1 bits, each block
// byte-aligned (lower bounds). So a few bytes cannot declare a payload they do not carry.
struct IndexBound {
  uint64_t bytes;
  bool exact;
};

IndexBound implied_index_bytes(const FrameHeader& h) {
  uint64_t total = 0;
  switch (h.index_code) {
    case COLLAB_INDEX_CSR: {
      const CsrView csr = csr_view(h.shape, h.ndim, h.numel);
      const int wc = csr_col_bits(csr);
      for (const BlockMeta& b : h.blocks)
        if (b.count) total += packed_bytes(csr.rows + 1, bit_length(b.count)) + packed_bytes(b.count, wc);
      return {total, true};
    }
    case COLLAB_INDEX_BITMAP: {
      uint64_t n = 0;
      for (const BlockMeta& b : h.blocks) n += b.count;
      return {(h.numel + 7) / 8 + packed_bytes(n, bit_length(h.blocks.size() - 1)), true};
    }
    case COLLAB_INDEX_DELTA_VARINT:
      return {h.n_pos + h.n_neg, false};
    default:
      for (const BlockMeta& b : h.blocks)
        if (b.count) total += packed_bytes(b.count, rice_parameter(h.numel, b.count) + 1);
      return {total, false};
  }
}

}  // namespace

FrameHeader parse_frame(const uint8_t* frame, size_t len) {
  COLLAB_FRAME_CHECK(frame != nullptr || len == 0, "frame is NULL");
  COLLAB_FRAME_CHECK(len >= 12, "frame is too short (%zu bytes)", len);
  COLLAB_FRAME_CHECK(std::memcmp(frame, kFrameMagic, 4) == 0, "not a collab frame (bad magic)");
  ByteReader tail(frame + len - 4, 4);
  COLLAB_FRAME_CHECK(tail.u32() == crc32(frame, len - 4), "checksum mismatch");

  FrameHeader h;
  ByteReader r(frame, len - 4);
  r.take(4);
  h.version = r.u8();
  if (h.version != COLLAB_FRAME_VERSION)
    fail(COLLAB_ERR_FRAME, "unsupported frame version %u (this build reads %d)", h.version, COLLAB_FRAME_VERSION);
  int dcode = r.u8(), code = r.u8(), ndim = r.u8();
  COLLAB_FRAME_CHECK(dtype_valid(dcode), "unknown dtype code %d", dcode);
  COLLAB_FRAME_CHECK(code >= COLLAB_INDEX_CSR && code <= COLLAB_INDEX_DELTA_RICE, "unknown index code %d", code);
  COLLAB_FRAME_CHECK(ndim <= COLLAB_MAX_NDIM, "too many dimensions (%d)", ndim);
  h.dtype = collab_dtype(dcode);
  h.index_code = code;
  h.ndim = ndim;
  uint64_t numel = 1;
  bool zero = false;  // as checked_numel: a zero anywhere makes the tensor empty
  for (int i = 0; i < ndim; ++i) {
    uint64_t d = r.varint(kMaxElements);
    h.shape[i] = int64_t(d);
    if (d == 0) zero = true;
  }
  for (int i = 0; i < ndim && !zero; ++i) {
    numel *= uint64_t(h.shape[i]);
    COLLAB_FRAME_CHECK(numel <= kMaxElements, "too many elements");
  }
  h.numel = zero ? 0 : numel;

  collab_codec_params& p = h.params;
  collab_codec_params_init(&p);
  p.sparsity = r.f64();
  p.lam = r.f64();
  p.delta = r.f64();
  p.seed = r.varint();
  COLLAB_FRAME_CHECK(p.sparsity >= 0.0 && p.sparsity < 1.0 && p.lam >= 0.0 && p.lam < 1.0 &&
                         std::isfinite(p.delta) && p.delta >= 0.0,
                     "bad codec parameters");
  p.blocks_pos = r.u8();
  p.blocks_neg = r.u8();
  p.n_qbits = r.u8();
  uint32_t max_blocks = p.blocks_pos > p.blocks_neg ? p.blocks_pos : p.blocks_neg;
  COLLAB_FRAME_CHECK(p.blocks_pos >= 1 && p.blocks_pos <= COLLAB_MAX_BLOCKS && p.blocks_neg >= 1 &&
                         p.blocks_neg <= COLLAB_MAX_BLOCKS && p.n_qbits >= 1 && p.n_qbits <= max_blocks,
                     "bad block counts");
  std::memcpy(p.qbits, r.take(p.n_qbits), p.n_qbits);
  for (uint32_t i = 0; i < p.n_qbits; ++i)
    COLLAB_FRAME_CHECK(p.qbits[i] >= 1 && p.qbits[i] <= COLLAB_MAX_QBITS, "bad qbits");
  p.index_code = code;

  h.k_keep = k_keep_for(h.numel, p.sparsity);
  h.n_pos = r.varint(kMaxElements);
  h.n_neg = r.varint(kMaxElements);
  COLLAB_FRAME_CHECK(h.n_pos + h.n_neg <= h.k_keep, "more non-zeros than k_keep");

  const float tiny = dtype_smallest_subnormal(h.dtype);
  h.blocks = block_layout(p, h.n_pos, h.n_neg);
  uint64_t value_bytes = 0;
  for (BlockMeta& b : h.blocks) {
    b.bits = r.u8();
    b.lo = r.f32();
    b.step = r.f32();
    if (b.count == 0) {
      COLLAB_FRAME_CHECK(b.bits == 0 && f32_bits(b.lo) == 0 && f32_bits(b.step) == 0,
                         "empty block with non-zero parameters");
      continue;
    }
    COLLAB_FRAME_CHECK(b.bits >= 1 && b.bits <= bits_for_block(p, b.rank), "block bit-width out of range");
    COLLAB_FRAME_CHECK(std::isfinite(b.lo) && b.lo >= tiny && std::isfinite(b.step) && b.step >= 0.0f,
                       "bad block scale");
    float top = float((1u << b.bits) - 1u) * b.step;
    top = b.lo + top;
    COLLAB_FRAME_CHECK(std::isfinite(round_to_dtype(top, h.dtype)), "block range overflows the dtype");
    value_bytes += packed_bytes(b.count, b.bits);
  }
  h.index_bytes = r.varint(len);
  h.header_bytes = r.pos();
  h.value_bytes = value_bytes;
  h.total_bytes = len;
  COLLAB_FRAME_CHECK(h.header_bytes + h.index_bytes + h.value_bytes + 4 == len,
                     "frame length does not match its sections");
  const IndexBound implied = implied_index_bytes(h);
  if (implied.exact)
    COLLAB_FRAME_CHECK(h.index_bytes == implied.bytes, "index section has %llu bytes, the header implies %llu",
                       (unsigned long long)h.index_bytes, (unsigned long long)implied.bytes);
  else
    COLLAB_FRAME_CHECK(h.index_bytes >= implied.bytes, "index section has %llu bytes, the header implies >= %llu",
                       (unsigned long long)h.index_bytes, (unsigned long long)implied.bytes);
  return h;
}

}  // namespace collab
