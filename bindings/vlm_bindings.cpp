// collab._native VLM classes over the collab_vlm_* C API: VlmVision (the image encoder) and
// VlmDevice (the one-call device of the split, with a Python object as its transport: what
// tests and `collab vlm ask --native` use; a phone app passes its own collab_transport).
// Each loads its own handle on the text model file (mmap: the weights are shared with other
// loads of the same file).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <map>
#include <string>
#include <vector>

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

// collab_transport over a Python object with open(task, meta), send(kind, payload, meta),
// recv(timeout_s) -> (kind, payload, meta) and close(cancel). The callbacks run on the thread
// of the ask call with the GIL released, so each takes it; a Python exception is kept and
// re-raised when the call returns (the C side sees a non-zero return: COLLAB_ERR_TRANSPORT).
struct PyTransport {
  py::object obj;
  py::object on_token;  // None or f(token, piece bytes) -> truthy to stop
  const collab_llm_model* vocab = nullptr;
  std::vector<int32_t> tokens;
  std::string text;  // the pieces of the non-end-of-generation tokens (as Model.detokenize joins them)
  bool failed = false;
  py::object error;  // the exception instance kept from a failed callback
  // the last received message (valid until the next recv, as collab_transport asks)
  std::string kind, payload;
  std::vector<std::string> keys, values;
  std::vector<collab_meta_entry> meta;

  void keep_error(py::error_already_set& e) {
    if (!failed) error = e.value();
    failed = true;
  }
  static py::dict to_dict(const collab_meta_entry* m, size_t n) {
    py::dict d;
    for (size_t i = 0; i < n; ++i) d[py::str(m[i].key)] = py::str(m[i].value);
    return d;
  }
  static int32_t open(void* u, const char* task, const collab_meta_entry* m, size_t n) {
    auto* t = static_cast<PyTransport*>(u);
    py::gil_scoped_acquire gil;
    try {
      t->obj.attr("open")(std::string(task), to_dict(m, n));
      return 0;
    } catch (py::error_already_set& e) {
      t->keep_error(e);
      return 1;
    }
  }
  static int32_t send(void* u, const collab_message* msg) {
    auto* t = static_cast<PyTransport*>(u);
    py::gil_scoped_acquire gil;
    try {
      t->obj.attr("send")(std::string(msg->kind),
                          py::bytes(reinterpret_cast<const char*>(msg->payload), msg->payload_len),
                          to_dict(msg->meta, msg->n_meta));
      return 0;
    } catch (py::error_already_set& e) {
      t->keep_error(e);
      return 1;
    }
  }
  static int32_t recv(void* u, collab_message* msg, int32_t timeout_ms) {
    auto* t = static_cast<PyTransport*>(u);
    py::gil_scoped_acquire gil;
    try {
      py::object timeout = timeout_ms < 0 ? py::object(py::none()) : py::object(py::float_(timeout_ms / 1000.0));
      py::tuple r = t->obj.attr("recv")(timeout);
      if (r.size() != 3) throw py::value_error("transport recv must return (kind, payload, meta)");
      t->kind = r[0].cast<std::string>();
      t->payload = r[1].cast<std::string>();
      t->keys.clear();
      t->values.clear();
      for (auto kv : r[2].cast<py::dict>()) {
        t->keys.push_back(py::str(kv.first));
        t->values.push_back(py::str(kv.second));
      }
      t->meta.clear();
      for (size_t i = 0; i < t->keys.size(); ++i) t->meta.push_back({t->keys[i].c_str(), t->values[i].c_str()});
      *msg = collab_message{t->kind.c_str(), reinterpret_cast<const uint8_t*>(t->payload.data()), t->payload.size(),
                            t->meta.data(), t->meta.size()};
      return 0;
    } catch (py::error_already_set& e) {
      t->keep_error(e);
      return 1;
    } catch (const std::exception& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
      py::error_already_set err;
      t->keep_error(err);
      return 1;
    }
  }
  static void close(void* u, int32_t cancel) {
    auto* t = static_cast<PyTransport*>(u);
    py::gil_scoped_acquire gil;
    try {
      t->obj.attr("close")(bool(cancel));
    } catch (py::error_already_set& e) {
      t->keep_error(e);
    }
  }
  static int32_t token(int32_t tok, const char* piece, size_t len, void* u) {
    auto* t = static_cast<PyTransport*>(u);
    t->tokens.push_back(tok);
    if (!collab_llm_model_token_is_eog(t->vocab, tok)) t->text.append(piece, len);
    if (t->on_token.is_none()) return 0;
    py::gil_scoped_acquire gil;
    try {
      return py::bool_(t->on_token(tok, py::bytes(piece, len))) ? 1 : 0;
    } catch (py::error_already_set& e) {
      t->keep_error(e);
      return 1;
    }
  }
};

struct VlmDevice {
  VlmDevice(const std::string& head, const std::string& mmproj, const std::string& codec, int mode,
            int code_dtype, int max_tokens, unsigned n_ctx, int n_threads, int timeout_ms, const std::string& task)
      : task_(task) {
    collab_vlm_device_params p;
    collab_vlm_device_params_init(&p);
    p.mode = mode;
    p.code_dtype = code_dtype;
    p.max_tokens = max_tokens;
    p.n_ctx = n_ctx;
    p.n_threads = n_threads;
    p.timeout_ms = timeout_ms;
    p.task = task_.c_str();
    collab_status st;
    {
      py::gil_scoped_release nogil;
      st = collab_llm_model_load(head.c_str(), &model);
      if (st == COLLAB_OK) st = collab_vlm_vision_load(mmproj.c_str(), model, n_threads, &vision);
      if (st == COLLAB_OK && !codec.empty())
        st = collab_fcnet_load_file(codec.c_str(), COLLAB_FCNET_CODEC, 0, nullptr, &net);
      if (st == COLLAB_OK) st = collab_vlm_device_new(model, vision, net, &p, &ptr);
    }
    if (st != COLLAB_OK) release();
    check(st);
  }
  ~VlmDevice() { release(); }
  void release() {
    collab_vlm_device_free(ptr);
    collab_fcnet_free(net);
    collab_vlm_vision_free(vision);
    collab_llm_model_free(model);
    ptr = nullptr;
    net = nullptr;
    vision = nullptr;
    model = nullptr;
  }
  VlmDevice(const VlmDevice&) = delete;
  VlmDevice& operator=(const VlmDevice&) = delete;

  py::dict ask(const py::object& image, const std::string& question, const py::object& transport,
               const py::object& on_token) {
    ByteView img(image);
    PyTransport t;
    t.obj = transport;
    t.on_token = on_token;
    t.vocab = model;
    collab_transport tr{&t, &PyTransport::open, &PyTransport::send, &PyTransport::recv, &PyTransport::close};
    collab_vlm_answer_info info{};
    collab_status st;
    {
      py::gil_scoped_release nogil;
      st = collab_vlm_device_ask(ptr, static_cast<const uint8_t*>(img.data()), img.size(), question.c_str(), &tr,
                                 &PyTransport::token, &t, &info);
    }
    if (t.failed) {  // the transport's (or the token callback's) own exception, as raised
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(t.error.ptr())), t.error.ptr());
      throw py::error_already_set();
    }
    check(st);
    py::dict d;
    d["tokens"] = t.tokens;
    d["text"] = py::bytes(t.text).attr("decode")("utf-8", "replace");
    d["n_prompt"] = info.n_prompt;
    d["n_image_rows"] = info.n_image_rows;
    d["stop"] = std::string(info.stop);
    d["bytes_up"] = info.bytes_up;
    d["bytes_down"] = info.bytes_down;
    d["prefill_bytes"] = info.prefill_bytes;
    d["state_bytes"] = info.state_bytes;
    d["encode_s"] = info.encode_s;
    d["head_s"] = info.head_s;
    d["ttft_s"] = info.ttft_s;
    d["total_s"] = info.total_s;
    return d;
  }

  std::string task_;
  collab_llm_model* model = nullptr;
  collab_vlm_vision* vision = nullptr;
  collab_fcnet* net = nullptr;
  collab_vlm_device* ptr = nullptr;
};

}  // namespace

void bind_vlm(py::module_& m) {
  m.def("vlm_available", [] { return collab_vlm_available() != 0; });
  m.def("vlm_image_resize",
        [](U8 rgb, uint32_t size) {
          if (rgb.ndim() != 3 || rgb.shape(2) != 3) raise_invalid("image must be a uint8 array (H, W, 3)");
          if (size < 1 || size > 8192) raise_invalid("size must be in [1, 8192]");
          py::array_t<uint8_t> out({py::ssize_t(size), py::ssize_t(size), py::ssize_t(3)});
          collab_status st;
          {
            py::gil_scoped_release nogil;
            st = collab_vlm_image_resize(rgb.data(), uint32_t(rgb.shape(1)), uint32_t(rgb.shape(0)), size,
                                         out.mutable_data(), size_t(out.size()));
          }
          check(st);
          return out;
        },
        py::arg("rgb"), py::arg("size"), "The device's resize to size x size (collab_vlm_image_resize).");
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
  py::class_<VlmDevice>(m, "VlmDevice")
      .def(py::init<const std::string&, const std::string&, const std::string&, int, int, int, unsigned, int, int,
                    const std::string&>(),
           py::arg("head"), py::arg("mmproj"), py::arg("codec") = "", py::arg("mode") = 0, py::arg("code_dtype") = 1,
           py::arg("max_tokens") = 16, py::arg("n_ctx") = 512, py::arg("n_threads") = 2,
           py::arg("timeout_ms") = 300000, py::arg("task") = "llm")
      .def("ask", &VlmDevice::ask, py::arg("image"), py::arg("question"), py::arg("transport"),
           py::arg("on_token") = py::none());
}

}  // namespace collab_py
