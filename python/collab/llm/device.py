"""Device side of split LLM inference: runs the head, talks to the server over a channel.

    dev = Device(head="SmolLM2.head-15.gguf", full="SmolLM2.gguf")
    for piece in dev.stream("What is the capital of France?", mode="kv-handoff", client=client):
        print(piece, end="", flush=True)          # each token's text as it arrives
    g = dev.generate("...", mode="kv-handoff", client=client)   # the same, collected
    print(g.text, g.ttft_s, g.token_times, g.bytes_up)

``client`` is anything with ``session(task, meta)`` returning a context manager with
``send(kind, payload, meta)`` / ``recv()`` (and ``cancel()`` to abort): collab.Client (gRPC
transport), collab.transport.InprocClient or collab.net.LinkClient (in process, emulated link).
Sampling is greedy.

Stopping early: leave the ``for`` loop (or call ``.close()`` on the stream), or pass
``deadline_s``: the session is cancelled, and the server stops decoding within one token.
"""
from __future__ import annotations

import codecs
import time
from dataclasses import asdict, dataclass, field

from ..errors import InvalidArgument
from . import protocol
from .fcnet import FcRowPolicy, fc_segments, inspect_fc_rows, is_fc_payload
from .runtime import DEFAULT_THREADS, Model, greedy
from .server import MODES

# A row policy: protocol.RowPolicy (CLHR: f32 / f16 / SLICER) or any object with
# encode(rows) -> bytes, such as fcnet.FcRowPolicy (CLFC: trained FC codes).

__all__ = ["Device", "Generation", "MODES"]


@dataclass
class Generation:
    mode: str
    prompt_tokens: int
    tokens: list
    text: str
    ttft_s: float            # request start (incl. opening the stream) -> first token on the device
    total_s: float           # request start -> last token known on the device
    token_times: list = field(default_factory=list)  # arrival of each token, seconds from start
    stop: str = ""           # eog, max_tokens, context, deadline or cancelled
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
    def ttst_s(self) -> float:
        """Time to the second token (the first one the stream, not the prefill, delivers)."""
        return self.token_times[1] if len(self.token_times) > 1 else float("nan")

    def inter_token_s(self) -> list:
        t = self.token_times
        return [b - a for a, b in zip(t, t[1:])]

    @property
    def decode_tok_s(self) -> float:
        dt = self.total_s - self.ttft_s
        n = self.n_generated - 1
        return n / dt if n > 0 and dt > 0 else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(n_generated=self.n_generated, prefill_tok_s=self.prefill_tok_s, decode_tok_s=self.decode_tok_s,
                 ttst_s=self.ttst_s)
        return d


class _Counting:
    """Wraps a channel session: counts bytes both ways, messages, and round trips (a receive
    after one or more sends: the device waited for an answer to something it sent)."""

    def __init__(self, sess):
        self.sess = sess
        self.up = self.down = self.waits = self.msgs = 0
        self.server_s = 0.0
        self._sent = False

    def send(self, kind, payload=b"", meta=None):
        from ..net.link import message_bytes

        self.up += message_bytes(kind, payload, meta)
        self.msgs += 1
        self._sent = True
        self.sess.send(kind, payload, meta or {})

    def recv(self, timeout=None):
        from ..net.link import message_bytes

        if self._sent:
            self.waits += 1
            self._sent = False
        kind, payload, meta = self.sess.recv() if timeout is None else self.sess.recv(timeout=timeout)
        self.down += message_bytes(kind, payload, meta)
        self.server_s += float(meta.get("server_s", 0.0) or 0.0)
        return kind, payload, meta


class TokenStream:
    """Iterator over the text pieces of a generation as its tokens arrive. ``generation`` holds
    the finished Generation once the loop ends (also after an early stop, with stop
    "cancelled"). ``close()`` (or leaving a ``with`` block / a ``for`` loop by break, once the
    stream is garbage) cancels the session."""

    def __init__(self, make_events, vocab):
        self._done: list = []
        self._events = make_events(self._done.append)  # generator of token ids
        self._vocab = vocab
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.tokens: list = []

    @property
    def generation(self) -> Generation | None:
        """The Generation, once the stream has ended (completed, stopped or closed)."""
        return self._done[0] if self._done else None

    def __iter__(self):
        return self

    def __next__(self) -> str:
        while True:
            try:
                tok = next(self._events)
            except StopIteration:
                tail = self._utf8.decode(b"", final=True)
                if tail:
                    return tail
                raise
            self.tokens.append(tok)
            if self._vocab.is_eog(tok):
                continue
            piece = self._utf8.decode(self._vocab.piece(tok))
            if piece:
                return piece

    def close(self) -> None:
        """Stop here: the session is cancelled (the server stops within one token)."""
        self._events.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self._events.close()
        except Exception:
            pass


class Device:
    """The device: a head part (split modes) and optionally the full model (device-only)."""

    def __init__(self, head=None, full=None, *, n_ctx: int = 2048, n_threads: int = DEFAULT_THREADS,
                 policy: protocol.RowPolicy | FcRowPolicy | None = None, task: str = "llm"):
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
        """One token through each local model (page in the weights, first-graph setup), and the
        codec imported (its first import costs seconds)."""
        from .. import codec  # noqa: F401
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

    def stream(self, prompt: str, *, mode: str = "kv-handoff", client=None, max_tokens: int = 64,
               policy: protocol.RowPolicy | FcRowPolicy | None = None, chat: bool | None = None,
               deadline_s: float | None = None, ignore_eog: bool = False) -> TokenStream:
        """Generate, yielding each token's text as it arrives (see the module docstring).
        ignore_eog: go on to max_tokens past end-of-generation tokens (benchmarks: the same
        token count for every mode)."""
        if mode not in MODES:
            raise InvalidArgument(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 4096:
            raise InvalidArgument(f"max_tokens must be an integer in [1, 4096], got {max_tokens!r}")
        if deadline_s is not None and (not isinstance(deadline_s, (int, float)) or not 0 < deadline_s <= 86400):
            raise InvalidArgument(f"deadline_s must be a number of seconds in (0, 86400], got {deadline_s!r}")
        text, toks = self.prompt_tokens(prompt, chat)
        if toks.size + max_tokens > self.n_ctx:
            raise InvalidArgument(f"prompt ({toks.size} tokens) + max_tokens ({max_tokens}) > n_ctx {self.n_ctx}")
        policy = policy or self.policy
        if mode == "device-only":
            if self.full is None:
                raise InvalidArgument("device-only needs the full model on the device (Device(full=...))")
            return TokenStream(lambda done: self._device_only(toks, max_tokens, deadline_s, bool(ignore_eog), done),
                               self.full)
        if client is None:
            raise InvalidArgument(f"mode {mode} needs a client (server connection)")
        if mode != "server-only" and self.head is None:
            raise InvalidArgument(f"mode {mode} needs the head part on the device")
        return TokenStream(lambda done: self._remote(mode, client, text, toks, max_tokens, policy, deadline_s,
                                                     bool(ignore_eog), done), self.vocab_model)

    def generate(self, prompt: str, *, mode: str = "kv-handoff", client=None, max_tokens: int = 64,
                 policy: protocol.RowPolicy | FcRowPolicy | None = None, chat: bool | None = None,
                 deadline_s: float | None = None, ignore_eog: bool = False) -> Generation:
        """stream() collected: the tokens, their text and per-token arrival times."""
        st = self.stream(prompt, mode=mode, client=client, max_tokens=max_tokens, policy=policy, chat=chat,
                         deadline_s=deadline_s, ignore_eog=ignore_eog)
        for _ in st:
            pass
        return st.generation

    def _remote(self, mode, client, text, toks, max_tokens, policy, deadline_s, ignore_eog, done):
        """Generator of token ids over a session; hands the Generation to done() at the end."""
        t0 = time.perf_counter()
        meta = {"mode": mode, "max_tokens": str(max_tokens)}
        if deadline_s is not None:
            meta["deadline_s"] = f"{deadline_s:.6f}"
        if ignore_eog:
            meta["ignore_eog"] = "1"
        run = _Run(t0, deadline_s)
        raw = client.session(self.task, meta)
        ch = _Counting(raw)
        finished = False
        try:
            yield from getattr(self, "_" + mode.replace("-", "_"))(ch, run, text, toks, policy)
            finished = run.stop != "deadline"
        finally:
            _end(raw, finished)
            g = run.result(mode, toks, self.vocab_model)
            g.bytes_up, g.bytes_down, g.round_trips, g.messages_up, g.server_s = \
                ch.up, ch.down, ch.waits, ch.msgs, ch.server_s
            done(g)

    # -- modes: generators of token ids, recording into a _Run ---------------------------------
    def _device_only(self, toks, max_tokens, deadline_s, ignore_eog, done):
        model = self.full
        run = _Run(time.perf_counter(), deadline_s)
        try:
            with model.session("full", n_ctx=self.n_ctx, n_threads=self.n_threads) as s:
                tok = greedy(self._full_prefill(s, toks))
                while True:
                    yield run.token(tok)
                    if model.is_eog(tok) and not ignore_eog:
                        run.stop = "eog"
                    elif len(run.tokens) >= max_tokens:
                        run.stop = "max_tokens"
                    elif run.expired():
                        run.stop = "deadline"
                    if run.stop:
                        break
                    tok = greedy(s.decode([tok])[-1])
        finally:
            run.device_s = time.perf_counter() - run.t0
            done(run.result("device-only", toks, model))

    # prefill hooks: collab.vlm's device puts image rows between the prompt's text tokens
    def _full_prefill(self, s, toks):
        """Logits of the prompt's last position in a full session."""
        return s.decode(toks)[-1]

    def _head_rows(self, s, toks):
        """Hidden rows of every prompt position from a head session."""
        return s.decode(toks)

    def _prefill_meta(self) -> dict:
        """Meta of the prefill rows message: {"chunks": "n1,n2,..."} when the prompt is decoded
        in several batches (the server's tail then decodes in the same ones), else {}."""
        return {}

    @staticmethod
    def _recv_stream(ch, run):
        """Token messages until the server marks the last one (eog meta)."""
        while True:
            try:
                kind, p, m = ch.recv(timeout=run.remaining())
            except TimeoutError:
                if not run.expired():
                    raise
                run.stop = "deadline"  # the server's own stop message did not come in time
                return
            for t in ([] if len(p) == 0 else protocol.decode_tokens(p)):
                yield run.token(int(t))
            if m.get("eog") == "1":
                run.stop = m.get("stop", "eog")
                return

    def _server_only(self, ch, run, text, toks, policy):
        ch.send("prompt", text.encode(), {})
        yield from self._recv_stream(ch, run)

    def _head_prefill(self, s, toks, policy, run):
        t = time.perf_counter()
        rows = self._head_rows(s, toks)
        if hasattr(policy, "encode"):  # FcRowPolicy (collab.llm.fcnet): early rows as trained FC codes
            payload = policy.encode(rows)  # (or any policy object writing a CLFC / CLHR payload)
            segments = fc_segments(inspect_fc_rows(payload)) if is_fc_payload(payload) else \
                protocol.inspect_rows(payload)["segments"]
        else:
            payload = protocol.encode_rows(rows, policy)
            segments = protocol.inspect_rows(payload)["segments"]
        run.device_s += time.perf_counter() - t
        run.extra.update(prefill_payload=len(payload), prefill_raw=rows.nbytes, prefill_segments=segments)
        return payload

    def _roundtrip(self, ch, run, text, toks, policy):
        with self.head.session("head", n_ctx=self.n_ctx, n_threads=self.n_threads) as s:
            ch.send("rows", self._head_prefill(s, toks, policy, run), self._prefill_meta())
            while True:
                _, p, m = ch.recv(timeout=run.remaining())
                tok = int(protocol.decode_tokens(p)[0])
                yield run.token(tok)
                if m.get("eog") == "1":
                    run.stop = m.get("stop", "eog")
                    return
                if run.expired():
                    run.stop = "deadline"
                    return
                t = time.perf_counter()
                row = protocol.encode_rows(s.decode([tok]))  # single rows: full fidelity
                run.device_s += time.perf_counter() - t
                ch.send("rows", row, {})

    def _handoff(self, ch, run, toks, policy, send_state):
        with self.head.session("head", n_ctx=self.n_ctx, n_threads=self.n_threads) as s:
            payload = self._head_prefill(s, toks, policy, run)
            run.extra["state_bytes"] = 0
            if send_state:
                t = time.perf_counter()
                hi = self.head.info
                frame = protocol.encode_state(s.state_get(), n_layer=hi["n_layer"], n_embd=hi["n_embd"],
                                              n_past=s.n_past)
                run.device_s += time.perf_counter() - t
                run.extra["state_bytes"] = len(frame)
                ch.send("state", frame, {})
            ch.send("rows", payload, self._prefill_meta())
        yield from self._recv_stream(ch, run)

    def _kv_handoff(self, ch, run, text, toks, policy):
        return self._handoff(ch, run, toks, policy, True)

    def _shortcut(self, ch, run, text, toks, policy):
        return self._handoff(ch, run, toks, policy, False)


class _Run:
    """What a generation records while it streams."""

    def __init__(self, t0, deadline_s):
        self.t0 = t0
        self.deadline = None if deadline_s is None else t0 + deadline_s
        self.tokens: list = []
        self.times: list = []
        self.device_s = 0.0
        self.stop = ""
        self.extra: dict = {}

    def token(self, tok: int) -> int:
        self.times.append(time.perf_counter() - self.t0)
        self.tokens.append(int(tok))
        return int(tok)

    def expired(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def remaining(self):
        """recv timeout: what is left of the deadline (plus a little for the server's own stop
        message), or None (wait as long as the transport does)."""
        if self.deadline is None:
            return None
        return max(0.05, self.deadline - time.perf_counter() + 1.0)

    def result(self, mode, toks, vocab) -> Generation:
        n = len(self.tokens)
        total = time.perf_counter() - self.t0
        return Generation(mode=mode, prompt_tokens=int(toks.size), tokens=list(self.tokens),
                          text=vocab.detokenize([t for t in self.tokens if not vocab.is_eog(t)]),
                          ttft_s=self.times[0] if n else total, total_s=self.times[-1] if n else total,
                          token_times=list(self.times), stop=self.stop or "cancelled", device_s=self.device_s,
                          extra=dict(self.extra))


def _end(raw, finished: bool) -> None:
    """Finish a channel session: "end" + close after a complete generation; cancel (the server
    stops decoding at once) after an early stop or an error."""
    try:
        if finished:
            raw.send("end", b"", {})
            raw.close()
            return
        cancel = getattr(raw, "cancel", None)
        (cancel if callable(cancel) else raw.close)()
    except Exception:
        pass
