#include <pybind11/stl.h>

#include "common.hpp"

namespace collab_py {

namespace {
[[noreturn]] void raise_error(const char* type, const std::string& message) {
  py::module_ errors = py::module_::import("collab.errors");
  PyErr_SetString(errors.attr(type).ptr(), message.c_str());
  throw py::error_already_set();
}
}  // namespace

void raise_status(collab_status status) {
  const char* detail = collab_last_error();
  std::string msg = detail && *detail ? detail : collab_status_string(status);
  const char* type = "CollabError";
  switch (status) {
    case COLLAB_ERR_INVALID_ARGUMENT:
    case COLLAB_ERR_NONFINITE_INPUT:
    case COLLAB_ERR_UNSUPPORTED: type = "InvalidArgument"; break;
    case COLLAB_ERR_FRAME: type = "FrameError"; break;
    case COLLAB_ERR_OUT_OF_MEMORY: throw std::bad_alloc();
    case COLLAB_ERR_NO_DEVICE:
    case COLLAB_ERR_DEVICE: type = "DeviceError"; break;
    default: break;
  }
  raise_error(type, msg);
}

void raise_invalid(const std::string& message) { raise_error("InvalidArgument", message); }

collab_tensor make_tensor(uintptr_t ptr, int dtype, const std::vector<int64_t>& shape, int device, int device_id) {
  collab_tensor t{};
  t.data = reinterpret_cast<void*>(ptr);
  t.dtype = dtype;
  // The core refuses ndim > COLLAB_MAX_NDIM (InvalidArgument); only what fits is copied.
  t.ndim = shape.size() > size_t(INT32_MAX) ? INT32_MAX : int32_t(shape.size());
  for (size_t i = 0; i < shape.size() && i < COLLAB_MAX_NDIM; ++i) t.shape[i] = shape[i];
  t.device = device;
  t.device_id = device_id;
  return t;
}

void bind_common(py::module_& m) {
  m.def("version", &collab_version);
  m.def("set_num_threads", [](int n) { collab_num_threads_set(n); }, py::arg("n"),
        "Worker threads for native kernels (0 = hardware threads).");
  m.def("get_num_threads", &collab_num_threads_get);
  m.def("get_simd", &collab_simd_get, "SIMD kernels in use: avx2, neon or scalar.");
  m.def("set_simd", [](const std::string& level) { check(collab_simd_set(level.c_str())); }, py::arg("level"),
        "Force 'scalar', 'avx2', 'neon', or 'auto'.");
  m.def("cuda_available", [] { return collab_cuda_available() != 0; });
}

}  // namespace collab_py
