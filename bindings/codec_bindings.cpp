#include <pybind11/stl.h>

#include <memory>

#include "common.hpp"

namespace collab_py {

namespace {

struct Codec {
  Codec() : ptr(collab_codec_new()) {
    if (!ptr) throw std::bad_alloc();
  }
  ~Codec() { collab_codec_free(ptr); }
  Codec(const Codec&) = delete;
  Codec& operator=(const Codec&) = delete;
  collab_codec* ptr;
};

collab_codec_params make_params(double sparsity, double lam, const std::vector<int>& blocks,
                                const std::vector<int>& qbits, double delta, uint64_t seed, int index_code,
                                int threads) {
  collab_codec_params p;
  collab_codec_params_init(&p);
  p.sparsity = sparsity;
  p.lam = lam;
  p.delta = delta;
  p.seed = seed;
  if (blocks.size() != 2) throw py::value_error("blocks must be a pair (M+, M-)");
  for (int b : blocks)
    if (b < 1 || b > COLLAB_MAX_BLOCKS) throw py::value_error("each block count must be in [1, 64]");
  p.blocks_pos = uint32_t(blocks[0]);
  p.blocks_neg = uint32_t(blocks[1]);
  if (qbits.empty() || qbits.size() > COLLAB_MAX_BLOCKS) throw py::value_error("qbits must list 1..64 bit-widths");
  p.n_qbits = uint32_t(qbits.size());
  for (size_t i = 0; i < qbits.size(); ++i) {
    if (qbits[i] < 1 || qbits[i] > COLLAB_MAX_QBITS) throw py::value_error("each qbits entry must be in [1, 16]");
    p.qbits[i] = uint8_t(qbits[i]);
  }
  p.index_code = index_code;
  p.n_threads = threads;
  return p;
}

py::dict info_dict(const collab_frame_info& info) {
  py::dict d;
  d["version"] = info.version;
  d["dtype"] = int(info.dtype);
  py::tuple shape(info.ndim);
  for (int i = 0; i < info.ndim; ++i) shape[i] = info.shape[i];
  d["shape"] = shape;
  d["numel"] = info.numel;
  d["sparsity"] = info.params.sparsity;
  d["lam"] = info.params.lam;
  d["delta"] = info.params.delta;
  d["seed"] = info.params.seed;
  d["blocks"] = py::make_tuple(info.params.blocks_pos, info.params.blocks_neg);
  py::list q;
  for (uint32_t i = 0; i < info.params.n_qbits; ++i) q.append(int(info.params.qbits[i]));
  d["qbits"] = py::tuple(q);
  d["k_keep"] = info.k_keep;
  d["n_pos"] = info.n_pos;
  d["n_neg"] = info.n_neg;
  d["index_code"] = int(info.index_code);
  d["header_bytes"] = info.header_bytes;
  d["index_bytes"] = info.index_bytes;
  d["value_bytes"] = info.value_bytes;
  d["total_bytes"] = info.total_bytes;
  return d;
}

}  // namespace

void bind_codec(py::module_& m) {
  py::class_<Codec>(m, "Codec", "Reusable scratch memory for encode/decode (one per thread).").def(py::init<>());

  m.def(
      "encode",
      [](Codec* codec, uintptr_t ptr, int dtype, const std::vector<int64_t>& shape, int device, int device_id,
         double sparsity, double lam, const std::vector<int>& blocks, const std::vector<int>& qbits, double delta,
         uint64_t seed, int index_code, int threads) {
        collab_tensor x = make_tensor(ptr, dtype, shape, device, device_id);
        collab_codec_params p = make_params(sparsity, lam, blocks, qbits, delta, seed, index_code, threads);
        size_t bound = 0;
        check(collab_encode_bound(x.shape, x.ndim, &p, &bound));
        PyObject* obj = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(bound));
        if (!obj) throw py::error_already_set();
        py::object frame = py::reinterpret_steal<py::object>(obj);
        size_t written = 0;
        collab_status st;
        {
          py::gil_scoped_release nogil;
          st = collab_encode(codec ? codec->ptr : nullptr, &x, &p, PyBytes_AS_STRING(obj), bound, &written);
        }
        check(st);
        PyObject* raw = frame.release().ptr();
        if (_PyBytes_Resize(&raw, Py_ssize_t(written)) != 0) throw py::error_already_set();
        return py::reinterpret_steal<py::bytes>(raw);
      },
      py::arg("codec"), py::arg("ptr"), py::arg("dtype"), py::arg("shape"), py::arg("device"), py::arg("device_id"),
      py::arg("sparsity"), py::arg("lam"), py::arg("blocks"), py::arg("qbits"), py::arg("delta"), py::arg("seed"),
      py::arg("index_code"), py::arg("threads"));

  m.def(
      "decode_into",
      [](Codec* codec, py::buffer frame, uintptr_t ptr, int dtype, const std::vector<int64_t>& shape, int device,
         int device_id) {
        py::buffer_info buf = frame.request();
        collab_tensor out = make_tensor(ptr, dtype, shape, device, device_id);
        collab_status st;
        {
          py::gil_scoped_release nogil;
          st = collab_decode(codec ? codec->ptr : nullptr, buf.ptr, size_t(buf.size * buf.itemsize), &out);
        }
        check(st);
      },
      py::arg("codec"), py::arg("frame"), py::arg("ptr"), py::arg("dtype"), py::arg("shape"), py::arg("device"),
      py::arg("device_id"));

  m.def(
      "frame_info",
      [](py::buffer frame) {
        py::buffer_info buf = frame.request();
        collab_frame_info info;
        check(collab_frame_info_get(buf.ptr, size_t(buf.size * buf.itemsize), &info));
        py::dict d = info_dict(info);
        py::list blocks;
        uint32_t nb = info.params.blocks_pos + info.params.blocks_neg;
        for (uint32_t b = 0; b < nb; ++b) {
          collab_block_info bi;
          check(collab_frame_block_get(buf.ptr, size_t(buf.size * buf.itemsize), b, &bi));
          py::dict e;
          e["sign"] = bi.sign;
          e["rank"] = bi.rank;
          e["count"] = bi.count;
          e["bits"] = bi.bits;
          e["lo"] = bi.lo;
          e["step"] = bi.step;
          blocks.append(e);
        }
        d["block_info"] = blocks;
        return d;
      },
      py::arg("frame"));

  m.def(
      "predict_bits",
      [](const std::vector<int64_t>& shape, double sparsity, const std::vector<int>& blocks,
         const std::vector<int>& qbits) {
        if (shape.size() > COLLAB_MAX_NDIM) throw py::value_error("at most 8 dimensions are supported");
        collab_codec_params p = make_params(sparsity, 0.0, blocks, qbits, 0.0, 0, COLLAB_INDEX_AUTO, 0);
        uint64_t bits = 0;
        check(collab_predict_bits(shape.data(), int32_t(shape.size()), &p, &bits));
        return bits;
      },
      py::arg("shape"), py::arg("sparsity"), py::arg("blocks"), py::arg("qbits"));
}

}  // namespace collab_py
