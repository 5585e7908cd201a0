// SLICER encoder: ATKF -> sign separation -> MS -> AIQ/ABQ -> index code -> frame.
#pragma once

#include <cstddef>
#include <cstdint>

#include "codec/codec_context.hpp"

namespace collab {

// Encode host tensor x. Returns the frame size; writes the frame only if it fits in
// capacity (callers report COLLAB_ERR_BUFFER_TOO_SMALL otherwise).
size_t encode_frame(collab_codec& ctx, const void* x, collab_dtype dtype, const int64_t* shape, int32_t ndim,
                    const collab_codec_params& params, uint8_t* out, size_t capacity);

// Steps 2-4 (MS, AIQ/ABQ, index code, frame) from ATKF survivors already in ctx.surv
// (used by encode_frame and by the CUDA path, whose ATKF runs on the device).
size_t encode_survivors(collab_codec& ctx, collab_dtype dtype, const int64_t* shape, int32_t ndim,
                        const collab_codec_params& params, uint8_t* out, size_t capacity);

// Size bounds (see collab_predict_bits / collab_encode_bound).
uint64_t predict_frame_bytes(const int64_t* shape, int32_t ndim, const collab_codec_params& params);
uint64_t encode_bound_bytes(const int64_t* shape, int32_t ndim, const collab_codec_params& params);

}  // namespace collab
