// Helpers shared by the binding files: status -> Python exception, tensor views.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "collab/collab.h"

namespace py = pybind11;

namespace collab_py {

// Raise the Python exception that matches a C status (types live in collab.errors).
[[noreturn]] void raise_status(collab_status status);

inline void check(collab_status status) {
  if (status != COLLAB_OK) raise_status(status);
}

// Build a collab_tensor from (pointer, dtype code, shape, device, device id).
collab_tensor make_tensor(uintptr_t ptr, int dtype, const std::vector<int64_t>& shape, int device, int device_id);

void bind_common(py::module_& m);
void bind_codec(py::module_& m);
void bind_llm(py::module_& m);
void bind_vit(py::module_& m);
void bind_fcnet(py::module_& m);

}  // namespace collab_py
