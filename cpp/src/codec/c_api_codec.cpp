// C API of the SLICER codec: argument checks, CPU/CUDA dispatch, exception translation.
// (The deprecated names forward from common/c_api_deprecated.cpp.)
#include <cstring>
#include <memory>

#include "codec/codec_context.hpp"
#include "codec/decoder.hpp"
#include "codec/encoder.hpp"
#include "codec/frame.hpp"
#include "common/c_api_checks.hpp"
#include "common/dtype.hpp"
#include "common/errors.hpp"

#if defined(COLLAB_WITH_CUDA)
#include "cuda/slicer_cuda.hpp"
#endif

using namespace collab;

namespace {

// A caller may pass codec == NULL: use a fresh context for this call.
struct ContextRef {
  explicit ContextRef(collab_codec* c) : ptr(c ? c : (owned = std::make_unique<collab_codec>()).get()) {}
  std::unique_ptr<collab_codec> owned;
  collab_codec* ptr;
};

}  // namespace

extern "C" {

void collab_codec_params_init(collab_codec_params* p) {
  if (!p) return;
  std::memset(p, 0, sizeof *p);
  p->blocks_pos = 1;
  p->blocks_neg = 1;
  p->n_qbits = 1;
  p->qbits[0] = 8;
  p->index_code = COLLAB_INDEX_AUTO;
}

collab_codec* collab_codec_new(void) {
  try {
    return new collab_codec();
  } catch (...) {
    set_last_error("out of memory");
    return nullptr;
  }
}

void collab_codec_free(collab_codec* codec) { delete codec; }

void collab_codec_decode_params_init(collab_codec_decode_params* p) {
  if (!p) return;
  std::memset(p, 0, sizeof *p);
  p->max_output_bytes = COLLAB_DEFAULT_MAX_OUTPUT_BYTES;
}

collab_status collab_codec_predict_bits(const int64_t* shape, int32_t ndim, const collab_codec_params* params,
                                        uint64_t* bits) {
  return guarded([&] {
    require_non_null({{params, "params"}, {bits, "bits"}});
    *bits = 8 * predict_frame_bytes(shape, ndim, *params);
  });
}

collab_status collab_codec_encode_bound(const int64_t* shape, int32_t ndim, const collab_codec_params* params,
                                        size_t* nbytes) {
  return guarded([&] {
    require_non_null({{params, "params"}, {nbytes, "nbytes"}});
    *nbytes = size_t(encode_bound_bytes(shape, ndim, *params));
  });
}

collab_status collab_codec_encode(collab_codec* codec, const collab_tensor* x, const collab_codec_params* params,
                                  void* out, size_t capacity, size_t* written) {
  return guarded([&] {
    require_tensor(x, "x");
    require_non_null({{params, "params"}, {written, "written"}});
    require_buffer(out, capacity, "out");
    ContextRef ctx(codec);
    size_t n;
    if (x->device == COLLAB_DEVICE_CUDA) {
#if defined(COLLAB_WITH_CUDA)
      n = cuda::encode_frame(*ctx.ptr, *x, *params, static_cast<uint8_t*>(out), capacity);
#else
      fail(COLLAB_ERR_NO_DEVICE, "this build of collab has no CUDA support");
#endif
    } else {
      n = encode_frame(*ctx.ptr, x->data, collab_dtype(x->dtype), x->shape, x->ndim, *params, static_cast<uint8_t*>(out),
                       capacity);
    }
    *written = n;
    if (n > capacity) fail(COLLAB_ERR_BUFFER_TOO_SMALL, "frame needs %zu bytes, buffer has %zu", n, capacity);
  });
}

collab_status collab_frame_info_get(const void* frame, size_t len, collab_frame_info* info) {
  return guarded([&] {
    require_non_null({{info, "info"}});
    FrameHeader h = parse_frame(static_cast<const uint8_t*>(frame), len);
    std::memset(info, 0, sizeof *info);
    info->version = h.version;
    info->dtype = h.dtype;
    info->ndim = h.ndim;
    for (int i = 0; i < h.ndim; ++i) info->shape[i] = h.shape[i];
    info->numel = h.numel;
    info->params = h.params;
    info->k_keep = h.k_keep;
    info->n_pos = h.n_pos;
    info->n_neg = h.n_neg;
    info->index_code = h.index_code;
    info->header_bytes = h.header_bytes;
    info->index_bytes = h.index_bytes;
    info->value_bytes = h.value_bytes;
    info->total_bytes = h.total_bytes;
  });
}

collab_status collab_frame_block_get(const void* frame, size_t len, uint32_t b, collab_block_info* info) {
  return guarded([&] {
    require_non_null({{info, "info"}});
    FrameHeader h = parse_frame(static_cast<const uint8_t*>(frame), len);
    COLLAB_ARG_CHECK(b < h.blocks.size(), "block %u out of range (frame has %zu)", b, h.blocks.size());
    const BlockMeta& m = h.blocks[b];
    info->sign = m.sign;
    info->rank = m.rank;
    info->count = m.count;
    info->bits = uint32_t(m.bits);
    info->lo = m.lo;
    info->step = m.step;
  });
}

collab_status collab_codec_decode(collab_codec* codec, const void* frame, size_t len,
                                  const collab_codec_decode_params* params, const collab_tensor* out) {
  return guarded([&] {
    require_tensor(out, "out");
    const uint64_t max_output_bytes = params ? params->max_output_bytes : COLLAB_DEFAULT_MAX_OUTPUT_BYTES;
    FrameHeader h = parse_frame(static_cast<const uint8_t*>(frame), len);
    const uint64_t nbytes = h.numel * dtype_size(h.dtype);  // numel <= 2^32: no overflow
    if (nbytes > max_output_bytes)
      fail(COLLAB_ERR_FRAME, "frame decodes to %llu bytes, more than max_output_bytes=%llu",
           (unsigned long long)nbytes, (unsigned long long)max_output_bytes);
    COLLAB_ARG_CHECK(out->dtype == h.dtype, "out has dtype %d, frame holds %d", int(out->dtype), int(h.dtype));
    COLLAB_ARG_CHECK(out->ndim == h.ndim, "out has %d dims, frame holds %d", int(out->ndim), h.ndim);
    for (int i = 0; i < h.ndim; ++i)
      COLLAB_ARG_CHECK(out->shape[i] == h.shape[i], "out shape[%d] is %lld, frame holds %lld", i,
                       (long long)out->shape[i], (long long)h.shape[i]);
    COLLAB_ARG_CHECK(out->data != nullptr || h.numel == 0, "out data is NULL");
    ContextRef ctx(codec);
    if (out->device == COLLAB_DEVICE_CUDA) {
#if defined(COLLAB_WITH_CUDA)
      cuda::decode_frame(*ctx.ptr, static_cast<const uint8_t*>(frame), h, *out);
#else
      fail(COLLAB_ERR_NO_DEVICE, "this build of collab has no CUDA support");
#endif
    } else {
      decode_frame(*ctx.ptr, static_cast<const uint8_t*>(frame), len, h, out->data);
    }
  });
}

}  // extern "C"
