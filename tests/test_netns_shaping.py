"""Real shaping harness: namespaces + veth + tc following a trace + delaying proxy, with the
real gRPC path across. Needs root and iproute2; skipped (with the reason) otherwise."""
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from collab.net import netns
from collab.net.proxy import DelayProxy

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRACES = next((p / "shared" / "traces" for p in ROOT.parents if (p / "shared" / "traces").is_dir()), None)


def need_netns():
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"shaping harness unavailable: {reason}")


def test_trace_rates_follow_the_trace():
    # the rates tc follows are collab.net's windowed capacity of the (looping) trace
    # one 1500-byte opportunity per ms = 12 Mbit/s
    r = netns.trace_rates(np.arange(1, 1001), 50, horizon_ms=1000)
    assert r.shape == (20,) and np.allclose(r[1:], 12e6) and r.mean() == pytest.approx(12e6, rel=0.01)
    # a one-line trace: one opportunity every 3 ms = 4 Mbit/s
    for b in (50, 64):
        r = netns.trace_rates([3], b, horizon_ms=3000)
        assert np.allclose(r[:-1], 4e6, rtol=0.07), (b, r[:5])
    r = netns.trace_rates([3], 5, horizon_ms=3000)  # bins shorter than the spacing quantise
    assert set(np.unique(r)) == {2.4e6, 4.8e6} and r.mean() == pytest.approx(4e6, rel=0.01)
    # a step: 24 Mbit/s for 100 ms, then almost nothing
    r = netns.trace_rates(np.concatenate([np.repeat(np.arange(1, 101), 2), [200]]), 100, horizon_ms=200)
    assert r.shape == (2,) and r[0] > 20e6 and r[1] < 1e6


def test_wire_packets():
    assert netns.wire_packets(0) == 1
    assert netns.wire_packets(1448 * 10) == 11  # framing spills into one more segment
    assert netns.wire_packets(10**6, mtu=9000) < netns.wire_packets(10**6, mtu=1500)


def _echo_server():
    srv = socket.create_server(("127.0.0.1", 0))

    def echo():
        c, _ = srv.accept()
        while True:
            d = c.recv(65536)
            if not d:
                c.shutdown(socket.SHUT_WR)
                return
            c.sendall(d)
    threading.Thread(target=echo, daemon=True).start()
    return srv


def _roundtrip(port, data):
    c = socket.create_connection(("127.0.0.1", port))
    got = bytearray()

    def rd():
        while True:
            d = c.recv(65536)
            if not d:
                return
            got.extend(d)
    th = threading.Thread(target=rd)
    th.start()
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)  # the half-close travels through the proxy; the echo then ends
    th.join(20)
    assert not th.is_alive(), "the half-close did not come back through the proxy"
    return bytes(got)


def test_delay_proxy_forwards_bytes_intact(rng):
    # an echo server + the proxy on loopback (no namespaces needed)
    srv = _echo_server()
    data = rng.bytes(300_000)
    with DelayProxy(srv.getsockname(), rtt_s=0.01) as px:
        assert _roundtrip(px.port, data) == data
        assert px.bytes_up[0] == len(data) and px.bytes_down[0] == len(data)


def test_delay_proxy_helper_process(tmp_path, rng):
    # the form the shaping harness starts inside a namespace: python -m collab.net.proxy
    srv = _echo_server()
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-m", "collab.net.proxy", "--listen", "127.0.0.1:0", "--target",
                          "127.0.0.1:%d" % srv.getsockname()[1], "--delay-ms", "5", "--ready-file", str(ready)])
    try:
        netns.wait_file(str(ready), p, "proxy", timeout=30)
        data = rng.bytes(50_000)
        assert _roundtrip(int(ready.read_text()), data) == data
    finally:
        p.kill()
        p.wait()


def test_delay_proxy_refuses_bad_addresses():
    r = subprocess.run([sys.executable, "-m", "collab.net.proxy", "--listen", "127.0.0.1:99999", "--target",
                        "127.0.0.1:1", "--delay-ms", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "0..65535" in r.stderr and "Traceback" not in r.stderr


def test_link_rate_follows_trace():
    need_netns()
    ts = np.concatenate([np.repeat(np.arange(1, 101), 1), np.repeat(np.arange(101, 201), 3)])  # 12 then 36 Mbit/s
    with netns.NetnsLink() as link:
        sh = netns.TraceShaper(link, up=ts, down=ts, bin_ms=50).start()
        time.sleep(0.3)
        sh.stop()
        k = sh.last_bin
        for d in ("up", "down"):
            want = sh.rate_at(d, k * 0.05)
            assert link.tc_rate_bps(d) == pytest.approx(want, rel=0.01)
        assert sh.changes >= 2
        assert [round(sh.rate_at("up", t)) for t in (0.06, 0.16)] == [12_000_000, 36_000_000]
    # namespaces are gone afterwards
    out = os.popen("ip netns list").read()
    assert link.ns["client"] not in out and link.ns["server"] not in out


@pytest.mark.slow
@pytest.mark.parametrize("qdisc", ["tbf", "htb"])
def test_grpc_across_shaped_namespaces(tmp_path, qdisc):
    # the benchmark script itself, on a fixed 4 Mbit/s trace (one opportunity per 3 ms), or on the
    # recorded TMobile trace when it is there
    need_netns()
    (tmp_path / "fixed.up").write_text("3\n")
    (tmp_path / "fixed.down").write_text("3\n")
    trace_dir, trace = str(tmp_path), "fixed"
    if qdisc == "tbf" and TRACES is not None and (TRACES / "TMobile-LTE-short.up").exists():
        trace_dir, trace = str(TRACES), "TMobile-LTE-short"
    out = tmp_path / "res.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "net" / "netns_shaping.py"), "--trace-dir",
                        trace_dir, "--traces", trace, "--rtt-ms", "20", "--qdisc", qdisc, "--n", "3", "--out",
                        str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = json.loads(out.read_text())["runs"]
    recs = run["records"]
    assert len(recs) + run["summary"]["failed"] == 3 and len(recs) >= 2
    for rec in recs:
        assert rec["measured_ms"] > 0 and np.isfinite(rec["predicted_ms"]) and rec["predicted_ms"] > 0
    # the shaper really throttled the uplink (packets held back by tc), not just passed them
    assert run["config"]["tc_up_overlimits"] > 0
    assert run["config"]["qdisc"] == qdisc and run["config"]["trace"] == trace


@pytest.mark.slow
def test_shaping_benchmark_falls_back_to_a_synthetic_trace(tmp_path):
    # a fresh clone has no recorded traces: the documented --quick command must still run
    need_netns()
    out = tmp_path / "res.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "net" / "netns_shaping.py"), "--quick",
                        "--trace-dir", str(tmp_path / "none"), "--qdisc", "tbf", "--n", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "synthetic" in r.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert run["config"]["trace"] == "synthetic" and len(run["records"]) >= 1
