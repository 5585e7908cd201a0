// The bytes of the split LLM/VLM session protocol that a native device writes and reads.
// The formats are defined (and documented) by the Python side, which both servers run:
//   CLHR hidden rows       python/collab/llm/protocol.py (encode_rows)
//   CLKV KV-cache state    python/collab/llm/protocol.py (encode_state)
//   CLFC FC-coded rows     python/collab/llm/fcnet.py (FcRowPolicy.encode)
//   token ids              little-endian int32 (protocol.encode_tokens)
// tests/test_vlm_native_device.py checks the native bytes against the Python writers.
// No llama.cpp here, so the writers and the token parser build (and are fuzzed) everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace collab::wire {

// CLHR with one float32 segment: every row at full fidelity.
std::vector<uint8_t> rows_f32(const float* rows, size_t n_rows, uint32_t n_embd);

// CLFC: rows [lo, hi) as codes (n = hi - lo rows of code_dim floats, already computed by the
// encoder), the others as float32. code_dtype: 0 f32, 1 f16 (clipped to the f16 range),
// 2 int8 with one f32 scale per row (absmax / 127, 1 for an all-zero row, round half to even).
std::vector<uint8_t> fc_rows(const float* rows, size_t n_rows, uint32_t n_embd, size_t lo, size_t hi,
                             const float* codes, uint32_t code_dim, int code_dtype);

// CLKV: header (model shape, positions, length, CRC-32) + llama_state_seq_get_data bytes.
std::vector<uint8_t> state_frame(const uint8_t* state, size_t len, uint32_t n_layer, uint32_t n_embd,
                                 uint32_t n_past);

// Token ids from a server message: 1..max_tokens little-endian int32 in [0, n_vocab).
// Throws collab::Error (COLLAB_ERR_FRAME) on anything else.
std::vector<int32_t> parse_tokens(const uint8_t* payload, size_t len, int32_t n_vocab, size_t max_tokens = 4096);

}  // namespace collab::wire
