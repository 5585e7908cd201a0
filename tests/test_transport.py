"""The gRPC transport: contract, errors, limits, back-pressure, sessions, auth, TLS, CLI."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

grpc = pytest.importorskip("grpc", reason="grpcio not installed (pip install grpcio)")

import collab  # noqa: E402
import collab.codec  # noqa: E402
from collab.transport import (InprocClient, InvalidRequest, Server, ServerBusy, TaskHandler,  # noqa: E402
                              TaskSession, TransportError, Unauthenticated)
from collab.transport.builtin import CodecStatsHandler, EchoHandler  # noqa: E402
from tls_certs import self_signed  # noqa: E402


def wait_until(cond, timeout=10.0, what="condition"):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def server():
    with Server([EchoHandler(), CodecStatsHandler()], port=0, workers=2) as srv:
        yield srv


@pytest.fixture
def client(server):
    with collab.Client(server.address, timeout=20) as c:
        yield c


# ---- basic contract -------------------------------------------------------------------------

def test_import_collab_does_not_need_grpc():
    code = ("import sys, collab, collab.transport.handlers, collab.transport.inproc; "
            "assert 'grpc' not in sys.modules, 'grpc imported'; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.dirname(__file__))
    assert r.returncode == 0, r.stderr
    assert collab.Client is collab.transport.Client


def test_proto_stubs_are_up_to_date():
    pytest.importorskip("grpc_tools", reason="grpcio-tools not installed")
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    script = root / "scripts" / "gen_proto.py"
    if not script.exists():
        pytest.skip("source tree not available")
    r = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    # and the installed copy is the committed one
    import collab.transport._proto.collab_pb2 as pb
    assert pathlib.Path(pb.__file__).read_text() == (root / "python/collab/transport/_proto/collab_pb2.py").read_text()


def test_echo_roundtrip_and_reserved_meta(client, rng):
    payload = rng.bytes(int(rng.integers(0, 5000)))
    out, meta, tim = client.infer("echo", payload, {"model": "m1", "split": "7", "request_id": "r-1", "x": "é"})
    assert out == payload
    assert meta["model"] == "m1" and meta["split"] == "7" and meta["request_id"] == "r-1" and meta["x"] == "é"
    assert meta["echo.bytes"] == str(len(payload))
    check_timings(tim)


def check_timings(tim):
    """The timing breakdown adds up: every key present and finite, the server's parts inside the
    server time, and (echo reports no codec time of its own) transfer + server + client
    encode/decode = total, as the client documents."""
    assert set(tim) >= {"queue", "compute", "decode", "encode", "transfer", "server", "total"}
    assert all(np.isfinite(v) for v in tim.values()), tim
    assert tim["total"] >= tim["server"] >= tim["queue"] + tim["compute"] - 1e-9, tim
    assert tim["transfer"] + tim["server"] + tim["encode"] + tim["decode"] == pytest.approx(tim["total"]), tim


def test_empty_payload_and_no_meta(client):
    out, meta, _ = client.infer("echo", b"")
    assert out == b"" and meta["echo.bytes"] == "0" and "split" not in meta and "model" not in meta


def test_codec_stats_matches_local_decode(client, rng):
    x = rng.standard_normal((3, 17, 5)).astype(np.float32)
    frame = collab.codec.encode(x, 0.6, blocks=(2, 2), qbits=(8, 4))
    out, meta, tim = client.infer("codec-stats", frame, {"split": "4"})
    stats = json.loads(out)
    y = collab.codec.decode(frame).astype(np.float64)
    assert stats["shape"] == [3, 17, 5] and stats["nonzeros"] == np.count_nonzero(y)
    assert stats["l2"] == pytest.approx(float(np.sqrt((y * y).sum())), rel=1e-9)
    assert stats["mean"] == pytest.approx(float(y.mean()), rel=1e-9, abs=1e-12)
    assert meta["content-type"] == "application/json" and "collab.decode_s" not in meta
    assert tim["decode"] > 0  # the task reported its decode time


def test_infer_array_adds_device_encode(client, rng):
    x = rng.standard_normal((8, 32)).astype(np.float32)
    out, _, tim = client.infer_array("codec-stats", x, sparsity=0.5)
    assert json.loads(out)["elements"] == 256
    assert tim["device_encode"] > 0 and tim["encode"] >= tim["device_encode"]


def test_unknown_task_and_bad_meta(client):
    with pytest.raises(TransportError) as e:
        client.infer("nope", b"x")
    assert e.value.code == "NOT_FOUND" and "echo" in e.value.details
    with pytest.raises(ValueError):
        client.infer("echo", b"x", {"split": "seven"})
    with pytest.raises(ValueError):
        client.infer("echo", b"x", {"a": 1})
    with pytest.raises(ValueError):
        client.infer("echo", "not bytes")


def test_malformed_frame_is_invalid_argument_and_server_keeps_serving(client, rng):
    x = rng.standard_normal(100).astype(np.float32)
    frame = bytearray(collab.codec.encode(x, 0.5))
    frame[len(frame) // 2] ^= 0xFF
    for bad in (b"", b"garbage", bytes(frame), bytes(frame[:20])):
        with pytest.raises(InvalidRequest) as e:
            client.infer("codec-stats", bad)
        assert e.value.code == "INVALID_ARGUMENT"
        assert isinstance(e.value, ValueError)
    assert client.infer("echo", b"alive")[0] == b"alive"


def test_non_protobuf_request_is_invalid_argument(server):
    with grpc.insecure_channel(server.address) as ch:
        raw = ch.unary_unary("/collab.v1.Collab/Infer")
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\xff\xff\xff\xff not a protobuf", timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with collab.Client(server.address) as c:
        assert c.health()["status"] == "SERVING"


class Boom(TaskHandler):
    name = "boom"

    def infer(self, payload, meta):
        raise RuntimeError("kaput")


def test_task_crash_is_internal_and_server_keeps_serving():
    with Server([Boom(), EchoHandler()], port=0, workers=1) as srv, collab.Client(srv.address) as c:
        with pytest.raises(TransportError) as e:
            c.infer("boom", b"x")
        assert e.value.code == "INTERNAL" and "kaput" in e.value.details
        assert c.infer("echo", b"y")[0] == b"y"


def test_max_message_size():
    with Server([EchoHandler()], port=0, workers=1, max_message_bytes=64 * 1024) as srv, \
            collab.Client(srv.address) as c:
        assert c.infer("echo", b"a" * 1000)[0] == b"a" * 1000
        with pytest.raises(ServerBusy) as e:
            c.infer("echo", b"a" * 100_000)
        assert e.value.code == "RESOURCE_EXHAUSTED"
        assert c.infer("echo", b"ok")[0] == b"ok"


def test_server_rejects_bad_configuration():
    with pytest.raises(ValueError):
        Server([EchoHandler(), EchoHandler()])
    with pytest.raises(ValueError):
        Server([EchoHandler()], workers=0)
    with pytest.raises(ValueError):
        Server([EchoHandler()], tls_cert=b"x")
    with pytest.raises(ValueError):
        Server([EchoHandler()], auth_token="")


# ---- concurrency -----------------------------------------------------------------------------

class Gate(TaskHandler):
    """Blocks every request until released; counts the ones inside."""
    name = "gate"

    def __init__(self):
        self.release = threading.Event()
        self.inside = 0
        self.lock = threading.Lock()

    def infer(self, payload, meta):
        with self.lock:
            self.inside += 1
        try:
            if not self.release.wait(30):
                raise RuntimeError("gate never released")
            return payload, {}
        finally:
            with self.lock:
                self.inside -= 1


class Rendezvous(TaskHandler):
    """Succeeds only if `n` requests are inside at the same time (i.e. served in parallel)."""
    name = "rendezvous"

    def __init__(self, n):
        self.barrier = threading.Barrier(n, timeout=20)

    def infer(self, payload, meta):
        self.barrier.wait()
        return payload, {}


def test_requests_are_served_in_parallel_up_to_workers():
    n = 3
    with Server([Rendezvous(n)], port=0, workers=n) as srv, collab.Client(srv.address, timeout=30) as c:
        results, errors = [], []

        def go(i):
            try:
                results.append(c.infer("rendezvous", bytes([i]))[0])
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
        ts = [threading.Thread(target=go, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(40)
        assert not errors, errors
        assert sorted(results) == [bytes([i]) for i in range(n)]


def test_backpressure_queue_then_resource_exhausted():
    gate = Gate()
    with Server([gate, EchoHandler()], port=0, workers=1, max_queue=2) as srv, \
            collab.Client(srv.address, timeout=30) as c:
        results, errors = [], []

        def go(i):
            try:
                results.append(c.infer("gate", bytes([i]))[0])
            except Exception as e:
                errors.append(e)
        ts = [threading.Thread(target=go, args=(i,)) for i in range(3)]
        for t in ts:
            t.start()
        wait_until(lambda: srv.stats()["running"] == 1 and srv.stats()["queued"] == 2, what="1 running + 2 queued")
        assert gate.inside == 1
        # full: the next request is refused at once, with a clear status
        with pytest.raises(ServerBusy) as e:
            c.infer("echo", b"x")
        assert "busy" in e.value.details
        h = c.health()
        assert h["running"] == 1 and h["queued"] == 2 and h["rejected"] == 1
        gate.release.set()
        for t in ts:
            t.join(30)
        assert not errors and sorted(results) == [b"\x00", b"\x01", b"\x02"]  # queued ones were answered
        assert c.infer("echo", b"x")[0] == b"x"


def test_cancelled_queued_request_frees_its_slot():
    gate = Gate()
    with Server([gate, EchoHandler()], port=0, workers=1, max_queue=1) as srv, \
            collab.Client(srv.address) as c:
        t = threading.Thread(target=lambda: c.infer("gate", b"a", timeout=30))
        t.start()
        wait_until(lambda: srv.stats()["running"] == 1, what="running")
        with pytest.raises(TransportError) as e:
            c.infer("gate", b"b", timeout=0.5)  # queued, then its deadline passes
        assert e.value.code == "DEADLINE_EXCEEDED"
        wait_until(lambda: srv.stats()["queued"] == 0, what="queue slot released")
        gate.release.set()
        t.join(30)
        assert gate.inside == 0


# ---- sessions --------------------------------------------------------------------------------

class Tracked(TaskHandler):
    """Sessions that record being closed and may hold memory."""
    name = "tracked"

    def __init__(self):
        self.sessions = []

    def open_session(self, meta):
        if meta.get("fail") == "1":
            raise ValueError("refused by task")
        s = TrackedSession(meta)
        self.sessions.append(s)
        return s


class TrackedSession(TaskSession):
    def __init__(self, meta):
        self.meta = meta
        self.closed = threading.Event()
        self.held = []
        self.close_calls = 0

    def on_message(self, kind, payload, meta):
        if kind == "hold":
            self.held.append(bytes(payload))
            return [("held", str(self.nbytes()).encode(), {})]
        if kind == "bad":
            raise ValueError("bad message")
        return [(kind + "-1", payload, meta), (kind + "-2", b"", {"n": str(len(payload))})]

    def nbytes(self):
        return sum(len(h) for h in self.held)

    def close(self):
        self.close_calls += 1
        self.held.clear()
        self.closed.set()


@pytest.fixture
def tracked_server():
    h = Tracked()
    with Server([h, EchoHandler()], port=0, workers=2, session_max_bytes=10_000, session_idle_s=1.5,
                max_sessions=3, max_sessions_per_client=3) as srv:
        yield srv, h


def test_session_messages_in_order_and_closed_on_exit(tracked_server):
    srv, h = tracked_server
    with collab.Client(srv.address) as c:
        with c.session("tracked", {"model": "m", "k": "v"}) as s:
            for i in range(5):
                seq = s.send("step", bytes([i]) * i, {"i": str(i)})
                assert seq == i + 1
            for i in range(5):
                assert s.recv(10) == ("step-1", bytes([i]) * i, {"i": str(i)})
                assert s.recv(10) == ("step-2", b"", {"n": str(i)})
            check_timings(s.last_timings)
        # the server adds who opened the session (the peer host), for per-client quotas
        assert h.sessions[-1].meta == {"model": "m", "k": "v", "request_id": s.request_id,
                                       "collab.identity": "127.0.0.1"}
        assert h.sessions[-1].closed.wait(10)
        assert h.sessions[-1].close_calls == 1
        wait_until(lambda: srv.stats()["sessions"] == 0, what="session count back to 0")


def test_session_closed_when_client_cancels(tracked_server):
    srv, h = tracked_server
    with collab.Client(srv.address) as c:
        s = c.session("tracked")
        s.send("step", b"x")
        assert s.recv(10)[0] == "step-1"
        s.cancel()
        assert h.sessions[-1].closed.wait(10)


def test_session_closed_when_client_process_dies(tracked_server):
    srv, h = tracked_server
    n0 = len(h.sessions)
    code = ("import sys, collab, time; c = collab.Client(sys.argv[1]); s = c.session('tracked'); "
            "s.send('step', b'x'); s.recv(10); print('ready', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, srv.address], stdout=subprocess.PIPE, text=True,
                         cwd=os.path.dirname(__file__))
    try:
        assert p.stdout.readline().strip() == "ready"
        wait_until(lambda: len(h.sessions) > n0, what="session opened")
        sess = h.sessions[n0]
        assert not sess.closed.is_set()
        p.kill()  # no goodbye: the TCP connection just drops
        p.wait(10)
        assert sess.closed.wait(15), "session not closed after the client died"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_session_idle_timeout(tracked_server):
    srv, h = tracked_server
    with collab.Client(srv.address) as c:
        s = c.session("tracked")
        with pytest.raises(TransportError) as e:
            s.recv(20)  # we send nothing: the server gives up after session_idle_s
        assert e.value.code == "DEADLINE_EXCEEDED" and "idle" in e.value.details
        assert h.sessions[-1].closed.wait(10)


def test_session_memory_limit(tracked_server):
    srv, h = tracked_server
    with collab.Client(srv.address) as c:
        s = c.session("tracked")
        s.send("hold", b"a" * 6000)
        assert s.recv(10) == ("held", b"6000", {})
        s.send("hold", b"a" * 6000)
        with pytest.raises(ServerBusy) as e:
            s.recv(10)
        assert "limit" in e.value.details
        assert h.sessions[-1].closed.wait(10)


def test_session_errors(tracked_server):
    srv, h = tracked_server
    with collab.Client(srv.address) as c:
        with pytest.raises(InvalidRequest):
            c.session("tracked", {"fail": "1"})
        with pytest.raises(TransportError) as e:
            c.session("missing")
        assert e.value.code == "NOT_FOUND"
        s = c.session("tracked")
        s.send("bad", b"")
        with pytest.raises(InvalidRequest):
            s.recv(10)
        assert h.sessions[-1].closed.wait(10)
        with pytest.raises(ValueError):
            s.send("collab.open", b"")  # reserved kinds
        assert c.infer("echo", b"still here")[0] == b"still here"


def test_max_sessions(tracked_server):
    srv, h = tracked_server
    with collab.Client(srv.address) as c:
        open_ = [c.session("tracked") for _ in range(3)]
        with pytest.raises(ServerBusy):
            c.session("tracked")
        for s in open_:
            s.close()
        wait_until(lambda: srv.stats()["sessions"] == 0, what="sessions closed")
        with c.session("tracked") as s:
            s.send("step", b"z")
            assert s.recv(10)[1] == b"z"


def test_sessions_closed_at_server_stop():
    h = Tracked()
    srv = Server([h], port=0, workers=1).start()
    c = collab.Client(srv.address)
    s = c.session("tracked")
    s.send("step", b"q")
    s.recv(10)
    srv.stop(grace=0.5)
    assert h.sessions[0].closed.wait(10)
    c.close()


# ---- auth and TLS ----------------------------------------------------------------------------

def test_bearer_token():
    with Server([EchoHandler()], port=0, workers=1, auth_token="s3cret") as srv:
        with collab.Client(srv.address, auth_token="s3cret") as good:
            assert good.infer("echo", b"a")[0] == b"a"
            with good.session("echo") as s:
                s.send("m", b"b")
                assert s.recv(10)[1] == b"b"
        for token in (None, "wrong", "s3cret "):
            with collab.Client(srv.address, auth_token=token) as bad:
                with pytest.raises(Unauthenticated):
                    bad.infer("echo", b"a")
                with pytest.raises(Unauthenticated):
                    bad.session("echo")
                assert bad.health()["status"] == "SERVING"  # health needs no token
        assert srv.stats()["unauthenticated"] == 6


def test_tls(tmp_path):
    cert, key = self_signed(tmp_path)
    with Server([EchoHandler()], "127.0.0.1", 0, workers=1, tls_cert=str(cert), tls_key=str(key),
                auth_token="t") as srv:
        target = f"localhost:{srv.port}"
        with collab.Client(target, auth_token="t", tls_ca=str(cert), timeout=10) as c:
            assert c.infer("echo", b"secure")[0] == b"secure"
        with collab.Client(target, auth_token="t", timeout=3) as plain:  # no TLS: cannot talk
            with pytest.raises(TransportError) as e:
                plain.infer("echo", b"x")
            assert e.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


# ---- in-process loopback parity ----------------------------------------------------------------

def test_inproc_matches_grpc(client, rng):
    ip = InprocClient([EchoHandler(), CodecStatsHandler()])
    x = rng.standard_normal((4, 33)).astype(np.float32)
    frame = collab.codec.encode(x, 0.3)
    for task, payload, meta in (("echo", b"abc", {"split": "03", "model": "", "z": "1", "request_id": "q"}),
                                ("codec-stats", frame, {"request_id": "q2"})):
        a = client.infer(task, payload, meta)
        b = ip.infer(task, payload, meta)
        assert a[0] == b[0] and a[1] == b[1]
        assert set(a[2]) == set(b[2])
    for c in (client, ip):
        with pytest.raises(InvalidRequest):
            c.infer("codec-stats", b"junk")
        with pytest.raises(TransportError) as e:
            c.infer("nope", b"")
        assert e.value.code == "NOT_FOUND"
    h = Tracked()
    ip2 = InprocClient([h])
    with ip2.session("tracked", {"k": "v"}) as s:
        s.send("step", b"hi", {"split": "2"})
        assert s.recv() == ("step-1", b"hi", {"split": "2"})
        assert s.recv() == ("step-2", b"", {"n": "2"})
        with pytest.raises(TimeoutError):
            s.recv()
    assert h.sessions[0].close_calls == 1


# ---- CLI ---------------------------------------------------------------------------------------

def test_collab_serve_cli(tmp_path):
    port_file = tmp_path / "port"
    token = tmp_path / "token"
    token.write_text("tok\n")
    cmd = [sys.executable, "-m", "collab.cli", "serve", "--port", "0", "--port-file", str(port_file),
           "--task", "echo", "--task", "stats=collab.transport.builtin:CodecStatsHandler",
           "--task-arg", "stats.max_elements=1000", "--workers", "2", "--auth-token-file", str(token)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    try:
        wait_until(lambda: port_file.exists() or p.poll() is not None, timeout=30, what="server start")
        assert p.poll() is None, p.stderr.read()
        with collab.Client(f"127.0.0.1:{port_file.read_text()}", auth_token="tok") as c:
            assert c.infer("echo", b"cli")[0] == b"cli"
            small = collab.codec.encode(np.ones(10, np.float32), 0.0)
            assert json.loads(c.infer("stats", small)[0])["elements"] == 10
            big = collab.codec.encode(np.ones(2000, np.float32), 0.0)
            with pytest.raises(InvalidRequest):  # max_elements=1000 reached the factory
                c.infer("stats", big)
            assert sorted(c.health()["tasks"]) == ["echo", "stats"]
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
        err = p.stderr.read()
        assert "infer task=echo" in err and "compute=" in err  # per-request timing log
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_collab_serve_cli_bad_task(tmp_path):
    r = subprocess.run([sys.executable, "-m", "collab.cli", "serve", "--port", "0", "--task", "x=nosuchmod:f"],
                       capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert r.returncode == 2 and "cannot load" in r.stderr


def test_session_max_age():
    h = Tracked()
    with Server([h], port=0, workers=1, session_idle_s=30, session_max_s=0.8) as srv, \
            collab.Client(srv.address) as c:
        s = c.session("tracked")
        with pytest.raises(TransportError) as e:
            for _ in range(200):  # keep it busy (never idle) until it is too old
                s.send("step", b"x")
                s.recv(10)
                s.recv(10)
                time.sleep(0.05)
        assert e.value.code == "DEADLINE_EXCEEDED" and "older" in e.value.details
        assert h.sessions[0].closed.wait(10)


# ---- one client interface ----------------------------------------------------------------------

def test_every_client_implements_the_one_interface(server, rng):
    from collab.net import LinkClient
    from collab.transport.base import ClientBase, ClientSessionBase

    payload = rng.bytes(300)
    clients = [collab.Client(server.address, timeout=20), InprocClient([EchoHandler()]),
               LinkClient([EchoHandler()], rtt_s=0.002, bandwidth_bps=50e6)]
    for c in clients:
        assert isinstance(c, ClientBase), type(c)
        with c:
            out, meta, tim = c.infer("echo", payload, {"k": "v"})
            assert out == payload and meta["k"] == "v" and meta["echo.bytes"] == "300", type(c)
            assert set(tim) >= {"queue", "compute", "decode", "encode", "transfer", "server", "total"}
            with c.session("echo", {}) as s:
                assert isinstance(s, ClientSessionBase)
                s.send("m", b"abc", {"i": "1"})
                assert s.recv(10) == ("echo", b"abc", {"i": "1"}), type(c)
            h = c.health()
            assert h["status"] == "SERVING" and "echo" in h["tasks"] and h["served"] >= 1, (type(c), h)
            with pytest.raises(TransportError) as e:
                c.infer("no-such-task", b"")
            assert e.value.code == "NOT_FOUND", type(c)
    # the emulated link really delays: its transfer time is at least the RTT it emulates
    assert tim["transfer"] >= 0.002


class Ticker(TaskHandler):
    """A streaming task: on_message returns a generator yielding one "tick" per step, up to
    meta n. Each step first takes a permit from `gate` (the test gives one per tick it has
    received), so the task is never more than one step ahead of the client whatever the load."""

    name = "ticker"

    def __init__(self):
        self.steps = 0
        self.gate = threading.Semaphore(1)
        self.closed = threading.Event()
        self.close_calls = 0

    def open_session(self, meta):
        outer = self

        class S(TaskSession):
            def __init__(self):
                self._closed = False

            def on_message(self, kind, payload, meta):
                def gen():
                    for i in range(int(meta["n"])):
                        outer.gate.acquire(timeout=10)
                        if self._closed:  # like the LLM task: checks for close before each step
                            return
                        outer.steps += 1
                        yield "tick", b"", {"i": str(i)}
                return gen()

            def close(self):
                self._closed = True
                outer.close_calls += 1
                outer.closed.set()
                outer.gate.release()  # wake a step waiting for its permit
        return S()


@pytest.mark.parametrize("kind", ["grpc", "link"])
def test_cancel_stops_a_streaming_task_within_a_step(kind):
    from collab.net import LinkClient

    h = Ticker()
    srv = Server([h], port=0, workers=2).start() if kind == "grpc" else None
    c = collab.Client(srv.address, timeout=20) if srv else LinkClient([h], rtt_s=0.004)
    try:
        s = c.session("ticker", {})
        s.send("go", b"", {"n": "1000"})
        for i in range(3):
            assert s.recv(10)[2] == {"i": str(i)}
            h.gate.release()
        s.cancel()
        assert h.closed.wait(10), "cancel() did not close the server session"
        time.sleep(0.2)
        # the step the last permit allowed may have run; nothing after the close
        assert h.steps in (3, 4) and h.close_calls == 1, (h.steps, h.close_calls)
        if kind == "link":
            with pytest.raises(TransportError) as e:
                s.recv(1)
            assert e.value.code == "CANCELLED"
            with pytest.raises(ValueError):
                s.send("go", b"", {"n": "1"})
            s.close()  # after cancel: nothing more to do
            assert h.close_calls == 1
    finally:
        c.close()
        if srv:
            srv.stop()


def test_client_does_not_import_server_modules():
    code = ("import sys, collab.transport.client; "
            "bad = [m for m in ('collab.transport.server', 'collab.transport.handlers', 'collab.transport.builtin') "
            "if m in sys.modules]; assert not bad, bad; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.dirname(__file__))
    assert r.returncode == 0, r.stderr
