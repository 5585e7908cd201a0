#include "codec/encoder.hpp"

#include <algorithm>
#include <cstring>

#include "codec/abq.hpp"
#include "codec/atkf.hpp"
#include "codec/frame.hpp"
#include "codec/index_codes.hpp"
#include "codec/magnitude_split.hpp"
#include "common/byte_io.hpp"
#include "common/crc32.hpp"
#include "common/dtype.hpp"
#include "common/thread_pool.hpp"

namespace collab {

size_t encode_frame(collab_codec& ctx, const void* x, collab_dtype dtype, const int64_t* shape, int32_t ndim,
                    const collab_codec_params& p, uint8_t* out, size_t capacity) {
  validate_params(p);
  COLLAB_ARG_CHECK(dtype_valid(dtype), "dtype must be float32, float16 or bfloat16");
  const uint64_t numel = checked_numel(shape, ndim);
  COLLAB_ARG_CHECK(x != nullptr || numel == 0, "input data is NULL");
  const int threads = p.n_threads > 0 ? p.n_threads : default_num_threads();

  // 1. ATKF + sign separation.
  atkf_select(x, dtype, numel, p.sparsity, p.lam, p.seed, threads, ctx.atkf, ctx.surv);
  return encode_survivors(ctx, dtype, shape, ndim, p, out, capacity);
}

size_t encode_survivors(collab_codec& ctx, collab_dtype dtype, const int64_t* shape, int32_t ndim,
                        const collab_codec_params& p, uint8_t* out, size_t capacity) {
  const uint64_t numel = checked_numel(shape, ndim);
  const int threads = p.n_threads > 0 ? p.n_threads : default_num_threads();

  // 2. MS: each sign's survivors into equal-cardinality magnitude blocks.
  magnitude_split(ctx.surv[0], p.blocks_pos, ctx.split, ctx.offsets[0]);
  magnitude_split(ctx.surv[1], p.blocks_neg, ctx.split, ctx.offsets[1]);

  FrameHeader h;
  h.dtype = dtype;
  h.ndim = ndim;
  for (int32_t i = 0; i < ndim; ++i) h.shape[i] = shape[i];
  h.numel = numel;
  h.params = p;
  h.n_pos = ctx.surv[0].pos.size();
  h.n_neg = ctx.surv[1].pos.size();
  h.k_keep = k_keep_for(numel, p.sparsity);
  h.blocks = block_layout(p, h.n_pos, h.n_neg);

  // 3. AIQ + ABQ per block; codes laid out in block order.
  ctx.codes.resize(size_t(h.n_pos + h.n_neg));
  std::vector<PositionSpan> spans;
  spans.reserve(h.blocks.size());
  std::vector<uint64_t> code_off;
  code_off.reserve(h.blocks.size());
  uint64_t code_at = 0, value_bytes = 0;
  for (BlockMeta& b : h.blocks) {
    const int sg = b.sign > 0 ? 0 : 1;
    const uint64_t off = ctx.offsets[sg][b.rank];
    spans.push_back({ctx.surv[sg].pos.data() + off, b.count});
    code_off.push_back(code_at);
    if (b.count) {
      BlockQuant q = abq_quantize(ctx.surv[sg].mag.data() + off, size_t(b.count), bits_for_block(p, b.rank), p.delta,
                                  threads, ctx.codes.data() + code_at, ctx.abq_scratch);
      b.bits = q.bits;
      b.lo = q.lo;
      b.step = q.step;
      value_bytes += packed_bytes(b.count, b.bits);
    }
    code_at += b.count;
  }

  // 4. Positions: the smallest index code (or the one asked for).
  IndexContext ictx{numel, csr_view(shape, ndim, numel), &spans};
  const IndexChoice choice = choose_index_code(ictx, p.index_code);
  const int code = choice.code;
  h.index_code = code;
  h.params.index_code = code;
  h.index_bytes = choice.bytes;
  h.value_bytes = value_bytes;
  h.header_bytes = header_size(h);
  const uint64_t total = h.header_bytes + h.index_bytes + h.value_bytes + 4;
  if (total > capacity) return size_t(total);

  ByteWriter w(out, capacity);
  write_header(h, w);
  encode_index(ictx, code, w.reserve(size_t(h.index_bytes)), ctx.labels);
  for (size_t b = 0; b < h.blocks.size(); ++b) {
    const BlockMeta& m = h.blocks[b];
    if (!m.count) continue;
    size_t nb = packed_bytes(m.count, m.bits);
    pack_bits(ctx.codes.data() + code_off[b], size_t(m.count), m.bits, w.reserve(nb));
  }
  w.u32(crc32(out, w.size()));
  return w.size();
}

namespace {

struct Bounds {
  uint64_t numel, k, nblocks, bitmap, csr;
  uint64_t header_fixed;  // everything in the header but the index_len varint
  uint64_t values;
};

Bounds bounds(const int64_t* shape, int32_t ndim, const collab_codec_params& p) {
  validate_params(p);
  Bounds b{};
  b.numel = checked_numel(shape, ndim);
  b.k = k_keep_for(b.numel, p.sparsity);
  b.nblocks = p.blocks_pos + p.blocks_neg;
  CsrView v = csr_view(shape, ndim, b.numel);
  b.bitmap = (b.numel + 7) / 8 + packed_bytes(b.k, bit_length(b.nblocks - 1));
  b.csr = b.nblocks * packed_bytes(v.rows + 1, bit_length(b.k)) + packed_bytes(b.k, csr_col_bits(v)) + b.nblocks;
  int qmax = 0;
  for (uint32_t i = 0; i < p.n_qbits; ++i) qmax = std::max(qmax, int(p.qbits[i]));
  b.values = packed_bytes(b.k, qmax) + b.nblocks;
  uint64_t shape_bytes = 0;
  for (int32_t i = 0; i < ndim; ++i) shape_bytes += varint_size(uint64_t(shape[i]));
  b.header_fixed = 8 + shape_bytes + 24 + 10 + 3 + p.n_qbits + 2 * varint_size(b.k) + 9 * b.nblocks;
  return b;
}

}  // namespace

// B^UB of SLICER Sec. 3.3 as bytes; mirrors reference predict_bits.
uint64_t predict_frame_bytes(const int64_t* shape, int32_t ndim, const collab_codec_params& p) {
  Bounds b = bounds(shape, ndim, p);
  uint64_t index = std::min(b.bitmap, b.csr);
  return b.header_fixed + varint_size(index) + index + b.values + 4;
}

// Like predict_frame_bytes, but for any index code (forced codes included).
uint64_t encode_bound_bytes(const int64_t* shape, int32_t ndim, const collab_codec_params& p) {
  Bounds b = bounds(shape, ndim, p);
  // Varint gaps are < numel; a Rice code spends < k + 1 + 2.886 bits per gap (k <= 31).
  uint64_t varint = b.k * varint_size(b.numel ? b.numel : 1);
  uint64_t rice = (b.k * 36 + 7) / 8 + b.nblocks;
  uint64_t index = std::max(std::max(b.bitmap, b.csr), std::max(varint, rice));
  return b.header_fixed + varint_size(index) + index + b.values + 4;
}

}  // namespace collab
