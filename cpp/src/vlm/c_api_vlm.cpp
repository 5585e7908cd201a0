// C API of the VLM image encoder (built with llama.cpp + libmtmd).
#include "common/c_api_checks.hpp"
#include "common/errors.hpp"
#include "llm/c_api_llm_types.hpp"
#include "vlm/device.hpp"
#include "vlm/vision.hpp"

using namespace collab;

struct collab_vlm_vision {
  collab_vlm_vision(const char* mmproj, const collab_llm_model* model, int32_t n_threads)
      : v(mmproj, model->m.get(), n_threads) {}
  vlm::Vision v;
};

struct collab_vlm_device {
  collab_vlm_device(collab_llm_model* head, collab_vlm_vision* vision, collab_fcnet* codec,
                    const collab_vlm_device_params& p)
      : d(head->m, vision->v, codec, p) {}
  vlm::Device d;
};

extern "C" {

int32_t collab_vlm_available(void) { return 1; }

collab_status collab_vlm_vision_load(const char* mmproj_path, const collab_llm_model* model, int32_t n_threads,
                                     collab_vlm_vision** vision) {
  return guarded([&] {
    if (vision) *vision = nullptr;
    require_non_null({{mmproj_path, "mmproj_path"}, {model, "model"}, {vision, "vision"}});
    *vision = new collab_vlm_vision(mmproj_path, model, n_threads);
  });
}

void collab_vlm_vision_free(collab_vlm_vision* vision) { delete vision; }

collab_status collab_vlm_vision_info_get(const collab_vlm_vision* vision, collab_vlm_vision_info* info) {
  return guarded([&] {
    require_non_null({{vision, "vision"}, {info, "info"}});
    info->image_size = vision->v.image_size();
    info->n_tokens = vision->v.n_tokens();
    info->n_embd = vision->v.n_embd();
  });
}

collab_status collab_vlm_vision_encode(collab_vlm_vision* vision, const uint8_t* rgb, int32_t nx, int32_t ny,
                                       float* rows, size_t capacity) {
  return guarded([&] {
    require_non_null({{vision, "vision"}, {rgb, "rgb"}});
    require_buffer(rows, capacity, "rows");
    vision->v.encode(rgb, nx, ny, rows, capacity);
  });
}

collab_status collab_vlm_device_new(collab_llm_model* head, collab_vlm_vision* vision, collab_fcnet* image_codec,
                                    const collab_vlm_device_params* params, collab_vlm_device** device) {
  return guarded([&] {
    if (device) *device = nullptr;
    require_non_null({{head, "head"}, {vision, "vision"}, {params, "params"}, {device, "device"}});
    *device = new collab_vlm_device(head, vision, image_codec, *params);
  });
}

void collab_vlm_device_free(collab_vlm_device* device) { delete device; }

collab_status collab_vlm_device_ask(collab_vlm_device* device, const uint8_t* image, size_t image_len,
                                    const char* question, const collab_transport* transport,
                                    collab_llm_token_callback callback, void* user_data,
                                    collab_vlm_answer_info* info) {
  return guarded([&] {
    if (info) *info = collab_vlm_answer_info{};
    require_non_null({{device, "device"}, {image, "image"}, {question, "question"}, {transport, "transport"},
                      {reinterpret_cast<const void*>(callback), "callback"}});
    device->d.ask(image, image_len, question, *transport, callback, user_data, info);
  });
}

}  // extern "C"
