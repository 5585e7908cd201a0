// Helpers shared by the binding files: status -> Python exception, tensor views.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "collab/collab.h"

namespace py = pybind11;

namespace collab_py {

// Raise the Python exception that matches a C status (types live in collab.errors).
[[noreturn]] void raise_status(collab_status status);

// Raise collab.errors.InvalidArgument (for checks only the binding can make, e.g. the
// size of an array it must allocate before calling the core).
[[noreturn]] void raise_invalid(const std::string& message);

inline void check(collab_status status) {
  if (status != COLLAB_OK) raise_status(status);
}

// A read-only, C-contiguous byte view of any buffer-protocol object. PyBUF_SIMPLE makes
// Python refuse strided views (a reversed memoryview raises BufferError), so the core,
// which reads len bytes forward from the start pointer, never reads outside the buffer.
class ByteView {
 public:
  explicit ByteView(const py::handle& obj) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  }
  ~ByteView() { PyBuffer_Release(&view_); }
  ByteView(const ByteView&) = delete;
  ByteView& operator=(const ByteView&) = delete;
  const void* data() const { return view_.buf; }
  size_t size() const { return size_t(view_.len); }

 private:
  Py_buffer view_{};
};

// Build a collab_tensor from (pointer, dtype code, shape, device, device id).
collab_tensor make_tensor(uintptr_t ptr, int dtype, const std::vector<int64_t>& shape, int device, int device_id);

void bind_common(py::module_& m);
void bind_codec(py::module_& m);
void bind_llm(py::module_& m);
void bind_vlm(py::module_& m);
void bind_vit(py::module_& m);
void bind_fcnet(py::module_& m);

}  // namespace collab_py
