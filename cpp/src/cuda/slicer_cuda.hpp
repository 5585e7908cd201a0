// CUDA path of the SLICER codec (same API as the CPU path: collab_encode / collab_decode
// with a tensor whose device is COLLAB_DEVICE_CUDA).
//
// Encode: the O(numel) part runs on the GPU and the tensor never leaves it: keys, NaN/Inf
// check and the radix-select histograms for ATKF's threshold, then order-preserving stream
// compaction of the survivors per sign (CUB). Only the survivors (position + magnitude)
// are copied to the host, where the shared back end (MS, AIQ/ABQ, index code, frame)
// writes exactly the frame the CPU path writes.
// Decode: the frame is host bytes; positions and dequantized values are decoded on the host
// and the sparse (position, value) pairs are scattered into the zeroed device tensor.
#pragma once

#include <cstddef>
#include <cstdint>

#include "codec/codec_context.hpp"
#include "codec/frame.hpp"

namespace collab {
namespace cuda {

// Number of visible CUDA devices (0 without a driver or device).
int device_count();

size_t encode_frame(collab_codec& ctx, const collab_tensor& x, const collab_codec_params& params, uint8_t* out,
                    size_t capacity);

void decode_frame(collab_codec& ctx, const uint8_t* frame, const FrameHeader& h, const collab_tensor& out);

}  // namespace cuda
}  // namespace collab
