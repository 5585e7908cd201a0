// collab._native LLM classes: LlmModel and LlmSession over the collab_llm_* C API.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <exception>
#include <memory>
#include <string>

#include "common.hpp"

namespace collab_py {

namespace {

struct LlmModel {
  explicit LlmModel(const std::string& path, const std::string& rpc = "", int32_t n_remote = 0) {
    collab_llm_model* m = nullptr;
    collab_status st;
    {
      py::gil_scoped_release nogil;
      st = rpc.empty() ? collab_llm_model_load(path.c_str(), &m)
                       : collab_llm_model_load_rpc(path.c_str(), rpc.c_str(), n_remote, &m);
    }
    check(st);
    ptr = m;
    check(collab_llm_model_info_get(ptr, &info));
  }
  ~LlmModel() { collab_llm_model_free(ptr); }
  LlmModel(const LlmModel&) = delete;
  LlmModel& operator=(const LlmModel&) = delete;
  collab_llm_model* ptr = nullptr;
  collab_llm_model_info info{};
};

struct LlmSession {
  LlmSession(std::shared_ptr<LlmModel> m, int role, uint32_t n_ctx, uint32_t n_batch, int n_threads)
      : model(std::move(m)), role(role) {
    collab_llm_session_params p;
    collab_llm_session_params_init(&p);
    p.role = role;
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.n_threads = n_threads;
    collab_llm_session* s = nullptr;
    collab_status st;
    {
      py::gil_scoped_release nogil;
      st = collab_llm_session_new(model->ptr, &p, &s);
    }
    check(st);
    ptr = s;
  }
  ~LlmSession() { close(); }
  void close() {
    collab_llm_session_free(ptr);
    ptr = nullptr;
  }
  collab_llm_session* get() const {
    if (!ptr) throw py::value_error("session is closed");
    return ptr;
  }
  LlmSession(const LlmSession&) = delete;
  LlmSession& operator=(const LlmSession&) = delete;
  std::shared_ptr<LlmModel> model;
  int role;
  collab_llm_session* ptr = nullptr;
};

py::dict info_dict(const collab_llm_model_info& i) {
  py::dict d;
  d["n_embd"] = i.n_embd;
  d["n_layer"] = i.n_layer;
  d["n_vocab"] = i.n_vocab;
  d["n_ctx_train"] = i.n_ctx_train;
  d["bos"] = i.bos;
  d["eos"] = i.eos;
  static const char* parts[] = {"full", "head", "tail"};
  d["part"] = parts[(i.split_part >= 0 && i.split_part <= 2) ? i.split_part : 0];
  d["split_at"] = i.split_at;
  d["n_layer_total"] = i.n_layer_total;
  d["arch"] = std::string(i.arch);
  return d;
}

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using I32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

}  // namespace

void bind_llm(py::module_& m) {
  m.def("llm_available", [] { return collab_llm_available() != 0; });

  py::class_<LlmModel, std::shared_ptr<LlmModel>>(m, "LlmModel")
      .def(py::init<const std::string&, const std::string&, int32_t>(), py::arg("path"), py::arg("rpc") = "",
           py::arg("n_remote_layers") = 0)
      .def("info", [](const LlmModel& self) { return info_dict(self.info); })
      .def("tokenize",
           [](const LlmModel& self, const std::string& text, bool add_special, bool parse_special) {
             size_t n = 0;
             collab_status st = collab_llm_model_tokenize(self.ptr, text.data(), text.size(), add_special, parse_special,
                                                    nullptr, 0, &n);
             if (st != COLLAB_OK && st != COLLAB_ERR_BUFFER_TOO_SMALL) check(st);
             py::array_t<int32_t> out(static_cast<py::ssize_t>(n));
             if (n) check(collab_llm_model_tokenize(self.ptr, text.data(), text.size(), add_special, parse_special,
                                              out.mutable_data(), n, &n));
             return out;
           },
           py::arg("text"), py::arg("add_special") = true, py::arg("parse_special") = true)
      .def("piece",
           [](const LlmModel& self, int32_t token) {
             std::string buf(64, '\0');
             size_t n = 0;
             collab_status st = collab_llm_model_token_to_piece(self.ptr, token, buf.data(), buf.size(), &n);
             if (st == COLLAB_ERR_BUFFER_TOO_SMALL) {
               buf.resize(n);
               st = collab_llm_model_token_to_piece(self.ptr, token, buf.data(), buf.size(), &n);
             }
             check(st);
             return py::bytes(buf.data(), n);
           },
           py::arg("token"))
      .def("is_eog", [](const LlmModel& self, int32_t t) { return collab_llm_model_token_is_eog(self.ptr, t) != 0; })
      .def("chat_prompt", [](const LlmModel& self, const std::string& user) {
        size_t n = 0;
        collab_status st = collab_llm_model_chat_prompt(self.ptr, user.c_str(), nullptr, 0, &n);
        if (st != COLLAB_OK && st != COLLAB_ERR_BUFFER_TOO_SMALL) check(st);
        std::string buf(n, '\0');
        check(collab_llm_model_chat_prompt(self.ptr, user.c_str(), buf.data(), buf.size(), &n));
        return buf;
      });

  py::class_<LlmSession>(m, "LlmSession")
      .def(py::init<std::shared_ptr<LlmModel>, int, uint32_t, uint32_t, int>(), py::arg("model"), py::arg("role"),
           py::arg("n_ctx") = 0, py::arg("n_batch") = 0, py::arg("n_threads") = 0)
      .def_property_readonly("n_past", [](const LlmSession& s) { return collab_llm_session_n_past(s.get()); })
      .def_property_readonly("n_ctx", [](const LlmSession& s) { return collab_llm_session_n_ctx(s.get()); })
      .def("close", &LlmSession::close)
      .def("decode_stream",  // callback(token, piece: bytes) -> truthy to stop; returns tokens generated
           [](LlmSession& s, const LlmModel& model, I32 tokens, int32_t max_tokens, py::function callback,
              LlmSession* tail) {
             struct Ctx {
               py::function cb;
               std::exception_ptr err;
             };
             Ctx ctx{std::move(callback), nullptr};
             auto tramp = [](int32_t tok, const char* piece, size_t len, void* ud) -> int32_t {
               auto* c = static_cast<Ctx*>(ud);
               py::gil_scoped_acquire gil;
               try {
                 return py::bool_(c->cb(tok, py::bytes(piece, len))) ? 1 : 0;
               } catch (...) {  // re-raised in Python once the native loop has stopped
                 c->err = std::current_exception();
                 return 1;
               }
             };
             int32_t n = 0;
             collab_status st;
             {
               py::gil_scoped_release nogil;
               st = collab_llm_session_decode_stream(s.get(), tail ? tail->get() : nullptr, model.ptr, tokens.data(),
                                                     size_t(tokens.size()), max_tokens, tramp, &ctx, &n);
             }
             if (ctx.err) std::rethrow_exception(ctx.err);
             check(st);
             return n;
           },
           py::arg("model"), py::arg("tokens"), py::arg("max_tokens"), py::arg("callback"),
           py::arg("tail") = nullptr)
      .def("truncate", [](LlmSession& s, int32_t n_past) { check(collab_llm_session_truncate(s.get(), n_past)); })
      .def("decode_tokens",
           [](LlmSession& s, I32 tokens, int32_t n_outputs, bool head) {
             if (tokens.ndim() != 1) throw py::value_error("tokens must be a 1-D array");
             const size_t n = size_t(tokens.shape(0));
             const auto& info = s.model->info;
             const size_t width = head ? size_t(info.n_embd) : size_t(info.n_vocab);
             const size_t rows = head ? n : size_t(n_outputs > 0 ? n_outputs : 0);
             py::array_t<float> out({py::ssize_t(rows), py::ssize_t(width)});
             collab_status st;
             {
               py::gil_scoped_release nogil;
               st = collab_llm_session_decode_tokens(s.get(), tokens.data(), n, n_outputs, out.mutable_data(), rows * width);
             }
             check(st);
             return out;
           },
           py::arg("tokens"), py::arg("n_outputs"), py::arg("head"))
      .def("decode_rows",
           [](LlmSession& s, F32 rows, int32_t n_outputs) {
             const auto& info = s.model->info;
             if (rows.ndim() != 2 || rows.shape(1) != info.n_embd)
               throw py::value_error("rows must have shape (n, n_embd=" + std::to_string(info.n_embd) + ")");
             const size_t n = size_t(rows.shape(0));
             // HEAD: hidden rows of every input row; otherwise logits of the last n_outputs
             const bool head = s.role == COLLAB_LLM_HEAD;
             const size_t nout = head ? n : size_t(n_outputs > 0 ? n_outputs : 0);
             const size_t width = size_t(head ? info.n_embd : info.n_vocab);
             py::array_t<float> out({py::ssize_t(nout), py::ssize_t(width)});
             collab_status st;
             {
               py::gil_scoped_release nogil;
               st = collab_llm_session_decode_rows(s.get(), rows.data(), n, n_outputs, out.mutable_data(),
                                           nout * width);
             }
             check(st);
             return out;
           },
           py::arg("rows"), py::arg("n_outputs"))
      .def("state_get",
           [](LlmSession& s) {
             size_t need = 0;
             check(collab_llm_session_state_size(s.get(), &need));
             std::string buf(need, '\0');
             size_t got = 0;
             collab_status st;
             {
               py::gil_scoped_release nogil;
               st = collab_llm_session_state_get(s.get(), buf.data(), buf.size(), &got);
             }
             check(st);
             return py::bytes(buf.data(), got);
           })
      .def("state_set", [](LlmSession& s, py::object data) {
        ByteView b(data);
        collab_status st;
        {
          py::gil_scoped_release nogil;
          st = collab_llm_session_state_set(s.get(), b.data(), b.size());
        }
        check(st);
      });
}

}  // namespace collab_py
