"""Streaming decode: every server-side mode sends each token as it is generated (one message
per token over the Session stream), Device.stream yields them as they come, cancelling (break,
close, deadline) stops the server within a token and frees the session (over gRPC and over the
emulated link), and the C API offers the same loop with a callback. Real gRPC server in this
process; work counts, no timings."""
from __future__ import annotations

import threading
import time

import pytest

from _llm_common import require_llama, tiny_model, tiny_task_and_device

pytestmark = pytest.mark.usefixtures("_llama")
PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def _llama():
    require_llama()
    pytest.importorskip("grpc")


class _Hooked:
    """Wraps each new LLM session's per-token step with a hook (called before each streamed token)."""

    def __init__(self, task, hook):
        from collab.llm import server

        self.decoded = 0
        outer = self
        orig = server._LlmSession._next_row

        def next_row(sess, tok):
            hook(outer.decoded)
            outer.decoded += 1
            return orig(sess, tok)

        self._patch = (server._LlmSession, "_next_row", orig)
        server._LlmSession._next_row = next_row

    def undo(self):
        setattr(*self._patch)


@pytest.fixture
def served():
    from collab.transport import Client, Server

    task, dev = tiny_task_and_device(max_sessions_per_identity=4)
    srv = Server([task], port=0).start()
    client = Client(srv.address, timeout=120)
    yield task, dev, client
    client.close()
    srv.stop()


def _wait_freed(task, timeout=30.0):
    t = time.monotonic()
    while task.open_sessions() and time.monotonic() - t < timeout:
        time.sleep(0.02)
    return task.open_sessions() == 0


@pytest.mark.parametrize("mode", ["server-only", "kv-handoff", "shortcut"])
def test_tokens_arrive_while_the_server_is_still_generating(served, mode):
    """The server may decode token k+1 only after the device has received token k: without
    streaming (all tokens in one message) this deadlocks and the gate times out."""
    task, dev, client = served
    received = threading.Semaphore(0)
    stalls = []

    def gate(k):
        if not received.acquire(timeout=20):
            stalls.append(k)

    class Tap:  # releases the gate for each token message the device receives
        def session(self, task_name, meta=None):
            sess = client.session(task_name, meta)
            recv = sess.recv

            def tapped(timeout=None):
                out = recv(timeout=timeout)
                received.release()
                return out
            sess.recv = tapped
            return sess

    h = _Hooked(task, gate)
    try:
        st = dev.stream(PROMPT, mode=mode, client=Tap(), max_tokens=10, chat=False)
        list(st)
        g = st.generation
    finally:
        h.undo()
    assert stalls == [], f"the server waited for token(s) {stalls} that were never delivered"
    assert g.n_generated >= 2 and g.stop in ("eog", "max_tokens")
    assert h.decoded == g.n_generated - 1  # the first comes from prefill, each other one streamed
    assert len(g.token_times) == g.n_generated and g.token_times == sorted(g.token_times)
    assert g.round_trips == 1  # one request, then the tokens stream


def test_stream_matches_device_only_and_text_pieces(served):
    task, dev, client = served
    ref = dev.generate(PROMPT, mode="device-only", max_tokens=12, chat=False)
    for mode in ("server-only", "kv-handoff", "roundtrip"):
        st = dev.stream(PROMPT, mode=mode, client=client, max_tokens=12, chat=False)
        pieces = list(st)
        assert st.generation.tokens == ref.tokens, mode
        assert "".join(pieces) == ref.text


@pytest.mark.parametrize("via", ["grpc", "emulated-link"])
@pytest.mark.parametrize("how", ["break", "deadline"])
def test_cancel_stops_the_server_within_a_token_and_frees_the_session(served, how, via):
    task, dev, client = served
    if via == "emulated-link":  # collab.net.LinkClient: its cancel() closes the server session first
        from collab.net import LinkClient

        client = LinkClient([task], rtt_s=0.004)
    h = _Hooked(task, lambda k: time.sleep(0.05))  # slow tokens: the cancel lands mid-generation
    try:
        if how == "break":
            st = dev.stream(PROMPT, mode="kv-handoff", client=client, max_tokens=200, chat=False)
            n = 0
            for _ in st:
                n += 1
                if n == 3:
                    break
            st.close()
            g = st.generation
            assert g.stop == "cancelled" and g.n_generated == 3
        else:
            g = dev.generate(PROMPT, mode="kv-handoff", client=client, max_tokens=200, chat=False, deadline_s=0.3)
            assert g.stop == "deadline"
        assert _wait_freed(task), "the server kept the session after the client stopped"
        stopped_at = h.decoded
        time.sleep(0.3)
        assert h.decoded == stopped_at  # nothing decodes after the session is freed
    finally:
        h.undo()
    # within one token of the stop: at most the token in flight and the one being decoded
    assert stopped_at <= g.n_generated + 2 < 200


def test_generator_replies_work_in_process_too():
    from collab.transport.inproc import InprocClient

    task, dev = tiny_task_and_device()
    ref = dev.generate(PROMPT, mode="device-only", max_tokens=6, chat=False)
    g = dev.generate(PROMPT, mode="kv-handoff", client=InprocClient([task]), max_tokens=6, chat=False)
    assert g.tokens == ref.tokens and task.open_sessions() == 0


def test_c_api_stream_callback_full_and_split():
    from collab.llm.runtime import Model

    task, dev = tiny_task_and_device()
    ref = dev.generate(PROMPT, mode="device-only", max_tokens=8, chat=False)
    toks = dev.full.tokenize(PROMPT)
    got = []
    with dev.full.session("full", n_ctx=256) as s:
        n = s.decode_stream(toks, 8, lambda t, piece: got.append((t, piece)))
    assert n == len(got) == ref.n_generated and [t for t, _ in got] == ref.tokens
    assert b"".join(p for t, p in got if not dev.full.is_eog(t)).decode("utf-8", "replace") == ref.text
    # head + tail sessions: the split loop gives the same tokens
    split = []
    head, tail = Model(task.head.path), Model(task.tail.path)
    with head.session("head", n_ctx=256) as hs, tail.session("tail", n_ctx=256) as ts:
        hs.decode_stream(toks, 8, lambda t, p: split.append(t), tail=ts)
    assert split == ref.tokens
    # the callback stops it (cancellation), and its exception reaches the caller
    stop = []
    with dev.full.session("full", n_ctx=256) as s:
        assert s.decode_stream(toks, 8, lambda t, p: stop.append(t) or len(stop) == 2) == 2
    assert stop == ref.tokens[:2]

    def boom(t, p):
        raise KeyError("from the callback")
    with dev.full.session("full", n_ctx=256) as s:
        with pytest.raises(KeyError, match="from the callback"):
            s.decode_stream(toks, 8, boom)
    with dev.full.session("full", n_ctx=256) as s, pytest.raises(ValueError):
        s.decode_stream(toks, 0, lambda t, p: None)
    assert tiny_model(4).exists()


@pytest.mark.parametrize("how", ["stop", "drain"])
def test_server_stop_or_drain_mid_stream_returns(how):
    """Stopping (or draining with a short deadline) a server while a session is streaming
    returns within the grace period plus one token; the device's stream ends with an error,
    it does not hang; the session's native state is freed."""
    from collab.transport import Client, Server

    task, dev = tiny_task_and_device(n_ctx=1024)
    srv = Server([task], port=0).start()
    client = Client(srv.address, timeout=60)
    hook = _Hooked(task, lambda k: time.sleep(0.05))  # ~20 tokens/s: the stream lasts ~50 s
    started, result = threading.Event(), {}

    def run():
        try:
            for _ in dev.stream(PROMPT, mode="kv-handoff", client=client, max_tokens=1000, ignore_eog=True):
                started.set()
            result["end"] = "completed"
        except Exception as e:  # the stream failing is the expected end
            result["end"] = type(e).__name__

    th = threading.Thread(target=run, daemon=True)
    th.start()
    try:
        assert started.wait(60)
        t0 = time.monotonic()
        if how == "stop":
            srv.stop(grace=0.5)
        else:
            srv.drain(timeout=0.5)
        took = time.monotonic() - t0
        th.join(30)
        assert not th.is_alive(), "the device's stream hangs after the server stopped"
        assert result["end"] != "completed"
        assert took < 15, f"{how} took {took:.1f} s"
        assert _wait_freed(task, 10)
    finally:
        hook.undo()
        client.close()
        srv.stop(grace=0)
