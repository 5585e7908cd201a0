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

// Range checks are the core's (validate_params) and the Python layer's (collab._validate);
// these conversions only saturate, so an out-of-range value stays out of range and is
// refused there instead of wrapping into a valid one.
uint32_t saturate_u32(int64_t v) { return v < 0 ? 0u : (v > int64_t(UINT32_MAX) ? UINT32_MAX : uint32_t(v)); }

collab_codec_params make_params(double sparsity, double lam, const std::vector<int64_t>& blocks,
                                const std::vector<int64_t>& qbits, double delta, uint64_t seed, int index_code,
                                int threads) {
  collab_codec_params p;
  collab_codec_params_init(&p);
  p.sparsity = sparsity;
  p.lam = lam;
  p.delta = delta;
  p.seed = seed;
  // A blocks list that is not a pair becomes (0, 0): refused by the core as out of range.
  p.blocks_pos = blocks.size() == 2 ? saturate_u32(blocks[0]) : 0u;
  p.blocks_neg = blocks.size() == 2 ? saturate_u32(blocks[1]) : 0u;
  p.n_qbits = saturate_u32(int64_t(qbits.size()));
  for (size_t i = 0; i < qbits.size() && i < COLLAB_MAX_BLOCKS; ++i)
    p.qbits[i] = uint8_t(qbits[i] < 0 ? 0 : (qbits[i] > 255 ? 255 : qbits[i]));
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
  m.attr("DEFAULT_MAX_OUTPUT_BYTES") = py::int_(COLLAB_DEFAULT_MAX_OUTPUT_BYTES);
  m.attr("MAX_BLOCKS") = COLLAB_MAX_BLOCKS;
  m.attr("MAX_QBITS") = COLLAB_MAX_QBITS;
  m.attr("MAX_NDIM") = COLLAB_MAX_NDIM;
  py::class_<Codec>(m, "Codec", "Reusable scratch memory for encode/decode (one per thread).").def(py::init<>());

  m.def(
      "encode",
      [](Codec* codec, uintptr_t ptr, int dtype, const std::vector<int64_t>& shape, int device, int device_id,
         double sparsity, double lam, const std::vector<int64_t>& blocks, const std::vector<int64_t>& qbits, double delta,
         uint64_t seed, int index_code, int threads) {
        collab_tensor x = make_tensor(ptr, dtype, shape, device, device_id);
        collab_codec_params p = make_params(sparsity, lam, blocks, qbits, delta, seed, index_code, threads);
        size_t bound = 0;
        check(collab_codec_encode_bound(x.shape, x.ndim, &p, &bound));
        PyObject* obj = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(bound));
        if (!obj) throw py::error_already_set();
        py::object frame = py::reinterpret_steal<py::object>(obj);
        size_t written = 0;
        collab_status st;
        {
          py::gil_scoped_release nogil;
          st = collab_codec_encode(codec ? codec->ptr : nullptr, &x, &p, PyBytes_AS_STRING(obj), bound, &written);
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
      [](Codec* codec, py::object frame, uintptr_t ptr, int dtype, const std::vector<int64_t>& shape, int device,
         int device_id, uint64_t max_output_bytes) {
        ByteView buf(frame);
        collab_tensor out = make_tensor(ptr, dtype, shape, device, device_id);
        collab_codec_decode_params params;
        collab_codec_decode_params_init(&params);
        params.max_output_bytes = max_output_bytes;
        collab_status st;
        {
          py::gil_scoped_release nogil;
          st = collab_codec_decode(codec ? codec->ptr : nullptr, buf.data(), buf.size(), &params, &out);
        }
        check(st);
      },
      py::arg("codec"), py::arg("frame"), py::arg("ptr"), py::arg("dtype"), py::arg("shape"), py::arg("device"),
      py::arg("device_id"), py::arg("max_output_bytes") = COLLAB_DEFAULT_MAX_OUTPUT_BYTES);

  m.def(
      "frame_info",
      [](py::object frame) {
        ByteView buf(frame);
        collab_frame_info info;
        check(collab_frame_info_get(buf.data(), buf.size(), &info));
        py::dict d = info_dict(info);
        py::list blocks;
        uint32_t nb = info.params.blocks_pos + info.params.blocks_neg;
        for (uint32_t b = 0; b < nb; ++b) {
          collab_block_info bi;
          check(collab_frame_block_get(buf.data(), buf.size(), b, &bi));
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
      [](const std::vector<int64_t>& shape, double sparsity, const std::vector<int64_t>& blocks,
         const std::vector<int64_t>& qbits) {
        collab_codec_params p = make_params(sparsity, 0.0, blocks, qbits, 0.0, 0, COLLAB_INDEX_AUTO, 0);
        uint64_t bits = 0;
        // ndim is checked by the core (at most COLLAB_MAX_NDIM); shape.data() holds all of it.
        const int32_t ndim = shape.size() > size_t(INT32_MAX) ? INT32_MAX : int32_t(shape.size());
        check(collab_codec_predict_bits(shape.data(), ndim, &p, &bits));
        return bits;
      },
      py::arg("shape"), py::arg("sparsity"), py::arg("blocks"), py::arg("qbits"));
}

}  // namespace collab_py
