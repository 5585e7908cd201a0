"""Python face of the native split runner (collab_llm_* in collab.h, llama.cpp inside).

    m = Model("SmolLM2.head-15.gguf")
    with m.session("head") as s:
        rows = s.decode(m.tokenize("Hello"))      # (n, n_embd) float32 residual rows

Roles: "full" (tokens -> logits), "head" (tokens -> hidden rows after the part's last
layer), "tail" (hidden rows -> logits). A session is one llama.cpp context with its own KV
cache; positions continue from ``n_past``.
"""
from __future__ import annotations

import numpy as np

from .. import _native
from ..errors import InvalidArgument

__all__ = ["Model", "Session", "available", "ROLES", "greedy", "LlamaUnavailable"]

ROLES = {"full": 0, "head": 1, "tail": 2}
DEFAULT_THREADS = 2


class LlamaUnavailable(InvalidArgument):
    """This collab build has no llama.cpp (built with COLLAB_LLAMA=OFF or llama.cpp not found)."""


def available() -> bool:
    """True when the native core was built with llama.cpp."""
    return bool(getattr(_native, "llm_available", lambda: False)())


def _require():
    if not available():
        raise LlamaUnavailable("collab was built without llama.cpp: install llama-cpp-python==0.3.36 and rebuild "
                               "(COLLAB_LLAMA=ON)")


def greedy(logits) -> int:
    """Index of the largest logit (first one on ties), the greedy next token."""
    a = np.asarray(logits)
    if a.ndim != 1 or a.size == 0:
        raise InvalidArgument("greedy() takes one non-empty logits row")
    return int(np.argmax(a))


class Model:
    """A GGUF model (full, or a head/tail part from split_gguf) loaded on the CPU."""

    def __init__(self, path, *, rpc: str | None = None, n_remote_layers: int = 0):
        """rpc="host:port" (baseline only): put the last n_remote_layers layers on a ggml rpc-server."""
        _require()
        self.path = str(path)
        self._m = _native.LlmModel(self.path, rpc or "", int(n_remote_layers))
        self.info = self._m.info()

    n_embd = property(lambda self: self.info["n_embd"])
    n_vocab = property(lambda self: self.info["n_vocab"])
    n_layer = property(lambda self: self.info["n_layer"])
    part = property(lambda self: self.info["part"])

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> np.ndarray:
        if not isinstance(text, str):
            raise InvalidArgument(f"text must be str, got {type(text).__name__}")
        return self._m.tokenize(text, add_special, parse_special)

    def piece(self, token: int) -> bytes:
        return self._m.piece(int(token))

    def detokenize(self, tokens) -> str:
        return b"".join(self._m.piece(int(t)) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return self._m.is_eog(int(token))

    def chat_prompt(self, user: str) -> str:
        """The model's chat template around one user message, ending with the assistant prefix."""
        return self._m.chat_prompt(user)

    def session(self, role: str = "full", *, n_ctx: int = 0, n_batch: int = 0,
                n_threads: int = DEFAULT_THREADS) -> "Session":
        return Session(self, role, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads)

    def __repr__(self):
        i = self.info
        return f"Model({self.path!r}, {i['arch']}, {i['part']}, layers={i['n_layer']}, n_embd={i['n_embd']})"


class Session:
    """One llama.cpp context (KV cache) on a model, in the role full, head or tail."""

    def __init__(self, model: Model, role: str = "full", *, n_ctx: int = 0, n_batch: int = 0,
                 n_threads: int = DEFAULT_THREADS):
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {sorted(ROLES)}, got {role!r}")
        for name, v in (("n_ctx", n_ctx), ("n_batch", n_batch), ("n_threads", n_threads)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise InvalidArgument(f"{name} must be a non-negative integer, got {v!r}")
        self.model = model
        self.role = role
        self._s = _native.LlmSession(model._m, ROLES[role], int(n_ctx), int(n_batch), int(n_threads))

    @property
    def n_past(self) -> int:
        return self._s.n_past

    @property
    def n_ctx(self) -> int:
        return self._s.n_ctx

    def _tokens(self, tokens) -> np.ndarray:
        t = np.asarray(tokens)
        if t.ndim == 0:
            t = t.reshape(1)
        if t.ndim != 1 or t.size == 0 or not np.issubdtype(t.dtype, np.integer):
            raise InvalidArgument("tokens must be a non-empty 1-D sequence of integers")
        return np.ascontiguousarray(t, dtype=np.int32)

    def decode(self, tokens, n_outputs: int = 1) -> np.ndarray:
        """full: logits (n_outputs, n_vocab) of the last n_outputs tokens.
        head: hidden rows (n, n_embd) of every token (n_outputs is ignored)."""
        if self.role == "tail":
            raise InvalidArgument("a tail session takes hidden rows: use decode_rows")
        t = self._tokens(tokens)
        if self.role == "full" and not 1 <= int(n_outputs) <= t.size:
            raise InvalidArgument(f"n_outputs must be in [1, {t.size}], got {n_outputs}")
        return self._s.decode_tokens(t, int(n_outputs), self.role == "head")

    def decode_rows(self, rows, n_outputs: int = 1) -> np.ndarray:
        """tail / full: rows (n, n_embd) in, logits (n_outputs, n_vocab) of the last rows out.
        head: input embedding rows (a VLM's image rows) in, hidden rows (n, n_embd) out."""
        r = np.asarray(rows)
        if r.ndim == 1:
            r = r.reshape(1, -1)
        if r.ndim != 2 or r.shape[0] == 0 or r.shape[1] != self.model.n_embd:
            raise InvalidArgument(f"rows must have shape (n, {self.model.n_embd}), got {r.shape}")
        if not 1 <= int(n_outputs) <= r.shape[0]:
            raise InvalidArgument(f"n_outputs must be in [1, {r.shape[0]}], got {n_outputs}")
        return self._s.decode_rows(np.ascontiguousarray(r, dtype=np.float32), int(n_outputs))

    def decode_stream(self, tokens, max_tokens: int, callback, *, tail: "Session | None" = None) -> int:
        """Greedy generation through the native loop (collab_llm_session_decode_stream): calls
        ``callback(token, piece_bytes)`` for each token as soon as it is decoded; a truthy return
        stops it. A full session alone, or a head session with ``tail=`` a tail session of the
        same split. Returns the number of tokens generated."""
        if tail is None and self.role != "full":
            raise InvalidArgument("decode_stream without tail= needs a full session")
        if tail is not None and (self.role != "head" or tail.role != "tail"):
            raise InvalidArgument("decode_stream with tail= needs a head session and a tail session")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or max_tokens < 1:
            raise InvalidArgument(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
        if not callable(callback):
            raise InvalidArgument("callback must be callable")
        return self._s.decode_stream(self.model._m, self._tokens(tokens), int(max_tokens), callback,
                                     None if tail is None else tail._s)

    def truncate(self, n_past: int) -> None:
        self._s.truncate(int(n_past))

    def reset(self) -> None:
        self._s.truncate(0)

    def state_get(self) -> bytes:
        """This session's KV cache (llama_state_seq_get_data), for kv-handoff."""
        return self._s.state_get()

    def state_set(self, data) -> None:
        """Replace the KV cache with bytes from state_get() of a session on the same model."""
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
            raise InvalidArgument("state must be non-empty bytes")
        self._s.state_set(data)

    def close(self) -> None:
        self._s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
