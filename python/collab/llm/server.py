"""Server side of split LLM inference: a TaskHandler hosting the tail (and a head copy).

    handler = LlmTask(model="SmolLM2.gguf", at=15)        # splits once, caches the parts
    collab serve --task llm=collab.llm.server:LlmTask       # with the transport

One TaskSession per device stream; the session meta chooses the decode mode:

    mode         device sends                              server replies
    server-only  "prompt" (templated prompt text)          "token" (first), then on
                 "continue"                                "continue": "tokens" (the rest)
    roundtrip    "rows" (prefill rows), then one "rows"    "token" per "rows"
                 (one hidden row) per generated token
    kv-handoff   "state" (head KV cache) + "rows"          "token"; "continue" -> "tokens":
                 then "continue"                           the server runs head and tail
    shortcut     "rows" then "continue"                    as kv-handoff, but new tokens go
                                                           through the trained projection

Token payloads are int32 ids (protocol.encode_tokens); replies carry meta "server_s"
(server compute seconds for that message) and "eog" ("1" when the last token ends
generation). "end" closes the session (the transport also closes it on disconnect).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import InvalidArgument
from . import protocol
from .runtime import DEFAULT_THREADS, Model, greedy

try:  # the transport's base classes, when that part of collab is installed
    from ..transport.handlers import TaskHandler as _HandlerBase
    from ..transport.handlers import TaskSession as _SessionBase
except ImportError:  # pragma: no cover - transport not merged yet
    _HandlerBase = object
    _SessionBase = object

__all__ = ["LlmTask", "SPLIT_MODES", "MODES", "prepare_parts", "MAX_NEW_TOKENS"]

SPLIT_MODES = ("roundtrip", "kv-handoff", "shortcut")
MODES = ("device-only", "server-only") + SPLIT_MODES
MAX_NEW_TOKENS = 4096


def _cache_dir() -> Path:
    return Path(os.environ.get("COLLAB_CACHE", Path.home() / ".cache" / "collab")) / "llm"


def prepare_parts(model=None, at: int | None = None, out_dir=None) -> tuple[Path, Path, int]:
    """Split ``model`` (default: the embedded SmolLM2) at ``at`` (default: the middle) into
    out_dir (default: ~/.cache/collab/llm), reusing parts already there."""
    from .models import default_model_path
    from .split import gguf_layer_count, split_gguf

    src = Path(model) if model else default_model_path()
    n_layer = gguf_layer_count(src)
    at = n_layer // 2 if at is None else int(at)
    out = Path(out_dir) if out_dir else _cache_dir()
    stem = src.name.removesuffix(".gguf")
    head, tail = out / f"{stem}.head-{at}.gguf", out / f"{stem}.tail-{at}.gguf"
    fresh = head.is_file() and tail.is_file() and min(head.stat().st_mtime, tail.stat().st_mtime) >= src.stat().st_mtime
    if fresh:  # parts from before they carried the source digest (trained nets check it)
        from .artifact import has_source_digest

        fresh = has_source_digest(head) and has_source_digest(tail)
    if not fresh:
        head, tail = split_gguf(src, out, at)
    return head, tail, at


def _int_meta(meta, key, default, lo, hi):
    v = meta.get(key, default)
    try:
        v = int(v)
    except (TypeError, ValueError):
        raise InvalidArgument(f"meta {key}={v!r} is not an integer") from None
    if not lo <= v <= hi:
        raise InvalidArgument(f"meta {key}={v} out of range [{lo}, {hi}]")
    return v


class LlmTask(_HandlerBase):
    """TaskHandler "llm": hosts a tail part (and a head part for server-only / kv-handoff)."""

    name = "llm"

    def __init__(self, model=None, at=None, head=None, tail=None, workdir=None, n_ctx: int = 2048,
                 n_threads: int = DEFAULT_THREADS, shortcut=None, max_sessions: int = 8, name: str | None = None):
        if name:
            self.name = name
        if (head is None) != (tail is None):
            raise InvalidArgument("give both head= and tail= parts, or model= (and at=) to split")
        if head is None:
            head, tail, at = prepare_parts(model, None if at is None else int(at), workdir)
        self.head = Model(head)
        self.tail = Model(tail)
        hi, ti = self.head.info, self.tail.info
        if hi["part"] != "head" or ti["part"] != "tail" or hi["split_at"] != ti["split_at"] or \
                hi["n_embd"] != ti["n_embd"]:
            raise InvalidArgument(f"{head} and {tail} are not the head and tail of one split")
        self.at = hi["split_at"]
        self.n_ctx = int(n_ctx)
        self.n_threads = int(n_threads)
        self._shortcut_path = shortcut
        self._shortcut = None
        self._embed = None
        self._codecs = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(int(max_sessions))
        self.max_sessions = int(max_sessions)

    def _shortcut_parts(self):
        from .shortcut import ShortcutProjection, TokenEmbedding

        with self._lock:
            if self._shortcut is None:
                if self._shortcut_path:
                    self._shortcut = ShortcutProjection.load(self._shortcut_path, model=self.tail.path,
                                                             split_at=self.at)
                else:  # the shipped trained net for this split, else the untrained identity
                    self._shortcut = ShortcutProjection.default(self.tail.path, self.at, self.tail.n_embd)
                if self._shortcut.n_embd != self.tail.n_embd:
                    raise InvalidArgument("shortcut projection width does not match the model")
                self._embed = TokenEmbedding(self.tail.path)
            return self._shortcut, self._embed

    def decode_rows(self, payload, n_embd: int) -> np.ndarray:
        """Hidden-row payload -> rows: CLHR (protocol) or FC codes (the trained codec, fcnet)."""
        from .fcnet import FcCodecs, is_fc_payload

        if not is_fc_payload(payload):
            return protocol.decode_rows(payload, n_embd=n_embd)
        with self._lock:
            if self._codecs is None:
                self._codecs = FcCodecs.default(self.tail.path, self.at)
        return self._codecs.decode(payload, n_embd)

    def warm_up(self) -> None:
        """Run one token through head and tail once (page in the weights, first-graph setup),
        so the first request does not pay for it."""
        tok = self.head.info["bos"] if self.head.info["bos"] >= 0 else 0
        with self.head.session("head", n_ctx=64, n_threads=self.n_threads) as h, \
                self.tail.session("tail", n_ctx=64, n_threads=self.n_threads) as t:
            t.decode_rows(h.decode([tok]))

    def describe(self) -> dict:
        return {"at": self.at, "n_layer_total": self.head.info["n_layer_total"], "n_embd": self.head.n_embd,
                "head": self.head.path, "tail": self.tail.path}

    def infer(self, payload: bytes, meta: dict) -> tuple[bytes, dict]:
        """Unary server-only generation: payload = prompt text (UTF-8, already templated)."""
        meta = dict(meta or {})
        meta["mode"] = "server-only"
        s = self.open_session(meta)
        try:
            t0 = time.perf_counter()
            (_, first, m1), = s.on_message("prompt", payload, {})
            toks = list(protocol.decode_tokens(first))
            if m1.get("eog") != "1":
                (_, rest, _), = s.on_message("continue", b"", {})
                toks += list(protocol.decode_tokens(rest))
            text = self.head.detokenize([t for t in toks if not self.head.is_eog(t)])
            return text.encode(), {"n_tokens": str(len(toks)), "server_s": f"{time.perf_counter() - t0:.6f}"}
        finally:
            s.close()

    def open_session(self, meta: dict) -> "_LlmSession":
        meta = dict(meta or {})
        mode = meta.get("mode", "kv-handoff")
        if mode not in MODES or mode == "device-only":
            raise InvalidArgument(f"mode must be one of {[m for m in MODES if m != 'device-only']}, got {mode!r}")
        max_tokens = _int_meta(meta, "max_tokens", 64, 1, MAX_NEW_TOKENS)
        if not self._slots.acquire(blocking=False):
            raise InvalidArgument(f"server busy: {self.max_sessions} sessions open")
        try:
            return _LlmSession(self, mode, max_tokens)
        except BaseException:
            self._slots.release()
            raise


class _LlmSession(_SessionBase):
    def __init__(self, task: LlmTask, mode: str, max_tokens: int):
        self.task = task
        self.mode = mode
        self.max_tokens = max_tokens
        self.generated = 0
        self.last = None
        self.done = False
        self._closed = False
        opts = dict(n_ctx=task.n_ctx, n_threads=task.n_threads)
        self.tail = task.tail.session("tail", **opts)
        self.head = task.head.session("head", **opts) if mode in ("server-only", "kv-handoff") else None
        if mode == "shortcut":
            self.proj, self.embed = task._shortcut_parts()

    # -- helpers ------------------------------------------------------------------------
    def _emit(self, logits) -> int:
        tok = greedy(logits[-1])
        self.generated += 1
        self.last = tok
        if self.task.tail.is_eog(tok) or self.generated >= self.max_tokens:
            self.done = True
        return tok

    def _next_row(self, tok: int) -> np.ndarray:
        if self.mode == "shortcut":
            return self.proj(self.embed([tok]))
        return self.head.decode([tok])

    def _reply(self, kind, toks, t0):
        return [(kind, protocol.encode_tokens(toks),
                 {"server_s": f"{time.perf_counter() - t0:.6f}", "eog": "1" if self.done else "0"})]

    # -- TaskSession --------------------------------------------------------------------
    def on_message(self, kind: str, payload: bytes, meta: dict):
        if self._closed:
            raise InvalidArgument("session is closed")
        t0 = time.perf_counter()
        n_embd = self.task.tail.n_embd
        if kind == "end":
            self.close()
            return []
        if kind == "prompt":
            if self.mode != "server-only" or self.last is not None:
                raise InvalidArgument(f"'prompt' is only the first message of a server-only session")
            try:
                text = bytes(payload).decode("utf-8")
            except UnicodeDecodeError:
                raise protocol.ProtocolError("prompt is not UTF-8") from None
            toks = self.task.head.tokenize(text)
            if toks.size == 0 or toks.size + self.max_tokens > self.tail.n_ctx:
                raise InvalidArgument(f"prompt of {toks.size} tokens + {self.max_tokens} new > n_ctx {self.tail.n_ctx}")
            rows = self.head.decode(toks)
            return self._reply("token", [self._emit(self.tail.decode_rows(rows))], t0)
        if kind == "state":
            if self.mode != "kv-handoff" or self.last is not None or self.head.n_past:
                raise InvalidArgument("'state' is only sent once, before the prefill rows, in kv-handoff mode")
            hi = self.task.head.info
            state, n_past = protocol.decode_state(payload, n_layer=hi["n_layer"], n_embd=hi["n_embd"])
            self.head.state_set(state)
            if self.head.n_past != n_past:
                raise protocol.ProtocolError(f"KV state holds {self.head.n_past} positions, header says {n_past}")
            return []
        if kind == "rows":
            if self.mode == "server-only":
                raise InvalidArgument("a server-only session takes 'prompt', not rows")
            if self.done:
                raise InvalidArgument("generation already finished")
            if self.last is not None and self.mode != "roundtrip":
                raise InvalidArgument(f"{self.mode}: rows are sent once (prefill); then 'continue'")
            rows = self.task.decode_rows(payload, n_embd)
            if self.last is not None and rows.shape[0] != 1:
                raise InvalidArgument("after prefill, roundtrip sends one row per token")
            if self.tail.n_past + rows.shape[0] > self.tail.n_ctx:
                raise InvalidArgument("context full")
            if self.last is None and self.mode == "kv-handoff" and self.head.n_past != rows.shape[0]:
                raise InvalidArgument(f"kv-handoff: the KV state covers {self.head.n_past} tokens but "
                                      f"{rows.shape[0]} prefill rows came (send 'state' first)")
            return self._reply("token", [self._emit(self.tail.decode_rows(rows))], t0)
        if kind == "continue":
            if self.mode == "roundtrip" or self.last is None:
                raise InvalidArgument(f"'continue' follows the first token in server-only, kv-handoff or shortcut")
            toks = []
            while not self.done and self.tail.n_past < self.tail.n_ctx:
                row = self._next_row(self.last)
                toks.append(self._emit(self.tail.decode_rows(row)))
            self.done = True
            return self._reply("tokens", toks if toks else [], t0) if toks else \
                [("tokens", b"", {"server_s": f"{time.perf_counter() - t0:.6f}", "eog": "1"})]
        raise InvalidArgument(f"unknown message kind {kind!r}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for s in (self.tail, self.head):
            if s is not None:
                s.close()
        self.task._slots.release()
