// The opaque collab_codec handle: scratch buffers reused across encode/decode calls so
// that steady-state calls do not allocate.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "codec/atkf.hpp"
#include "codec/magnitude_split.hpp"

struct collab_codec {
  collab::AtkfScratch atkf;
  collab::SplitScratch split;
  collab::SignedSurvivors surv[2];
  std::vector<uint64_t> offsets[2];
  std::vector<uint16_t> codes, abq_scratch;
  std::vector<uint8_t> labels;
  std::vector<uint32_t> positions;
  std::vector<float> values;
  std::vector<uint16_t> values16;
  std::shared_ptr<void> cuda;  // device scratch of the CUDA path (cuda/), created on first use
};
