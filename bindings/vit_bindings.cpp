#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "common.hpp"

namespace collab_py {

void bind_vit(py::module_& m) {
  m.def(
      "vit_prune_count",
      [](int64_t n_patches, int region, double rate) {
        int64_t k = 0;
        check(collab_vit_prune_count(n_patches, region, rate, &k));
        return k;
      },
      py::arg("n_patches"), py::arg("region"), py::arg("rate"));
  m.def(
      "vit_regional_prune",
      [](uintptr_t ptr, int dtype, const std::vector<int64_t>& shape, int device, int device_id, int region,
         bool has_cls, int64_t n_prune) {
        collab_tensor x = make_tensor(ptr, dtype, shape, device, device_id);
        if (shape.size() != 2 && shape.size() != 3)
          raise_invalid("attention outputs must be (T, C) or (B, T, C)");
        const int64_t b = shape.size() == 3 ? shape[0] : 1;
        const int64_t t = shape[shape.size() - 2];
        const int64_t kept_n = t - n_prune;
        if (b < 0 || kept_n < 0) raise_invalid("n_prune exceeds the token count");
        py::array_t<int64_t> out(std::vector<py::ssize_t>{py::ssize_t(b), py::ssize_t(kept_n)});
        int64_t* dst = out.mutable_data();
        collab_status st;
        {
          py::gil_scoped_release nogil;
          st = collab_vit_regional_prune(&x, region, has_cls ? 1 : 0, n_prune, dst, size_t(b * kept_n));
        }
        check(st);
        return out;
      },
      py::arg("ptr"), py::arg("dtype"), py::arg("shape"), py::arg("device"), py::arg("device_id"), py::arg("region"),
      py::arg("has_cls"), py::arg("n_prune"));
}

}  // namespace collab_py
