// Parser of the CLFN file (trained MindFusion nets; layout in python/collab/llm/artifact.py).
// Independent of ggml so the checks can run in every build.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "collab/collab.h"

namespace collab::fcnet {

struct Tensor {
  std::string name;
  std::vector<uint32_t> shape;  // (out, in) for weights, (out) for biases
  std::vector<float> data;
};

struct Parsed {
  collab_fcnet_info info{};
  std::vector<Tensor> tensors;  // in the fixed order of the kind
};

// Throws collab::Error (COLLAB_ERR_FRAME for corrupt bytes, COLLAB_ERR_INVALID_ARGUMENT for a
// net that does not match the expectations).
Parsed parse(const uint8_t* buf, size_t len, int32_t kind, int32_t n_embd, const uint8_t* model_digest);

}  // namespace collab::fcnet
