"""One replica: grpc.health.v1, Prometheus metrics, drain, routing headers, retry config."""
from __future__ import annotations

import json
import threading
import time

import grpc
import pytest

pytest.importorskip("grpc_health.v1")
pytest.importorskip("prometheus_client")

from collab.errors import InvalidArgument  # noqa: E402
from collab.transport import Client, Server, TaskHandler, TaskSession, TransportError  # noqa: E402
from collab.transport import _wire as w  # noqa: E402
from collab.transport.builtin import BUILTIN  # noqa: E402
from collab.transport.health import check  # noqa: E402
from collab.transport.retry import retry_options, service_config  # noqa: E402


@pytest.fixture
def server():
    srv = Server([BUILTIN["echo"](), BUILTIN["codec-stats"]()], port=0, workers=2).start()
    yield srv
    srv.stop(grace=0)


def _metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_standard_health_per_task(server):
    assert check(server.address) == "SERVING"
    assert check(server.address, "collab.v1.Collab") == "SERVING"
    assert check(server.address, "echo") == "SERVING"
    assert check(server.address, "codec-stats") == "SERVING"
    assert check(server.address, "no-such-task") == "SERVICE_UNKNOWN"


def test_metrics_count_requests_bytes_sessions(server):
    with Client(server.address) as c:
        for _ in range(3):
            c.infer("echo", b"12345", session_key="k")
        with pytest.raises(TransportError):
            c.infer("nope", b"")
        with c.session("echo") as s:
            s.send("m", b"abcdef")
            s.recv(5)
            text = server.replica.metrics.text().decode()
            assert _metric(text, "collab_open_sessions", task="echo") == 1
    text = server.replica.metrics.text().decode()
    assert _metric(text, "collab_requests_total", task="echo", rpc="Infer", code="OK") == 3
    assert _metric(text, "collab_requests_total", task="nope", rpc="Infer", code="NOT_FOUND") == 1
    assert _metric(text, "collab_request_seconds_count", task="echo", rpc="Infer") == 3
    assert _metric(text, "collab_bytes_in_total", task="echo") == 3 * 5 + 6
    assert _metric(text, "collab_bytes_out_total", task="echo") == 3 * 5 + 6
    assert _metric(text, "collab_open_sessions", task="echo") == 0
    assert "collab_queue_depth" in text and _metric(text, "collab_draining") == 0


def test_metrics_http_endpoint(server):
    import urllib.request

    port = server.replica.metrics.serve_http(0)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.replica.metrics.close()
    assert "collab_requests_total" in body or "collab_requests_created" in body or "# HELP collab_requests" in body


def test_replica_header_and_session_key(server):
    with Client(server.address) as c:
        with c.session("echo", session_key="user-42") as s:
            assert s.replica == server.replica.replica_id != ""
        with pytest.raises(InvalidArgument):
            c.infer("echo", b"", session_key="")
        with pytest.raises(InvalidArgument):
            c.session("echo", session_key="x" * 300)


class _Streamer(TaskHandler):
    """A session whose on_message streams its replies (a generator): one per payload byte,
    each reply payload `i + 1` bytes long."""
    name = "streamer"

    def open_session(self, meta):
        class S(TaskSession):
            def on_message(self, kind, payload, meta):
                return (("part", b"x" * (i + 1), {}) for i in range(len(payload)))
        return S()


def test_streamed_replies_are_tagged_and_counted():
    """Streamed replies: the replica header still comes with the session's headers, and the
    bytes sent are the streamed payloads (1 + 2 + 3 + 4)."""
    srv = Server([_Streamer()], port=0, workers=1).start()
    try:
        with Client(srv.address) as c:
            with c.session("streamer", session_key="k") as s:
                assert s.replica == srv.replica.replica_id != ""
                s.send("go", b"abcd")
                assert [len(s.recv(5)[1]) for _ in range(4)] == [1, 2, 3, 4]
                s.send("go", b"")  # no replies: a message still counted
                s.send("go", b"a")
                assert s.recv(5)[1] == b"x"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the third message is counted after its reply went out
            text = srv.replica.metrics.text().decode()
            if _metric(text, "collab_requests_total", task="streamer", rpc="SessionMessage", code="OK") == 3:
                break
            time.sleep(0.02)
        assert _metric(text, "collab_requests_total", task="streamer", rpc="SessionMessage", code="OK") == 3
        assert _metric(text, "collab_bytes_in_total", task="streamer") == 5
        assert _metric(text, "collab_bytes_out_total", task="streamer") == 1 + 2 + 3 + 4 + 1
    finally:
        srv.stop(grace=0)


@pytest.mark.parametrize("kind", ["inproc", "link"])
def test_clients_without_replicas_take_session_key(kind):
    """One client interface: InprocClient and LinkClient accept session_key (nothing to route)
    and refuse a bad one as collab.Client does."""
    from collab.net.link import LinkClient
    from collab.transport import InprocClient

    make = InprocClient if kind == "inproc" else LinkClient
    c = make([BUILTIN["echo"]()])
    assert c.infer("echo", b"hi", session_key="user-1")[0] == b"hi"
    with c.session("echo", session_key="user-1") as s:
        s.send("m", b"yo")
        assert s.recv(5)[1] == b"yo"
    for bad in ("", "x" * 300, 7):
        with pytest.raises(InvalidArgument):
            c.infer("echo", b"", session_key=bad)
        with pytest.raises(InvalidArgument):
            c.session("echo", session_key=bad)


def test_session_unknown_status(server):
    """A session message without an open (a stream re-routed to a replica that never held the
    session) gets FAILED_PRECONDITION 'session unknown: ...'."""
    with grpc.insecure_channel(server.address) as ch:
        call = ch.stream_stream(w.SESSION)
        msg = w.make_frame(kind="continue", seq=3).SerializeToString()
        with pytest.raises(grpc.RpcError) as ei:
            list(call(iter([msg]), metadata=(("x-collab-session", "sess-7"),), timeout=10))
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ei.value.details().startswith("session unknown:") and "sess-7" in ei.value.details()


def test_drain_finishes_open_session_refuses_new(server):
    addr = server.address
    c = Client(addr)
    s = c.session("echo")
    s.send("m", b"before")
    assert s.recv(5)[1] == b"before"
    done = {}
    th = threading.Thread(target=lambda: done.setdefault("s", server.drain(timeout=20, notice_s=1.0)))
    th.start()
    try:
        deadline = time.monotonic() + 5
        while not server.replica.draining and time.monotonic() < deadline:
            time.sleep(0.01)
        # readiness false during the notice period; new work refused with a clear status
        assert check(addr) == "NOT_SERVING" and check(addr, "echo") == "NOT_SERVING"
        with pytest.raises(TransportError) as ei:
            c.infer("echo", b"x", timeout=5)
        assert ei.value.code == "UNAVAILABLE" and "draining" in ei.value.details
        with pytest.raises(TransportError) as ei:
            c.session("echo", timeout=5)
        assert ei.value.code == "UNAVAILABLE" and "draining" in ei.value.details
        assert c.health()["status"] == "NOT_SERVING"
        # the open session keeps working until it ends
        s.send("m", b"during")
        assert s.recv(5)[1] == b"during"
        time.sleep(1.2)  # past the notice: listener closed, session still served
        s.send("m", b"after-close")
        assert s.recv(5)[1] == b"after-close"
        s.close()
    finally:
        th.join(30)
        c.close()
    assert "s" in done and done["s"] < 20  # returned when the session ended, not at the deadline
    assert check(addr) == "UNAVAILABLE"


def test_drain_deadline_cuts_a_lingering_session():
    srv = Server([BUILTIN["echo"]()], port=0).start()
    with Client(srv.address) as c:
        s = c.session("echo")
        t = srv.drain(timeout=0.5)
        assert t < 10
        with pytest.raises((TransportError, EOFError)):
            s.send("m", b"x")
            s.recv(5)


def test_retry_service_config():
    cfg = service_config()
    by_method = {n["method"]: mc["retryPolicy"] for mc in cfg["methodConfig"] for n in mc["name"]}
    assert set(by_method) == {"Infer", "Session", "Health"}
    assert all(p["maxAttempts"] == 5 for p in by_method.values())
    # stateless calls also retry a cancellation by a stopping replica; a session only UNAVAILABLE
    assert by_method["Infer"]["retryableStatusCodes"] == ["UNAVAILABLE", "CANCELLED"]
    assert by_method["Health"]["retryableStatusCodes"] == ["UNAVAILABLE", "CANCELLED"]
    assert by_method["Session"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    opts = dict(retry_options(max_attempts=3))
    assert all(mc["retryPolicy"]["maxAttempts"] == 3
               for mc in json.loads(opts["grpc.service_config"])["methodConfig"])
    with pytest.raises(ValueError):
        service_config(max_attempts=9)
    with pytest.raises(ValueError):
        service_config(initial_backoff_s=2, max_backoff_s=1)


def test_drain_rejects_bad_timeout(server):
    for kw in ({"timeout": -1}, {"timeout": float("inf")}, {"timeout": float("nan")}, {"notice_s": float("nan")},
               {"notice_s": -1}, {"notice_s": 1e9}):
        with pytest.raises(ValueError):  # refused before the drain begins: the server keeps serving
            server.drain(**kw)
    assert not server.replica.draining


def test_serve_cli_refuses_non_finite_drain_settings():
    import subprocess
    import sys

    for a in (["--drain-timeout", "inf"], ["--drain-notice-s", "nan"], ["--drain-timeout", "-1"]):
        r = subprocess.run([sys.executable, "-m", "collab.cli", "serve", "--task", "echo", "--port", "0", *a],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and a[0] in r.stderr, r.stderr


def test_serve_cli_metrics_port_and_sigterm_drain(tmp_path):
    """`collab serve --metrics-port 0`: /metrics over HTTP; SIGTERM drains: the open session is
    still served, new sessions are refused, and the process exits 0 once the session ends."""
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    pf = tmp_path / "port"
    p = subprocess.Popen([sys.executable, "-m", "collab.cli", "serve", "--port", "0", "--port-file", str(pf),
                          "--task", "echo", "--metrics-port", "0", "--drain-timeout", "20", "--log-level", "WARNING"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        murl = None
        for _ in range(5):
            line = p.stdout.readline()
            m = re.search(r"metrics on (http://\S+)", line)
            if m:
                murl = m.group(1)
                break
        assert murl, "serve did not print its metrics address"
        addr = f"127.0.0.1:{pf.read_text()}"
        with Client(addr) as c:
            s = c.session("echo")
            s.send("m", b"1")
            s.recv(5)
            body = urllib.request.urlopen(murl, timeout=5).read().decode()
            assert _metric(body, "collab_open_sessions", task="echo") == 1
            p.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            s.send("m", b"2")
            assert s.recv(5)[1] == b"2"      # in-flight session finishes
            assert check(addr) == "UNAVAILABLE"  # listener closed: the proxy moves new work away
            s.close()
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)


def test_serve_metrics_stay_on_loopback_unless_asked():
    """The metrics endpoint is plain HTTP without authentication: it binds 127.0.0.1 even when the
    gRPC port is exposed, and binding it elsewhere is warned about."""
    import re
    import subprocess
    import sys

    def first_lines(extra):
        p = subprocess.Popen([sys.executable, "-m", "collab.cli", "serve", "--port", "0", "--task", "echo",
                              "--metrics-port", "0", "--log-level", "WARNING"] + extra,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        try:
            for _ in range(8):
                line = p.stdout.readline()
                lines.append(line)
                if "metrics on" in line:
                    lines.append(p.stdout.readline() if extra else "")
                    break
        finally:
            p.kill()
            p.wait(10)
        return "".join(lines)

    out = first_lines([])
    assert re.search(r"metrics on http://127\.0\.0\.1:\d+/metrics", out), out
    assert "plain HTTP" not in out
    out = first_lines(["--metrics-host", "0.0.0.0"])
    assert re.search(r"metrics on http://0\.0\.0\.0:\d+/metrics", out), out
    assert "plain HTTP without authentication" in out
