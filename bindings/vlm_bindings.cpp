// collab._native VLM class: VlmVision over the collab_vlm_* C API. It loads its own handle
// on the text model file (mmap: the weights are shared with other loads of the same file).
#include <pybind11/numpy.h>

#include <string>

#include "common.hpp"

namespace collab_py {

namespace {

struct VlmVision {
  VlmVision(const std::string& mmproj, const std::string& text_model, int n_threads) {
    collab_status st;
    {
      py::gil_scoped_release nogil;
      st = collab_llm_model_load(text_model.c_str(), &model);
      if (st == COLLAB_OK) st = collab_vlm_vision_load(mmproj.c_str(), model, n_threads, &ptr);
    }
    if (st != COLLAB_OK) {
      collab_llm_model_free(model);
      model = nullptr;
    }
    check(st);
    check(collab_vlm_vision_info_get(ptr, &info));
  }
  ~VlmVision() {
    collab_vlm_vision_free(ptr);
    collab_llm_model_free(model);
  }
  VlmVision(const VlmVision&) = delete;
  VlmVision& operator=(const VlmVision&) = delete;
  collab_llm_model* model = nullptr;
  collab_vlm_vision* ptr = nullptr;
  collab_vlm_vision_info info{};
};

using U8 = py::array_t<uint8_t, py::array::c_style>;

}  // namespace

void bind_vlm(py::module_& m) {
  m.def("vlm_available", [] { return collab_vlm_available() != 0; });
  py::class_<VlmVision>(m, "VlmVision")
      .def(py::init<const std::string&, const std::string&, int>(), py::arg("mmproj"), py::arg("text_model"),
           py::arg("n_threads") = 2)
      .def_property_readonly("image_size", [](const VlmVision& v) { return v.info.image_size; })
      .def_property_readonly("n_tokens", [](const VlmVision& v) { return v.info.n_tokens; })
      .def_property_readonly("n_embd", [](const VlmVision& v) { return v.info.n_embd; })
      .def("encode",
           [](VlmVision& v, U8 rgb) {
             if (rgb.ndim() != 3 || rgb.shape(2) != 3)
               raise_invalid("image must be a uint8 array (H, W, 3)");
             py::array_t<float> out({py::ssize_t(v.info.n_tokens), py::ssize_t(v.info.n_embd)});
             collab_status st;
             {
               py::gil_scoped_release nogil;
               st = collab_vlm_vision_encode(v.ptr, rgb.data(), int32_t(rgb.shape(1)), int32_t(rgb.shape(0)),
                                             out.mutable_data(), size_t(out.size()));
             }
             check(st);
             return out;
           },
           py::arg("rgb"));
}

}  // namespace collab_py
