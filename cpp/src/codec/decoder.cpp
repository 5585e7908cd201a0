#include "codec/decoder.hpp"

#include <cstring>

#include "codec/index_codes.hpp"
#include "common/bits.hpp"
#include "common/dtype.hpp"
#include "simd/kernels.hpp"

namespace collab {

void decode_sparse(collab_codec& ctx, const uint8_t* frame, const FrameHeader& h) {
  const uint64_t n = h.n_pos + h.n_neg;
  std::vector<uint64_t> counts;
  counts.reserve(h.blocks.size());
  for (const BlockMeta& b : h.blocks) counts.push_back(b.count);
  ctx.positions.resize(size_t(n));
  decode_index(h.index_code, frame + h.header_bytes, size_t(h.index_bytes), h.numel,
               csr_view(h.shape, h.ndim, h.numel), counts, ctx.positions.data());

  ctx.codes.resize(size_t(n));
  ctx.values.resize(size_t(n));
  const Kernels& k = kernels();
  const uint8_t* vals = frame + h.header_bytes + h.index_bytes;
  uint64_t at = 0;
  for (const BlockMeta& b : h.blocks) {
    if (!b.count) continue;
    size_t nb = packed_bytes(b.count, b.bits);
    uint16_t* codes = ctx.codes.data() + at;
    float* v = ctx.values.data() + at;
    unpack_bits(vals, nb, size_t(b.count), b.bits, codes);
    vals += nb;
    k.dequantize(codes, size_t(b.count), b.lo, b.step, v);
    if (b.sign < 0)
      for (uint64_t j = 0; j < b.count; ++j) v[j] = -v[j];
    at += b.count;
  }
}

namespace {

// Every decoded value is non-zero in the output dtype (the parser checked each block's
// minimum against the dtype), so a non-zero slot means two blocks claim one position.
template <class T>
void scatter(const uint32_t* pos, const T* v, size_t n, T* out) {
  for (size_t j = 0; j < n; ++j) {
    T& slot = out[pos[j]];
    COLLAB_FRAME_CHECK(slot == 0, "two blocks claim the same position");
    slot = v[j];
  }
}

}  // namespace

void decode_frame(collab_codec& ctx, const uint8_t* frame, size_t len, const FrameHeader& h, void* out) {
  (void)len;
  const size_t n = size_t(h.n_pos + h.n_neg);
  if (h.numel) std::memset(out, 0, size_t(h.numel) * dtype_size(h.dtype));
  decode_sparse(ctx, frame, h);
  const uint32_t* pos = ctx.positions.data();
  if (h.dtype == COLLAB_DTYPE_F32) {
    float* o = static_cast<float*>(out);
    const float* v = ctx.values.data();
    for (size_t j = 0; j < n; ++j) {
      float& slot = o[pos[j]];
      COLLAB_FRAME_CHECK(f32_bits(slot) == 0, "two blocks claim the same position");
      slot = v[j];
    }
    return;
  }
  ctx.values16.resize(n);
  if (h.dtype == COLLAB_DTYPE_F16)
    kernels().to_f16(ctx.values.data(), n, ctx.values16.data());
  else
    kernels().to_bf16(ctx.values.data(), n, ctx.values16.data());
  scatter(pos, ctx.values16.data(), n, static_cast<uint16_t*>(out));
}

}  // namespace collab
