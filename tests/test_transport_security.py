"""Attacks on the transport and what each one gets now. Every test is one row of the table in
docs/security.md (the counts there are the ones asserted here). Memory-heavy attacks run
against a server in a child process."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest

grpc = pytest.importorskip("grpc", reason="grpcio not installed (pip install grpcio)")

import collab  # noqa: E402
import collab.codec  # noqa: E402
from collab.errors import InvalidArgument  # noqa: E402
from collab.transport import InvalidRequest, Server, ServerBusy, TransportError, Unauthenticated  # noqa: E402
from collab.transport import _wire as w  # noqa: E402
from collab.transport import security  # noqa: E402
from collab.transport.builtin import CodecStatsHandler, EchoHandler  # noqa: E402
from collab.transport.handlers import ResourceBusy, TaskHandler, TaskSession  # noqa: E402
from tls_certs import self_signed  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def serve_cli(*args, env=None):
    """`collab serve` with arguments that must make it exit at once."""
    return subprocess.run([sys.executable, "-m", "collab.cli", "serve", "--port", "0", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=HERE)


# ---- fail-open configuration -------------------------------------------------------------------

def test_cli_refuses_fail_open_configuration(tmp_path):
    cert, key = self_signed(tmp_path)
    _, other_key = self_signed(tmp_path, "other-")
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    env_empty = dict(os.environ, COLLAB_AUTH_TOKEN="")
    cases = [
        (["--auth-token", ""], None, "empty"),
        ([], env_empty, "COLLAB_AUTH_TOKEN: the auth token is empty"),
        (["--auth-token-file", str(tmp_path / "missing")], None, "cannot read token file"),
        (["--auth-token-file", str(empty)], None, "empty"),
        (["--auth-token", "a", "--auth-token-file", str(token)], None, "not both"),
        (["--auth-token", "tab\tinside"], None, "printable ASCII"),
        (["--tls-cert", str(key), "--tls-key", str(cert)], None, "swapped"),
        (["--tls-cert", str(cert), "--tls-key", str(other_key)], None, "does not match"),
        (["--tls-cert", str(cert)], None, "both --tls-cert and --tls-key"),
        (["--tls-cert", str(token), "--tls-key", str(key)], None, "not a PEM certificate"),
        (["--port", "99999"], None, "0..65535"),
        (["--port", "-1"], None, "0..65535"),
    ]
    for args, env, want in cases:
        r = serve_cli(*args, env=env)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert want in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr, (args, r.stderr)
    # the library refuses the same things
    with pytest.raises(ValueError, match="0..65535"):
        Server([EchoHandler()], port=99999)
    with pytest.raises(ValueError, match="swapped"):
        Server([EchoHandler()], tls_cert=key.read_bytes(), tls_key=cert.read_bytes())


def test_several_authorization_headers_are_refused():
    with Server([EchoHandler()], port=0, workers=1, auth_token="right") as srv:
        ch = grpc.insecure_channel(srv.address)
        call = ch.unary_unary(w.INFER)
        req = w.make_frame(task="echo", payload=b"x").SerializeToString()
        right, wrong = ("authorization", "Bearer right"), ("authorization", "Bearer wrong")
        assert w.parse_frame(call(req, metadata=(right,), timeout=20)).payload == b"x"
        for md in ((right, wrong), (wrong, right), (right, right)):
            with pytest.raises(grpc.RpcError) as e:
                call(req, metadata=md, timeout=20)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and "several" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            call(req, metadata=(wrong,), timeout=20)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ch.close()
        assert srv.stats()["unauthenticated"] == 4 and srv.stats()["served"] == 1


def test_exposed_server_warns_loudly(capfd):
    warn = security.exposure_warning
    assert warn("127.0.0.1", False, False) is None and warn("::1", False, False) is None
    assert warn("localhost", False, False) is None and warn("0.0.0.0", True, True) is None
    msg = warn("0.0.0.0", False, False)
    assert msg.startswith("WARNING") and "TLS and an auth token" in msg
    assert "an auth token" in warn("10.1.2.3", True, False) and "TLS" in warn("[::]", False, True)
    with Server([EchoHandler()], "0.0.0.0", 0, workers=1):
        pass
    assert "WARNING: collab server bound to 0.0.0.0" in capfd.readouterr().err
    with Server([EchoHandler()], "127.0.0.1", 0, workers=1):
        pass
    assert "WARNING" not in capfd.readouterr().err


# ---- truthful metrics ----------------------------------------------------------------------------

class Amplify(TaskHandler):
    """Sessions answer three times what they get."""
    name = "amplify"

    def open_session(self, meta):
        s = TaskSession()
        s.on_message = lambda kind, payload, meta: [("x3", payload * 3, {})]
        return s


def test_reply_over_the_message_limit_is_an_error_not_served():
    with Server([EchoHandler(), Amplify()], port=0, workers=1, max_message_bytes=64 * 1024) as srv, \
            collab.Client(srv.address, timeout=20) as c:
        with pytest.raises(ServerBusy) as e:
            c.infer("echo", b"", {"echo.reply_bytes": str(100_000)})
        assert e.value.code == "RESOURCE_EXHAUSTED" and "exceeds" in e.value.details
        with c.session("amplify") as s:
            s.send("m", b"a" * 30_000)
            with pytest.raises(ServerBusy):
                s.recv(20)
        assert c.infer("echo", b"ok")[0] == b"ok"
        st = srv.stats()
        assert st["reply_too_large"] == 2 and st["served"] == 1


# ---- codec-stats memory ----------------------------------------------------------------------------

def test_codec_stats_bounds_decoded_bytes_per_request_and_per_server():
    h = CodecStatsHandler(max_decoded_bytes=1 << 20, budget_bytes=3 << 20)
    small = collab.codec.encode(np.zeros((256, 256), np.float32), 0.9)   # 256 KiB decoded
    big = collab.codec.encode(np.zeros((1024, 1024), np.float32), 0.9)   # 4 MiB decoded
    with Server([h], port=0, workers=1) as srv, collab.Client(srv.address, timeout=20) as c:
        assert json.loads(c.infer("codec-stats", small)[0])["elements"] == 256 * 256
        with pytest.raises(InvalidRequest, match="limit per request"):
            c.infer("codec-stats", big)
        h.budget.reserve((3 << 20) - (100 << 10))  # the rest of the server is busy decoding
        with pytest.raises(ServerBusy, match="decode budget"):
            c.infer("codec-stats", small)
        h.budget.release((3 << 20) - (100 << 10))
        assert json.loads(c.infer("codec-stats", small)[0])["elements"] == 256 * 256
        assert h.budget.used == 0 and h.budget.refused == 1 and h.budget.peak <= 3 << 20
        assert srv.stats()["rejected"] == 1 and srv.stats()["invalid"] == 1


_MEM_SERVER = r"""
import gc, json, sys, tracemalloc
tracemalloc.start()
gc.disable()  # a buffer kept alive by a reference cycle stays: what the test looks for
from collab.transport import Server
from collab.transport.builtin import CodecStatsHandler
from collab.transport.handlers import TaskHandler

class Mem(TaskHandler):
    name = "mem"
    def infer(self, payload, meta):
        cur, peak = tracemalloc.get_traced_memory()
        return json.dumps({"current": cur, "peak": peak}).encode(), {}

srv = Server([CodecStatsHandler(), Mem()], port=0, workers=2).start()
print(srv.port, flush=True)
sys.stdin.read()
srv.stop()
"""


@pytest.fixture
def mem_server():
    p = subprocess.Popen([sys.executable, "-c", _MEM_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, cwd=HERE)
    try:
        port = int(p.stdout.readline())
        with collab.Client(f"127.0.0.1:{port}", timeout=60) as c:
            yield c
    finally:
        p.stdin.close()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def traced(c):
    return json.loads(c.infer("mem", b"")[0])["current"]


def test_codec_stats_sessions_and_rejects_hold_no_decoded_memory(mem_server):
    c = mem_server
    mib = 1 << 20
    frame = collab.codec.encode(np.zeros((2048, 2048), np.float32), 0.99)  # decodes to 16 MiB
    base = traced(c)
    # many sessions, one huge-decoding frame each: a client gets its quota (16 of 64), the rest
    # RESOURCE_EXHAUSTED, and the open ones keep counters only
    opened, refused = [], 0
    for _ in range(48):
        try:
            opened.append(c.session("codec-stats"))
        except ServerBusy:
            refused += 1
    assert (len(opened), refused) == (16, 32)
    for s in opened:
        s.send("frame", frame)
        assert json.loads(s.recv(60)[1])["elements"] == 2048 * 2048
    held = traced(c) - base
    assert held < 8 * mib, f"{held / mib:.1f} MiB held by 16 idle sessions"
    for s in opened:
        s.close()
    # rejected hostile frames: a valid header and checksum, broken CSR rows, so the decoder
    # allocates the 16 MiB output and fails after; nothing may stay allocated
    x = np.zeros((2048, 2048), np.float32)
    x.flat[::65536] = 1.0
    good = collab.codec.encode(x, 0.99999, index_code="csr")
    bad = bytearray(good)
    bad[collab.codec.inspect(good)["header_bytes"]] ^= 0xFF
    bad[-4:] = zlib.crc32(bytes(bad[:-4])).to_bytes(4, "little")  # the frame's CRC-32 trailer
    with pytest.raises(ValueError, match="CSR"):
        collab.codec.decode(bytes(bad))  # fails in the body, after the header was accepted
    for _ in range(30):
        with pytest.raises(InvalidRequest, match="CSR"):
            c.infer("codec-stats", bytes(bad))
    held = traced(c) - base
    assert held < 8 * mib, f"{held / mib:.1f} MiB left after 30 rejected frames"


# ---- slots -------------------------------------------------------------------------------------------

class Idle(TaskHandler):
    """Sessions that do nothing but record being closed; infer answers at once."""
    name = "idle"

    def __init__(self):
        self.closed = []

    def open_session(self, meta):
        ev = threading.Event()
        self.closed.append(ev)
        s = TaskSession()
        s.on_message = lambda kind, payload, meta: [(kind, payload, {})]
        s.close = ev.set
        return s

    def infer(self, payload, meta):
        return payload, {}


class Busy(TaskHandler):
    name = "busy"

    def infer(self, payload, meta):
        raise ResourceBusy("all model slots taken")


def test_busy_task_is_resource_exhausted():
    with Server([Busy()], port=0, workers=1) as srv, collab.Client(srv.address, timeout=20) as c:
        with pytest.raises(ServerBusy) as e:
            c.infer("busy", b"")
        assert e.value.code == "RESOURCE_EXHAUSTED" and "slots" in e.value.details
        assert srv.stats()["rejected"] == 1 and srv.stats()["internal"] == 0


def test_idle_sessions_cannot_lock_others_out():
    h = Idle()
    with Server([h], port=0, workers=1, max_sessions=2, max_sessions_per_client=2, session_idle_s=300,
                session_idle_busy_s=1.0) as srv, collab.Client(srv.address, timeout=20) as c:
        idle = [c.session("idle"), c.session("idle")]
        assert c.infer("idle", b"unary")[0] == b"unary"  # unary calls do not need a session slot
        with pytest.raises(ServerBusy) as e:
            c.session("idle")
        assert e.value.code == "RESOURCE_EXHAUSTED"
        # someone waits: the idle sessions get the short idle limit and are closed
        assert all(ev.wait(30) for ev in h.closed[:2])
        with c.session("idle") as s:
            s.send("m", b"z")
            assert s.recv(20)[1] == b"z"
        for s in idle:
            with pytest.raises(TransportError) as e:
                s.recv(20)
            assert e.value.code == "DEADLINE_EXCEEDED" and "while other sessions wait" in e.value.details
        st = srv.stats()
        assert st["sessions_reaped_busy"] == 2 and st["rejected"] == 1


def test_per_client_session_quota():
    h = Idle()
    with Server([h], port=0, workers=1, max_sessions=8, max_sessions_per_client=2, session_idle_s=300,
                session_idle_busy_s=300) as srv, collab.Client(srv.address, timeout=20) as c:
        mine = [c.session("idle"), c.session("idle")]
        with pytest.raises(ServerBusy) as e:
            c.session("idle")
        assert "per-client" in e.value.details
        mine[0].close()
        assert h.closed[0].wait(20)
        with c.session("idle") as s:  # a slot of its own quota freed: it may open one again
            s.send("m", b"q")
            assert s.recv(20)[1] == b"q"
        mine[1].close()
        assert srv.stats()["sessions_refused_quota"] == 1
    assert Server([h], max_sessions=64).max_sessions_per_client == 16  # on by default


def _named(client, who):
    """The client's calls carry x-collab-client: who (what a proxy in front of the server sets)."""
    from collab.transport.common import CLIENT_HEADER

    client._md = tuple(client._md) + ((CLIENT_HEADER, who),)
    return client


def test_quota_counts_the_clients_a_trusted_proxy_names():
    """Behind a proxy every client has the proxy's address: a trusted proxy's x-collab-client
    names the client the quota counts; from an untrusted peer the same header changes nothing."""
    h = Idle()
    with Server([h], port=0, workers=1, max_sessions=8, max_sessions_per_client=1, session_idle_s=300,
                session_idle_busy_s=300, trusted_proxies=["127.0.0.1"]) as srv, \
            _named(collab.Client(srv.address, timeout=20), "10.0.0.1") as a, \
            _named(collab.Client(srv.address, timeout=20), "10.0.0.2") as b, \
            collab.Client(srv.address, timeout=20) as proxy_itself:
        held = [a.session("idle"), b.session("idle"), proxy_itself.session("idle")]  # three identities
        for s in held:
            s.send("m", b"k")
            assert s.recv(20)[1] == b"k"
        with pytest.raises(ServerBusy, match="per-client"):
            a.session("idle")   # 10.0.0.1's one session is taken, whatever the others hold
        for s in held:
            s.close()
    with Server([h], port=0, workers=1, max_sessions=8, max_sessions_per_client=1, session_idle_s=300,
                session_idle_busy_s=300) as srv, \
            _named(collab.Client(srv.address, timeout=20), "10.0.0.1") as a, \
            _named(collab.Client(srv.address, timeout=20), "10.0.0.2") as b:
        s = a.session("idle")
        s.send("m", b"k")
        assert s.recv(20)[1] == b"k"
        with pytest.raises(ServerBusy, match="per-client"):
            b.session("idle")   # not a trusted proxy: both are the one client 127.0.0.1
        s.close()
    for bad in ([""], [None], "x" * 300):
        with pytest.raises(InvalidArgument, match="trusted_proxies"):
            Server([h], trusted_proxies=bad)


# ---- half-open and stalled connections -------------------------------------------------------------

def _h2_frame(kind, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _hpack_literal(name, value):
    # literal header field without indexing, new name, no Huffman (lengths < 127)
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def _wait_closed(sock, timeout=60.0):
    """True when the server closes the connection (EOF or reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except socket.timeout:
        return False
    except ConnectionError:
        pass
    return True


def test_truncated_message_and_silent_connection_are_reaped():
    with Server([EchoHandler()], port=0, workers=1, max_connection_age_s=1.0, max_connection_age_grace_s=1.0,
                handshake_timeout_s=1.0) as srv:
        # a call whose message never completes: 5-byte gRPC prefix says 1000 bytes, 10 arrive
        s = socket.create_connection(("127.0.0.1", srv.port))
        headers = b"".join(_hpack_literal(k, v) for k, v in (
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", w.INFER.encode()),
            (b":authority", b"x"), (b"content-type", b"application/grpc"), (b"te", b"trailers")))
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(4, 0, 0, b"") + _h2_frame(1, 4, 1, headers)
                  + _h2_frame(0, 0, 1, b"\x00" + (1000).to_bytes(4, "big") + b"x" * 10))
        assert _wait_closed(s), "a stalled call kept its connection open"
        s.close()
        # a connection that never says anything
        s = socket.create_connection(("127.0.0.1", srv.port))
        assert _wait_closed(s), "a silent connection was kept open"
        s.close()
        with collab.Client(srv.address, timeout=20) as c:
            assert c.infer("echo", b"still serving")[0] == b"still serving"


def test_unresponsive_client_session_is_reaped_by_keepalive():
    h = Idle()
    with Server([h], port=0, workers=1, session_idle_s=300, keepalive_s=1.0, keepalive_timeout_s=1.0) as srv:
        code = ("import sys, time, collab; c = collab.Client(sys.argv[1]); s = c.session('idle'); "
                "s.send('m', b'x'); s.recv(20); print('ready', flush=True); time.sleep(120)")
        p = subprocess.Popen([sys.executable, "-c", code, srv.address], stdout=subprocess.PIPE, text=True, cwd=HERE)
        try:
            assert p.stdout.readline().strip() == "ready"
            p.send_signal(signal.SIGSTOP)  # alive for TCP, silent for HTTP/2: pings go unanswered
            assert h.closed[0].wait(60), "session of an unresponsive client not reaped"
        finally:
            p.kill()
            p.wait()
