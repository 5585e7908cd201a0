// The device half of the split VLM in one call (collab_vlm_device_ask): the native twin of
// collab.vlm.split.VlmDevice + collab.vlm.codec.image_row_policy, speaking the "llm" task's
// session protocol (python/collab/llm/server.py) through the app's collab_transport.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "collab/collab.h"

namespace collab::llm {
class Model;
}

namespace collab::vlm {

class Vision;

class Device {
 public:
  // codec may be NULL (image rows exact). Checks that the three belong together.
  Device(llm::Model& head, Vision& vision, collab_fcnet* codec, const collab_vlm_device_params& params);

  void ask(const uint8_t* image, size_t image_len, const char* question, const collab_transport& transport,
           collab_llm_token_callback callback, void* user_data, collab_vlm_answer_info* info);

 private:
  llm::Model& head_;
  Vision& vision_;
  collab_fcnet* codec_;
  int32_t code_dim_ = 0;
  collab_vlm_device_params params_;
  std::string task_;
};

}  // namespace collab::vlm
