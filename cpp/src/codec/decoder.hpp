// SLICER decoder (Eq. 8): X~ = sum over blocks of CSR^-1(v_min + code * o_m), signed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "codec/codec_context.hpp"
#include "codec/frame.hpp"

namespace collab {

// Decode frame into out (host memory, numel elements of the frame's dtype, zeroed here).
// Throws COLLAB_ERR_FRAME on anything malformed; out may then hold partial data.
void decode_frame(collab_codec& ctx, const uint8_t* frame, size_t len, const FrameHeader& h, void* out);

// Decode positions and dequantized float32 values (signed) of every block, in block order
// (shared by the CPU scatter and the CUDA upload path).
void decode_sparse(collab_codec& ctx, const uint8_t* frame, const FrameHeader& h);

}  // namespace collab
