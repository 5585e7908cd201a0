// collab._native.FcNet: MindFusion's trained FC nets (collab_fcnet_* in collab.h).
#include <pybind11/numpy.h>

#include <string>

#include "common.hpp"

namespace collab_py {

namespace {

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;

struct FcNet {
  FcNet(py::bytes data, int32_t kind, int32_t n_embd, py::object digest) {
    std::string buf = data;
    std::string dig;
    const uint8_t* dp = nullptr;
    if (!digest.is_none()) {
      dig = py::cast<std::string>(py::bytes(digest));
      if (dig.size() != 32) raise_invalid("model digest must be 32 bytes (sha256)");
      dp = reinterpret_cast<const uint8_t*>(dig.data());
    }
    // The enum types take only their own values: refuse others here, by name.
    if (kind < COLLAB_FCNET_ANY || kind > COLLAB_FCNET_CODEC)
      raise_invalid("kind " + std::to_string(kind) + " is not a collab_fcnet_kind");
    collab_fcnet* p = nullptr;
    check(collab_fcnet_load(buf.data(), buf.size(), static_cast<collab_fcnet_kind>(kind), n_embd, dp, &p));
    ptr = p;
    check(collab_fcnet_info_get(ptr, &info));
  }
  ~FcNet() { collab_fcnet_free(ptr); }
  FcNet(const FcNet&) = delete;
  FcNet& operator=(const FcNet&) = delete;
  collab_fcnet* ptr = nullptr;
  collab_fcnet_info info{};
};

}  // namespace

void bind_fcnet(py::module_& m) {
  py::class_<FcNet>(m, "FcNet")
      .def(py::init<py::bytes, int32_t, int32_t, py::object>(), py::arg("data"), py::arg("kind") = 0,
           py::arg("n_embd") = 0, py::arg("model_digest") = py::none())
      .def("info",
           [](const FcNet& s) {
             py::dict d;
             d["kind"] = s.info.kind;
             d["n_embd"] = s.info.n_embd;
             d["split_at"] = s.info.split_at;
             d["n_layer_total"] = s.info.n_layer_total;
             d["code_dim"] = s.info.code_dim;
             d["model_digest"] = py::bytes(reinterpret_cast<const char*>(s.info.model_digest), 32);
             return d;
           })
      .def("apply",
           [](FcNet& s, int32_t op, F32 x, int32_t n_threads) {
             if (op < COLLAB_FCNET_PROJECT || op > COLLAB_FCNET_DECODE)
               raise_invalid("op " + std::to_string(op) + " is not a collab_fcnet_op");
             if (x.ndim() != 2) raise_invalid("input must be a 2-D array (rows, width)");
             const size_t n = size_t(x.shape(0));
             const py::ssize_t width = op == COLLAB_FCNET_ENCODE ? s.info.code_dim : s.info.n_embd;
             const py::ssize_t in_w = op == COLLAB_FCNET_DECODE ? s.info.code_dim : s.info.n_embd;
             if (x.shape(1) != in_w) raise_invalid("input width does not match the net");
             py::array_t<float> out({py::ssize_t(n), width});
             collab_status st;
             {
               py::gil_scoped_release nogil;
               st = collab_fcnet_apply(s.ptr, static_cast<collab_fcnet_op>(op), x.data(), n, out.mutable_data(), n * size_t(width), n_threads);
             }
             check(st);
             return out;
           },
           py::arg("op"), py::arg("x"), py::arg("n_threads") = 1);
}

}  // namespace collab_py
