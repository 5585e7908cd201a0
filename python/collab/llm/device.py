"""Device side of split LLM inference: runs the head, talks to the server over a channel.

    dev = Device(head="SmolLM2.head-15.gguf", full="SmolLM2.gguf")
    g = dev.generate("What is the capital of France?", mode="kv-handoff", client=client)
    print(g.text, g.ttft_s, g.bytes_up)

``client`` is anything with ``session(task, meta)`` returning a context manager with
``send(kind, payload, meta)`` / ``recv()``: collab.Client (gRPC transport) or
collab.net.LinkClient (in process, emulated link). Sampling is greedy.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field


from ..errors import InvalidArgument
from . import protocol
from .runtime import DEFAULT_THREADS, Model, greedy
from .server import MODES

__all__ = ["Device", "Generation", "MODES"]


@dataclass
class Generation:
    mode: str
    prompt_tokens: int
    tokens: list
    text: str
    ttft_s: float            # request start -> first generated token known on the device
    total_s: float           # request start -> last token known on the device
    bytes_up: int = 0
    bytes_down: int = 0
    round_trips: int = 0     # times the device waited for a reply
    messages_up: int = 0
    device_s: float = 0.0    # device compute (head / full model)
    server_s: float = 0.0    # server compute as reported by the server
    extra: dict = field(default_factory=dict)

    @property
    def n_generated(self) -> int:
        return len(self.tokens)

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.ttft_s if self.ttft_s > 0 else float("inf")

    @property
    def decode_tok_s(self) -> float:
        dt = self.total_s - self.ttft_s
        n = self.n_generated - 1
        return n / dt if n > 0 and dt > 0 else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(n_generated=self.n_generated, prefill_tok_s=self.prefill_tok_s, decode_tok_s=self.decode_tok_s)
        return d


class _Counting:
    """Wraps a channel session: counts bytes both ways, messages and waits."""

    def __init__(self, sess):
        self.sess = sess
        self.up = self.down = self.waits = self.msgs = 0
        self.server_s = 0.0

    def send(self, kind, payload=b"", meta=None):
        from ..net.link import message_bytes

        self.up += message_bytes(kind, payload, meta)
        self.msgs += 1
        self.sess.send(kind, payload, meta or {})

    def recv(self):
        from ..net.link import message_bytes

        self.waits += 1
        kind, payload, meta = self.sess.recv()
        self.down += message_bytes(kind, payload, meta)
        self.server_s += float(meta.get("server_s", 0.0) or 0.0)
        return kind, payload, meta


class Device:
    """The device: a head part (split modes) and optionally the full model (device-only)."""

    def __init__(self, head=None, full=None, *, n_ctx: int = 2048, n_threads: int = DEFAULT_THREADS,
                 policy: protocol.RowPolicy | None = None, task: str = "llm"):
        if head is None and full is None:
            raise InvalidArgument("give a head part (split modes) and/or the full model (device-only)")
        self.head = Model(head) if head is not None else None
        self.full = Model(full) if full is not None else None
        self.vocab_model = self.head or self.full
        if self.head is not None and self.head.part != "head":
            raise InvalidArgument(f"{head} is not a head part (split_gguf writes those)")
        self.n_ctx = int(n_ctx)
        self.n_threads = int(n_threads)
        self.policy = policy or protocol.RowPolicy.exact()
        self.task = task

    def warm_up(self) -> None:
        """One token through each local model (page in the weights, first-graph setup)."""
        for m, role in ((self.head, "head"), (self.full, "full")):
            if m is not None:
                with m.session(role, n_ctx=64, n_threads=self.n_threads) as s:
                    s.decode([max(0, m.info["bos"])])

    def prompt_tokens(self, prompt: str, chat: bool | None = None):
        """chat=None: use the model's chat template when it has one."""
        if not isinstance(prompt, str) or not prompt:
            raise InvalidArgument("prompt must be a non-empty string")
        text = prompt
        if chat or chat is None:
            try:
                text = self.vocab_model.chat_prompt(prompt)
            except InvalidArgument:
                if chat:
                    raise
        return text, self.vocab_model.tokenize(text)

    def generate(self, prompt: str, *, mode: str = "kv-handoff", client=None, max_tokens: int = 64,
                 policy: protocol.RowPolicy | None = None, chat: bool | None = None) -> Generation:
        if mode not in MODES:
            raise InvalidArgument(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096:
            raise InvalidArgument(f"max_tokens must be an integer in [1, 4096], got {max_tokens!r}")
        text, toks = self.prompt_tokens(prompt, chat)
        if toks.size + max_tokens > self.n_ctx:
            raise InvalidArgument(f"prompt ({toks.size} tokens) + max_tokens ({max_tokens}) > n_ctx {self.n_ctx}")
        policy = policy or self.policy
        if mode == "device-only":
            return self._device_only(toks, max_tokens)
        if client is None:
            raise InvalidArgument(f"mode {mode} needs a client (server connection)")
        if mode != "server-only" and self.head is None:
            raise InvalidArgument(f"mode {mode} needs the head part on the device")
        meta = {"mode": mode, "max_tokens": str(max_tokens)}
        with client.session(self.task, meta) as raw:
            ch = _Counting(raw)
            try:
                g = getattr(self, "_" + mode.replace("-", "_"))(ch, text, toks, max_tokens, policy)
            finally:
                try:
                    ch.sess.send("end", b"", {})
                except Exception:
                    pass
        g.bytes_up, g.bytes_down, g.round_trips, g.messages_up, g.server_s = \
            ch.up, ch.down, ch.waits, ch.msgs, ch.server_s
        g.text = self.vocab_model.detokenize([t for t in g.tokens if not self.vocab_model.is_eog(t)])
        return g

    # -- modes ----------------------------------------------------------------------------
    def _finish(self, mode, toks, out, t0, t_first, device_s, **extra):
        return Generation(mode=mode, prompt_tokens=int(toks.size), tokens=[int(t) for t in out], text="",
                          ttft_s=t_first - t0, total_s=time.perf_counter() - t0, device_s=device_s, extra=extra)

    def _device_only(self, toks, max_tokens):
        model = self.full
        if model is None:
            raise InvalidArgument("device-only needs the full model on the device (Device(full=...))")
        t0 = time.perf_counter()
        out = []
        with model.session("full", n_ctx=self.n_ctx, n_threads=self.n_threads) as s:
            tok = greedy(self._full_prefill(s, toks))
            t_first = time.perf_counter()
            out.append(tok)
            while len(out) < max_tokens and not model.is_eog(tok):
                tok = greedy(s.decode([tok])[-1])
                out.append(tok)
        g = self._finish("device-only", toks, out, t0, t_first, time.perf_counter() - t0)
        g.text = model.detokenize([t for t in out if not model.is_eog(t)])
        return g

    def _full_prefill(self, s, toks):
        """Logits of the prompt's last position in a full session (a VLM adds image rows)."""
        return s.decode(toks)[-1]

    @staticmethod
    def _tokens(payload):
        return [] if len(payload) == 0 else [int(t) for t in protocol.decode_tokens(payload)]

    def _first_then_rest(self, ch):
        """The server answers the first token alone (TTFT), then everything else after one
        `continue`: the tokens and the time the first one arrived."""
        _, p, m = ch.recv()
        out = self._tokens(p)
        t_first = time.perf_counter()
        if m.get("eog") != "1":
            ch.send("continue", b"", {})
            _, p, _ = ch.recv()
            out += self._tokens(p)
        return out, t_first

    def _server_only(self, ch, text, toks, max_tokens, policy):
        t0 = time.perf_counter()
        ch.send("prompt", text.encode(), {})
        out, t_first = self._first_then_rest(ch)
        return self._finish("server-only", toks, out, t0, t_first, 0.0)

    def _head_prefill(self, s, toks, policy):
        t = time.perf_counter()
        rows = s.decode(toks)
        payload = protocol.encode_rows(rows, policy)
        return payload, time.perf_counter() - t, rows.nbytes

    def _roundtrip(self, ch, text, toks, max_tokens, policy):
        t0 = time.perf_counter()
        with self.head.session("head", n_ctx=self.n_ctx, n_threads=self.n_threads) as s:
            payload, dev_s, raw = self._head_prefill(s, toks, policy)
            ch.send("rows", payload, {})
            _, p, m = ch.recv()
            out = self._tokens(p)
            t_first = time.perf_counter()
            while m.get("eog") != "1":
                t = time.perf_counter()
                row = protocol.encode_rows(s.decode([out[-1]]))  # single rows: full fidelity
                dev_s += time.perf_counter() - t
                ch.send("rows", row, {})
                _, p, m = ch.recv()
                out += self._tokens(p)
        return self._finish("roundtrip", toks, out, t0, t_first, dev_s, prefill_payload=len(payload),
                            prefill_raw=raw)

    def _handoff(self, ch, toks, policy, mode, send_state):
        t0 = time.perf_counter()
        with self.head.session("head", n_ctx=self.n_ctx, n_threads=self.n_threads) as s:
            payload, dev_s, raw = self._head_prefill(s, toks, policy)
            state_bytes = 0
            if send_state:
                t = time.perf_counter()
                hi = self.head.info
                frame = protocol.encode_state(s.state_get(), n_layer=hi["n_layer"], n_embd=hi["n_embd"],
                                              n_past=s.n_past)
                dev_s += time.perf_counter() - t
                state_bytes = len(frame)
                ch.send("state", frame, {})
            ch.send("rows", payload, {})
            out, t_first = self._first_then_rest(ch)
        return self._finish(mode, toks, out, t0, t_first, dev_s, prefill_payload=len(payload), prefill_raw=raw,
                            state_bytes=state_bytes)

    def _kv_handoff(self, ch, text, toks, max_tokens, policy):
        return self._handoff(ch, toks, policy, "kv-handoff", True)

    def _shortcut(self, ch, text, toks, max_tokens, policy):
        return self._handoff(ch, toks, policy, "shortcut", False)
