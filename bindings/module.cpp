// collab._native: thin pybind11 layer over the C API (include/collab/collab.h).
// Python-facing validation and conveniences live in python/collab/; this file only
// marshals arguments, releases the GIL around native work, and maps error codes.
#include "common.hpp"

PYBIND11_MODULE(_native, m) {
  m.doc() = "collab native core (C API bindings)";
  collab_py::bind_common(m);
  collab_py::bind_codec(m);
  collab_py::bind_llm(m);
  collab_py::bind_vlm(m);
  collab_py::bind_vit(m);
  collab_py::bind_fcnet(m);
}
