"""The VLM run by llama.cpp itself: mtmd encodes the image, llama.cpp decodes (unsplit).

Goes through llama-cpp-python's ctypes bindings of libllama / libmtmd (the same shared
libraries collab's native core links), so no torch and no extra build. mtmd failures return
NULL / nonzero codes, which become InvalidArgument / CollabError here; inputs are checked
before they reach the C code (mtmd aborts on some bad inputs instead of returning).

Images: uint8 (H, W, 3). mtmd stretches an image no larger than the mmproj's image_size to
image_size (bicubic) and tiles larger ones (two chunks), so :func:`to_model_size` resizes to
exactly image_size first.
"""
from __future__ import annotations

import ctypes
import io
import os
import threading

import numpy as np

from ..errors import CollabError, InvalidArgument
from .mmproj import check_llm_width, read_mmproj_info

MAX_IMAGE_SIDE = 8192
MAX_IMAGE_BYTES = 64 << 20
_init_lock = threading.Lock()
_backend_ready = False


def _libs():
    try:
        import llama_cpp
        from llama_cpp import mtmd_cpp
    except Exception as e:  # missing package or a build without libmtmd
        raise CollabError(f"llama-cpp-python with libmtmd is required for the VLM ({e})") from None
    _quiet_logs(llama_cpp, mtmd_cpp)
    return llama_cpp, mtmd_cpp


_log_cb = None


def _quiet_logs(llama_cpp, mtmd_cpp):
    """Errors only (COLLAB_LLM_VERBOSE=1 shows everything), for libllama, mtmd and its helper."""
    global _log_cb
    if _log_cb is not None:
        return
    verbose = bool(os.environ.get("COLLAB_LLM_VERBOSE"))

    @llama_cpp.llama_log_callback
    def cb(level, text, _user):
        if verbose or level == 3:
            import sys

            sys.stderr.write(text.decode("utf-8", "replace"))

    _log_cb = cb
    llama_cpp.llama_log_set(cb, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_log_set(cb, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(cb, ctypes.c_void_p(0))


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG/... bytes -> uint8 (H, W, 3); clear errors for corrupt or oversized images."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise InvalidArgument("image bytes are empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidArgument(f"image of {len(data)} bytes exceeds {MAX_IMAGE_BYTES}")
    try:
        im = Image.open(io.BytesIO(bytes(data)))
        if im.width <= 0 or im.height <= 0 or max(im.width, im.height) > MAX_IMAGE_SIDE:
            raise InvalidArgument(f"image size {im.width}x{im.height} outside [1, {MAX_IMAGE_SIDE}]")
        im.load()
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, InvalidArgument):
            raise
        raise InvalidArgument(f"cannot decode image: {e}") from None


def check_image(img) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise InvalidArgument(f"image must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, 2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InvalidArgument(f"image must be (H, W, 3) or (H, W), got {a.shape}")
    if not (1 <= a.shape[0] <= MAX_IMAGE_SIDE and 1 <= a.shape[1] <= MAX_IMAGE_SIDE):
        raise InvalidArgument(f"image size {a.shape[1]}x{a.shape[0]} outside [1, {MAX_IMAGE_SIDE}]")
    return np.ascontiguousarray(a)


def to_model_size(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size with the native device's resize (collab_vlm_image_resize: nearest
    by an integer factor when it divides (Fashion-MNIST 28 -> 112, as collab.vit.data.preprocess),
    else Pillow-style bicubic; numpy twin: collab.vlm.reference.resize_rgb), so the Python and
    the native device feed the encoder the same pixels."""
    from .. import _native

    a = check_image(img)
    if a.shape[0] == a.shape[1] == size:
        return a
    return _native.vlm_image_resize(a, int(size))


class LlamaModel:
    """A llama_model loaded through llama-cpp-python (CPU, no repacking: see collab.llm)."""

    def __init__(self, path, n_threads: int = 2):
        llama_cpp, _ = _libs()
        global _backend_ready
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise InvalidArgument(f"model file {path} does not exist")
        with _init_lock:
            if not _backend_ready:
                llama_cpp.llama_backend_init()
                _backend_ready = True
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = 0
        mp.use_extra_bufts = False
        self.ll = llama_cpp
        self.ptr = llama_cpp.llama_model_load_from_file(path.encode(), mp)
        if not self.ptr:
            raise InvalidArgument(f"llama.cpp could not load {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.ptr)
        self.n_embd = int(llama_cpp.llama_model_n_embd(self.ptr))
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_threads = n_threads

    def close(self):
        if getattr(self, "ptr", None):
            self.ll.llama_model_free(self.ptr)
            self.ptr = None

    __del__ = close

    def tokenize(self, text: str, special: bool = False) -> list:
        raw = text.encode()
        buf = (self.ll.llama_token * (len(raw) + 8))()
        n = self.ll.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), False, special)
        if n < 0:
            raise CollabError(f"tokenization of {len(raw)} bytes failed")
        return [int(buf[i]) for i in range(n)]

    def is_eog(self, tok: int) -> bool:
        return bool(self.ll.llama_vocab_is_eog(self.vocab, tok))

    def piece(self, tok: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self.ll.llama_token_to_piece(self.vocab, tok, buf, 64, 0, False)
        return buf.raw[:max(n, 0)]


class MtmdVision:
    """mtmd context for one mmproj + text model: image -> projected rows (n_tokens, n_embd)."""

    def __init__(self, mmproj, model: LlamaModel, n_threads: int = 2):
        _, mt = _libs()
        self.mt = mt
        self.info = read_mmproj_info(mmproj)
        check_llm_width(self.info, model.n_embd)
        self.model = model
        p = mt.mtmd_context_params_default()
        p.use_gpu = False
        p.print_timings = False
        p.n_threads = n_threads
        p.flash_attn_type = 0  # AUTO casts K/V to F16 on CPU
        p.warmup = False
        self.ctx = mt.mtmd_init_from_file(os.fspath(mmproj).encode(), model.ptr, p)
        if not self.ctx:
            raise InvalidArgument(f"mtmd could not load {mmproj} (see COLLAB_LLM_VERBOSE=1 log)")
        self.marker = mt.mtmd_default_marker()

    def close(self):
        if getattr(self, "ctx", None):
            self.mt.mtmd_free(self.ctx)
            self.ctx = None

    __del__ = close

    def chunks(self, text: str, img: np.ndarray):
        """mtmd chunks for text holding one media marker and one image (already model-sized)."""
        mt = self.mt
        a = to_model_size(img, self.info.image_size)
        data = a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        bmp = mt.mtmd_bitmap_init(a.shape[1], a.shape[0], data)
        if not bmp:
            raise CollabError("mtmd_bitmap_init failed")
        chunks = mt.mtmd_input_chunks_init()
        try:
            raw = text.encode()
            it = mt.mtmd_input_text(raw, len(raw), True, True)
            arr = (mt.mtmd_bitmap_p_ctypes * 1)(bmp)
            rc = mt.mtmd_tokenize(self.ctx, chunks, ctypes.byref(it), arr, 1)
        finally:
            mt.mtmd_bitmap_free(bmp)
        if rc != 0:
            mt.mtmd_input_chunks_free(chunks)
            raise InvalidArgument(f"mtmd_tokenize failed ({rc}): the text needs exactly one media marker")
        return chunks

    def encode(self, img: np.ndarray) -> np.ndarray:
        """Projected image rows (n_tokens, n_embd) float32."""
        mt = self.mt
        chunks = self.chunks(self.marker.decode(), img)
        try:
            out = None
            for i in range(mt.mtmd_input_chunks_size(chunks)):
                ch = mt.mtmd_input_chunks_get(chunks, i)
                if mt.mtmd_input_chunk_get_type(ch) != mt.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    continue
                if out is not None:
                    raise CollabError("mtmd split the image into several chunks")
                n = int(mt.mtmd_input_chunk_get_n_tokens(ch))
                if mt.mtmd_encode_chunk(self.ctx, ch) != 0:
                    raise CollabError("mtmd_encode_chunk failed")
                ptr = mt.mtmd_get_output_embd(self.ctx)
                out = np.ctypeslib.as_array(ptr, shape=(n * self.model.n_embd,)).reshape(n, -1).copy()
            if out is None:
                raise CollabError("mtmd produced no image chunk")
            return out
        finally:
            mt.mtmd_input_chunks_free(chunks)


def chat_text(question: str, marker: str) -> str:
    """The one prompt layout used in training and inference (SmolLM2's ChatML, no system turn)."""
    if not isinstance(question, str) or not question.strip():
        raise InvalidArgument("the question is empty")
    if len(question) > 4096:
        raise InvalidArgument(f"question of {len(question)} characters exceeds 4096")
    return f"<|im_start|>user\n{marker}\n{question.strip()}<|im_end|>\n<|im_start|>assistant\n"


class Prompt:
    """A question around one image, as mtmd lays it out: text tokens before the image, the
    image (n_image rows), text tokens after it (mtmd adds the literal <img> / </img>)."""

    def __init__(self, vis: MtmdVision, question: str, img: np.ndarray | None = None):
        mt = vis.mt
        if img is None:
            s = vis.info.image_size
            img = np.zeros((s, s, 3), np.uint8)
        chunks = vis.chunks(chat_text(question.replace(vis.marker.decode(), ""), vis.marker.decode()), img)
        self.chunks = chunks
        self._mt = mt
        self.parts = []  # ("text", [ids]) or ("image", n_tokens)
        for i in range(mt.mtmd_input_chunks_size(chunks)):
            ch = mt.mtmd_input_chunks_get(chunks, i)
            if mt.mtmd_input_chunk_get_type(ch) == mt.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t(0)
                p = mt.mtmd_input_chunk_get_tokens_text(ch, ctypes.byref(n))
                self.parts.append(("text", [int(p[k]) for k in range(n.value)]))
            else:
                self.parts.append(("image", int(mt.mtmd_input_chunk_get_n_tokens(ch))))
        kinds = [k for k, _ in self.parts]
        if kinds != ["text", "image", "text"]:
            self.close()
            raise CollabError(f"unexpected mtmd chunk layout {kinds}")

    @property
    def before(self) -> list:
        return self.parts[0][1]

    @property
    def after(self) -> list:
        return self.parts[2][1]

    @property
    def n_image(self) -> int:
        return self.parts[1][1]

    def close(self):
        if getattr(self, "chunks", None):
            self._mt.mtmd_input_chunks_free(self.chunks)
            self.chunks = None

    __del__ = close


class UnsplitVlm:
    """The whole VLM in llama.cpp: mtmd_helper_eval_chunks (image encode + prefill), then greedy
    decoding. The reference the split runtime is compared with."""

    def __init__(self, mmproj, model_path, n_threads: int = 2, n_ctx: int = 512):
        self.model = LlamaModel(model_path, n_threads)
        self.vis = MtmdVision(mmproj, self.model, n_threads)
        ll = self.model.ll
        cp = ll.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_ubatch = n_ctx
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads  # flash attention as collab's sessions: llama.cpp's default
        self.ctx = ll.llama_init_from_model(self.model.ptr, cp)
        if not self.ctx:
            raise CollabError("llama.cpp could not create a context")
        self.n_ctx = n_ctx

    def close(self):
        if getattr(self, "ctx", None):
            self.model.ll.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "vis", None):
            self.vis.close()

    def prefill(self, img: np.ndarray, question: str) -> tuple[np.ndarray, int]:
        """Clear the context, run the prompt (image included): (last logits, n_past)."""
        ll, mt = self.model.ll, self.vis.mt
        pr = Prompt(self.vis, question, img)
        try:
            ll.llama_memory_clear(ll.llama_get_memory(self.ctx), True)
            n_past = ll.llama_pos(0)
            rc = mt.mtmd_helper_eval_chunks(self.vis.ctx, self.ctx, pr.chunks, 0, 0, self.n_ctx, True,
                                            ctypes.byref(n_past))
            if rc != 0:
                raise CollabError(f"mtmd_helper_eval_chunks failed ({rc})")
        finally:
            pr.close()
        logits = ll.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(logits, shape=(self.model.n_vocab,)).copy(), int(n_past.value)

    def ask(self, img: np.ndarray, question: str, max_tokens: int = 16) -> dict:
        """{"answer": text, "tokens": [ids]} for one image and question (greedy)."""
        ll = self.model.ll
        row, pos = self.prefill(img, question)
        out = []
        for _ in range(max_tokens):
            tok = int(row.argmax())
            if self.model.is_eog(tok):
                break
            out.append(tok)
            if pos + 1 >= self.n_ctx:
                break
            arr = (ll.llama_token * 1)(tok)
            if ll.llama_decode(self.ctx, ll.llama_batch_get_one(arr, 1)) != 0:
                raise CollabError("llama_decode failed")
            pos += 1
            row = np.ctypeslib.as_array(ll.llama_get_logits_ith(self.ctx, -1), shape=(self.model.n_vocab,))
        text = b"".join(self.model.piece(t) for t in out).decode("utf-8", "replace")
        return {"answer": text.strip(), "tokens": out}
