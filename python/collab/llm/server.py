"""Server side of split LLM inference: a TaskHandler hosting the tail (and a head copy).

    handler = LlmTask(model="SmolLM2.gguf", at=15)        # splits once, caches the parts
    collab llm serve --model SmolLM2.gguf --at 15           # on a gRPC port

One TaskSession per device stream; the session meta chooses the decode mode:

    mode         device sends                              server replies
    server-only  "prompt" (templated prompt text)          "token" per generated token,
                                                           streamed as they are decoded
    roundtrip    "rows" (prefill rows), then one "rows"    "token" per "rows"
                 (one hidden row) per generated token
    kv-handoff   "state" (head KV cache) + "rows"          "token" per token, streamed: the
                                                           server runs head and tail
    shortcut     "rows"                                    as kv-handoff, but new tokens go
                                                           through the shortcut projection
                                                           (the shipped trained net for this
                                                           model and split, else the identity)

"rows" payloads are CLHR (protocol: f32 / f16 / SLICER segments) or CLFC (fcnet: early rows
as codes of the trained FC codec, decoded here before the tail).
The prefill "rows" message may carry meta "chunks" ("n1,n2,..."): the batches the device's
own model decoded the prompt in (a VLM: text, image rows, text); the tail decodes in the
same ones, which reproduces the unsplit logits bit for bit.

Streaming: one message per token. A token message is ~40 bytes (int32 id + meta) plus gRPC
framing, next to >= 10 ms of compute per token on any CPU this runs on, so grouping tokens
would save almost no bytes and only delay what a user sees. Each token message carries meta
"server_s" (compute seconds for it) and "eog" ("1" on the last one, with "stop": eog,
max_tokens, context or deadline). A session meta "deadline_s" (seconds from the session
start) stops generation with a "stop" message once passed; "ignore_eog" = "1" generates
max_tokens whatever comes (benchmarks compare modes at one token count). Closing the session (client
cancel, disconnect, "end") stops decoding within one token: the decode loop takes the
session lock per token and checks for close before each one.

Limits (all on by default): the rows a message may declare are checked against the room
left in the session's context before anything is decoded; a server-only prompt is bounded
in bytes before it is tokenized; KV-state frames are bounded by what n_ctx positions can
take, and llama.cpp refuses trailing bytes. Sessions: at most ``max_sessions``, at most
``max_sessions_per_identity`` per client (its host, as the transport reports it), and when all
are taken a newcomer evicts the session idle for longest if it has been idle more than
``busy_idle_s``; otherwise it gets RESOURCE_EXHAUSTED (ResourceBusy).
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

from ..transport.handlers import IDENTITY_META, ResourceBusy
from ..transport.handlers import TaskHandler as _HandlerBase
from ..transport.handlers import TaskSession as _SessionBase

__all__ = ["LlmTask", "SPLIT_MODES", "MODES", "STREAM_MODES", "prepare_parts", "MAX_NEW_TOKENS",
           "IDENTITY_META"]

SPLIT_MODES = ("roundtrip", "kv-handoff", "shortcut")
MODES = ("device-only", "server-only") + SPLIT_MODES
STREAM_MODES = ("server-only", "kv-handoff", "shortcut")   # the server decodes and streams
MAX_NEW_TOKENS = 4096
PROMPT_BYTES_PER_TOKEN = 32         # server-only prompts: at most n_ctx * this many UTF-8 bytes


def _cache_dir() -> Path:
    return Path(os.environ.get("COLLAB_CACHE_DIR", Path.home() / ".cache" / "collab")) / "llm"


def prepare_parts(model=None, at: int | None = None, out_dir=None) -> tuple[Path, Path, int]:
    """Split ``model`` (default: the embedded SmolLM2) at ``at`` (default: the middle) into
    out_dir (default: $COLLAB_CACHE_DIR/llm, else ~/.cache/collab/llm), reusing parts already there."""
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
                 n_threads: int = DEFAULT_THREADS, shortcut=None, max_sessions: int = 8,
                 max_sessions_per_identity: int = 2, busy_idle_s: float = 10.0, max_prompt_bytes: int | None = None,
                 name: str | None = None):
        if name:
            self.name = name
        if (head is None) != (tail is None):
            raise InvalidArgument("give both head= and tail= parts, or model= (and at=) to split")
        for label, v in (("n_ctx", n_ctx), ("n_threads", n_threads), ("max_sessions", max_sessions),
                         ("max_sessions_per_identity", max_sessions_per_identity)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidArgument(f"{label} must be an integer >= 1, got {v!r}")
        if not isinstance(busy_idle_s, (int, float)) or not busy_idle_s > 0:
            raise InvalidArgument(f"busy_idle_s must be > 0, got {busy_idle_s!r}")
        if head is None:
            head, tail, at = prepare_parts(model, None if at is None else int(at), workdir)
        self.head = Model(head)
        self.tail = Model(tail)
        hi, ti = self.head.info, self.tail.info
        if hi["part"] != "head" or ti["part"] != "tail" or hi["split_at"] != ti["split_at"] or \
                hi["n_embd"] != ti["n_embd"]:
            raise InvalidArgument(f"{head} and {tail} are not the head and tail of one split")
        self.at = hi["split_at"]
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_prompt_bytes = int(max_prompt_bytes or PROMPT_BYTES_PER_TOKEN * n_ctx)
        # K and V of every head layer for n_ctx positions, at most n_embd wide and 4 bytes each
        self.max_state_bytes = 2 * hi["n_layer"] * hi["n_embd"] * 4 * n_ctx + (1 << 20)
        self._shortcut_path = shortcut
        self._shortcut = None
        self._embed = None
        self._codecs = None
        # loading the trained nets takes seconds: their own lock, so session admission (under
        # _lock) never waits for it
        self._nets_lock = threading.Lock()
        self._lock = threading.Lock()
        self._live: list = []   # open _LlmSession objects (under _lock)
        self.max_sessions = max_sessions
        self.max_sessions_per_identity = max_sessions_per_identity
        self.busy_idle_s = float(busy_idle_s)
        self.evicted = 0

    def _shortcut_parts(self):
        from .shortcut import ShortcutProjection, TokenEmbedding

        with self._nets_lock:
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

    def decode_rows(self, payload, n_embd: int, max_rows: int) -> np.ndarray:
        """Hidden-row payload -> rows: CLHR (protocol) or FC codes (the trained codec, fcnet).
        Either way the header is checked first: a payload declaring more than max_rows rows,
        or not exactly the bytes its header implies, is refused before anything is decoded
        (and before the codecs are loaded)."""
        from .fcnet import inspect_fc_rows, is_fc_payload

        if not is_fc_payload(payload):
            return protocol.decode_rows(payload, n_embd=n_embd, max_rows=max_rows)
        inspect_fc_rows(payload, n_embd=n_embd, max_rows=max_rows)
        return self._fc_codecs().decode(payload, n_embd, max_rows=max_rows)

    def _fc_codecs(self):
        """The shipped FC codecs for this split (none: FC payloads are refused)."""
        from .fcnet import FcCodecs

        with self._nets_lock:
            if self._codecs is None:
                self._codecs = FcCodecs.default(self.tail.path, self.at)
            return self._codecs

    def warm_up(self, nets: bool = False) -> None:
        """Run one token through head and tail once (page in the weights, first-graph setup),
        so the first request does not pay for it. The trained nets (shortcut projection with
        the token embedding, FC codecs: seconds) are loaded here with nets=True, else in the
        background: a first request needing them pays only what is left, and other modes never
        wait for them."""
        from .. import codec  # noqa: F401  (its first import costs seconds: not on the first request)

        def preload():
            try:
                self._shortcut_parts()
                self._fc_codecs()
            except Exception:  # noqa: BLE001  (a request needing them loads again and reports the error)
                pass

        if nets:
            self._shortcut_parts()
            self._fc_codecs()
        else:
            threading.Thread(target=preload, name="llm-nets-preload", daemon=True).start()
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
        max_tokens = _int_meta(meta, "max_tokens", 64, 1, MAX_NEW_TOKENS)
        # not a session slot: unary calls stay available when the slots are full (the
        # transport's worker pool bounds how many run at once)
        s = _LlmSession(self, "server-only", max_tokens, "unary", None)
        try:
            t0 = time.perf_counter()
            toks = []
            for _, p, _m in s.on_message("prompt", payload, {}):
                toks += list(protocol.decode_tokens(p)) if p else []
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
        deadline = meta.get("deadline_s")
        if deadline is not None:
            try:
                deadline = float(deadline)
            except ValueError:
                raise InvalidArgument(f"meta deadline_s={deadline!r} is not a number") from None
            if not 0 < deadline <= 86400:
                raise InvalidArgument(f"meta deadline_s={deadline} out of range (0, 86400]")
        ignore_eog = meta.get("ignore_eog", "0") == "1"
        identity = str(meta.get(IDENTITY_META, "local"))
        self._admit(identity)
        try:
            s = _LlmSession(self, mode, max_tokens, identity, deadline, ignore_eog)
        except BaseException:
            self._forget(identity)
            raise
        self._register(identity, s)
        return s

    # -- session slots ----------------------------------------------------------------------
    def _admit(self, identity: str) -> None:
        """Reserve a slot for identity (a placeholder until the session exists), evicting the
        longest-idle session when all are taken and it has idled more than busy_idle_s."""
        victim = None
        with self._lock:
            mine = sum(1 for x in self._live if _identity_of(x) == identity)
            if mine >= self.max_sessions_per_identity:
                raise ResourceBusy(f"{mine} sessions already open for this client (limit "
                                   f"{self.max_sessions_per_identity} per client); close one or retry later")
            if len(self._live) >= self.max_sessions:
                now = time.monotonic()
                idle = [x for x in self._live if isinstance(x, _LlmSession) and not x.busy
                        and now - x.last_active > self.busy_idle_s]
                if not idle:
                    raise ResourceBusy(f"server busy: {len(self._live)} sessions open, none idle "
                                       f"for more than {self.busy_idle_s:g} s; retry later")
                victim = min(idle, key=lambda x: x.last_active)
                self._live.remove(victim)
                victim.evicted = True
                self.evicted += 1
            self._live.append(identity)   # placeholder, replaced by the session object
        if victim is not None:
            victim.close()

    def _register(self, identity: str, session) -> None:
        with self._lock:
            self._live[self._live.index(identity)] = session

    def _forget(self, item) -> None:
        with self._lock:
            if item in self._live:
                self._live.remove(item)

    def open_sessions(self) -> int:
        with self._lock:
            return len(self._live)


def _identity_of(x) -> str:
    return x if isinstance(x, str) else x.identity


MAX_PREFILL_CHUNKS = 64


def _prefill_chunks(spec, n_rows: int) -> list:
    """Row ranges of a prefill. A device whose own model saw the prompt in several batches
    (a VLM: text, image rows, text) names their lengths in the "chunks" meta ("5,64,12"):
    decoding in the same batches reproduces its logits exactly (llama.cpp's results depend
    on the batch shape). Absent: one batch."""
    if spec is None:
        return [(0, n_rows)]
    parts = str(spec).split(",")
    if len(parts) > MAX_PREFILL_CHUNKS:
        raise InvalidArgument(f"meta chunks: {len(parts)} chunks, at most {MAX_PREFILL_CHUNKS}")
    try:
        sizes = [int(x) for x in parts]
    except ValueError:
        raise InvalidArgument(f"meta chunks={str(spec)[:64]!r} is not a comma-separated list of integers") from None
    if any(n <= 0 for n in sizes) or sum(sizes) != n_rows:
        raise InvalidArgument(f"meta chunks {sizes[:8]}: positive sizes summing to the {n_rows} rows sent")
    ends = np.cumsum(sizes)
    return [(int(e - n), int(e)) for e, n in zip(ends, sizes)]


class _LlmSession(_SessionBase):
    def __init__(self, task: LlmTask, mode: str, max_tokens: int, identity: str, deadline_s: float | None,
                 ignore_eog: bool = False):
        self.task = task
        self.ignore_eog = ignore_eog
        self.mode = mode
        self.max_tokens = max_tokens
        self.identity = identity
        self.t_open = time.monotonic()
        self.deadline = None if deadline_s is None else self.t_open + deadline_s
        self.generated = 0
        self.last = None
        self.done = False
        self.stop = ""
        self.busy = False
        self.evicted = False
        self.last_active = self.t_open
        self._closed = False
        self._lock = threading.Lock()   # one native step at a time; close() waits for it
        opts = dict(n_ctx=task.n_ctx, n_threads=task.n_threads)
        self.tail = task.tail.session("tail", **opts)
        self.head = None
        try:
            if mode in ("server-only", "kv-handoff"):
                self.head = task.head.session("head", **opts)
            if mode == "shortcut":
                self.proj, self.embed = task._shortcut_parts()
        except BaseException:
            self.tail.close()
            if self.head is not None:
                self.head.close()
            raise

    # -- helpers ------------------------------------------------------------------------
    def _emit(self, logits) -> int:
        tok = greedy(logits[-1])
        self.generated += 1
        self.last = tok
        if self.task.tail.is_eog(tok) and not self.ignore_eog:
            self.done, self.stop = True, "eog"
        elif self.generated >= self.max_tokens:
            self.done, self.stop = True, "max_tokens"
        elif self.tail.n_past >= self.tail.n_ctx:
            self.done, self.stop = True, "context"
        return tok

    def _next_row(self, tok: int) -> np.ndarray:
        if self.mode == "shortcut":
            return self.proj(self.embed([tok]))
        return self.head.decode([tok])

    def _token(self, tok, t0):
        meta = {"server_s": f"{time.perf_counter() - t0:.6f}", "eog": "1" if self.done else "0"}
        if self.done:
            meta["stop"] = self.stop
        return ("token", protocol.encode_tokens([tok]), meta)

    def _check_open(self):
        if self._closed:
            raise InvalidArgument("session was closed: idle while other clients waited" if self.evicted
                                  else "session is closed")

    def _stream(self, first):
        """The streamed reply of server-only / kv-handoff / shortcut: the first token, then one
        message per token as it is decoded. Stops within one token when the session closes."""
        try:
            yield first
            while True:
                with self._lock:
                    if self._closed or self.done:
                        return
                    if self.deadline is not None and time.monotonic() > self.deadline:
                        self.done, self.stop = True, "deadline"
                        reply = ("stop", b"", {"eog": "1", "stop": "deadline", "server_s": "0"})
                    else:
                        t0 = time.perf_counter()
                        reply = self._token(self._emit(self.tail.decode_rows(self._next_row(self.last))), t0)
                    self.last_active = time.monotonic()
                yield reply
        finally:
            self.busy = False
            self.last_active = time.monotonic()

    # -- TaskSession --------------------------------------------------------------------
    def on_message(self, kind: str, payload: bytes, meta: dict):
        with self._lock:
            self._check_open()
            self.busy = True
            self.last_active = time.monotonic()
            streaming = False
            try:
                if kind == "end":
                    self._close_locked()
                    return []
                first = self._step(kind, payload, meta or {})
                streaming = first is not None and self.mode in STREAM_MODES and not self.done
            finally:
                if not streaming:
                    self.busy = False
        if streaming:
            return self._stream(first)
        return [] if first is None else [first]

    def _step(self, kind: str, payload: bytes, meta: dict):
        t0 = time.perf_counter()
        n_embd = self.task.tail.n_embd
        if kind == "prompt":
            if self.mode != "server-only" or self.last is not None:
                raise InvalidArgument("'prompt' is only the first message of a server-only session")
            if len(payload) > self.task.max_prompt_bytes:
                raise InvalidArgument(f"prompt of {len(payload)} bytes is over this server's "
                                      f"{self.task.max_prompt_bytes}-byte limit")
            try:
                text = bytes(payload).decode("utf-8")
            except UnicodeDecodeError:
                raise protocol.ProtocolError("prompt is not UTF-8") from None
            toks = self.task.head.tokenize(text)
            if toks.size == 0 or toks.size + self.max_tokens > self.tail.n_ctx:
                raise InvalidArgument(f"prompt of {toks.size} tokens + {self.max_tokens} new > n_ctx {self.tail.n_ctx}")
            rows = self.head.decode(toks)
            return self._token(self._emit(self.tail.decode_rows(rows)), t0)
        if kind == "state":
            if self.mode != "kv-handoff" or self.last is not None or self.head.n_past:
                raise InvalidArgument("'state' is only sent once, before the prefill rows, in kv-handoff mode")
            hi = self.task.head.info
            state, n_past = protocol.decode_state(payload, n_layer=hi["n_layer"], n_embd=hi["n_embd"],
                                                  max_bytes=self.task.max_state_bytes)
            if not 0 < n_past < self.head.n_ctx:
                raise protocol.ProtocolError(f"KV state of {n_past} positions does not fit n_ctx {self.head.n_ctx}")
            self.head.state_set(state)
            if self.head.n_past != n_past:
                raise protocol.ProtocolError(f"KV state holds {self.head.n_past} positions, header says {n_past}")
            return None
        if kind == "rows":
            if self.mode == "server-only":
                raise InvalidArgument("a server-only session takes 'prompt', not rows")
            if self.done:
                raise InvalidArgument("generation already finished")
            if self.last is not None and self.mode != "roundtrip":
                raise InvalidArgument(f"{self.mode}: rows are sent once (prefill), then the server streams")
            room = self.tail.n_ctx - self.tail.n_past
            if room <= 0:
                raise InvalidArgument("context full")
            # headers first: a payload declaring more rows than fit is refused before decoding
            rows = self.task.decode_rows(payload, n_embd, max_rows=1 if self.last is not None else room)
            if self.last is None and self.mode == "kv-handoff" and self.head.n_past != rows.shape[0]:
                raise InvalidArgument(f"kv-handoff: the KV state covers {self.head.n_past} tokens but "
                                      f"{rows.shape[0]} prefill rows came (send 'state' first)")
            logits = None
            for a, b in _prefill_chunks(meta.get("chunks"), rows.shape[0]):
                logits = self.tail.decode_rows(rows[a:b])
            return self._token(self._emit(logits), t0)
        raise InvalidArgument(f"unknown message kind {kind!r}")

    def _close_locked(self) -> None:
        if self._closed:
            return
        self._closed = True
        for s in (self.tail, self.head):
            if s is not None:
                s.close()
        self.task._forget(self)

    def close(self) -> None:
        with self._lock:  # waits for the token being decoded, if any
            self._close_locked()
