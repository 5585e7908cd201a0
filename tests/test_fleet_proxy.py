"""A live fleet: replicas (`collab serve` processes) behind Debian's nginx, consistent hash on
x-collab-session; stickiness, SIGKILL and drain failover with gRPC's retry policy, clean down."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("grpc_health.v1")
if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
    pytest.skip("nginx is not installed (apt-get install nginx-light)", allow_module_level=True)

from collab.fleet import Fleet  # noqa: E402
from collab.transport import Client  # noqa: E402
from collab.transport.retry import retry_options  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _owner(client, key):
    with client.session("echo", session_key=key) as s:
        return s.replica


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(tmp_path / "fleet")
    f.up(3, free_port(), ["echo"], workers=1, drain_timeout=5.0, timeout=60)
    yield f
    f.down(timeout=10)
    assert not f.running()


def test_sticky_then_kill_and_drain(fleet):
    keys = [f"user-{i}" for i in range(24)]
    with Client(fleet.target, options=retry_options()) as c:
        owner = {k: _owner(c, k) for k in keys}
        assert set(owner.values()) == {"r0", "r1", "r2"}  # 24 keys spread over all replicas
        for k in keys[:12]:  # every later call of a key lands on its replica (unary and stream)
            assert _owner(c, k) == owner[k]
            c.infer("echo", b"x", session_key=k)
        victim = owner[keys[0]]
        fleet.signal(victim, signal.SIGKILL)
        time.sleep(0.2)
        for k in keys:  # no request lost: the proxy / the retry policy moves the victim's keys
            out, _, _ = c.infer("echo", k.encode(), session_key=k, timeout=20)
            assert out == k.encode()
        moved = {k: _owner(c, k) for k in keys}
        for k in keys:
            if owner[k] != victim:
                assert moved[k] == owner[k], "a key of a live replica moved"
            else:
                assert moved[k] != victim
        # drain a second replica: its keys move to the last one, nothing fails
        drained = next(r for r in ("r0", "r1", "r2") if r != victim)
        fleet.signal(drained, signal.SIGTERM)
        for k in keys:
            out, _, _ = c.infer("echo", b"y", session_key=k, timeout=20)
            assert out == b"y"
        last = ({"r0", "r1", "r2"} - {victim, drained}).pop()
        assert {_owner(c, k) for k in keys} == {last}
    deadline = time.monotonic() + 15  # the drained replica exits once its drain is over
    while {w for w, _ in fleet.running()} != {"proxy", last} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {w for w, _ in fleet.running()} == {"proxy", last}


def test_cli_up_status_down(tmp_path):
    port = free_port()
    state = tmp_path / "state"
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "collab.cli", "fleet"]
    r = subprocess.run(cmd + ["up", "--replicas", "2", "--port", str(port), "--task", "echo", "--workers", "1",
                              "--state-dir", str(state), "--serve-arg=--max-queue=8"], capture_output=True, text=True,
                       timeout=120, env=env)
    try:
        assert r.returncode == 0, r.stderr
        assert "2 replicas healthy" in r.stdout
        st = subprocess.run(cmd + ["status", "--port", str(port), "--state-dir", str(state)], capture_output=True,
                            text=True, timeout=30)
        assert st.returncode == 0 and st.stdout.count(" up") == 3
        with Client(f"127.0.0.1:{port}") as c:
            assert c.infer("echo", b"hello", session_key="a")[0] == b"hello"
        again = subprocess.run(cmd + ["up", "--replicas", "1", "--port", str(port), "--state-dir", str(state)],
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "already running" in again.stderr
        pids = [p for _, p in Fleet(state).running()]
        assert len(pids) == 3
        assert all("--max-queue=8" in r["cmd"] for r in Fleet(state).replicas)
    finally:
        d = subprocess.run(cmd + ["down", "--port", str(port), "--state-dir", str(state)], capture_output=True,
                           text=True, timeout=60)
    assert d.returncode == 0, d.stderr
    assert not state.exists()
    for p in pids:
        assert not Path(f"/proc/{p}").exists() or "Z" in Path(f"/proc/{p}/stat").read_text().split()[2]


def test_up_fails_cleanly_on_a_bad_task(tmp_path):
    f = Fleet(tmp_path / "bad")
    with pytest.raises(RuntimeError, match="exited"):
        f.up(1, free_port(), ["no-such-builtin"], timeout=30)
    assert not f.running()


def test_proxy_names_the_client_for_the_quota(tmp_path):
    """Replicas trust the fleet's nginx for x-collab-client, and nginx sets it from the client's
    address: a client cannot pick an identity of its own through the proxy (one session each
    here, both on the replica that owns the key)."""
    from collab.transport import ServerBusy
    from collab.transport.common import CLIENT_HEADER

    f = Fleet(tmp_path / "fleet")
    f.up(1, free_port(), ["echo"], workers=1, drain_timeout=5.0, timeout=60,
         serve_args=["--max-sessions-per-client", "1"])
    try:
        cmd = f.info["replicas"][0]["cmd"]
        assert cmd[cmd.index("--trusted-proxy") + 1] == "127.0.0.1"
        assert "grpc_set_header x-collab-client $remote_addr;" in (f.state_dir / "nginx.conf").read_text()
        with Client(f.target) as a, Client(f.target) as b:
            a._md = tuple(a._md) + ((CLIENT_HEADER, "spoof-a"),)
            b._md = tuple(b._md) + ((CLIENT_HEADER, "spoof-b"),)
            with a.session("echo", session_key="k") as s:
                s.send("m", b"x")
                assert s.recv(20)[1] == b"x"
                with pytest.raises(ServerBusy, match="per-client"):
                    b.session("echo", session_key="k")   # nginx replaced the header: the same client
    finally:
        f.down(timeout=10)
