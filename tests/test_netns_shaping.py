"""Real shaping harness: namespaces + veth + tc following a trace + delaying proxy, with the
real gRPC path across. Needs root and iproute2; skipped (with the reason) otherwise."""
import os
import pathlib
import socket
import threading
import time

import numpy as np
import pytest

from collab import netns

TRACES = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "traces"
if not TRACES.is_dir():  # the worktree layout /work/wt/<name>/tests -> /work/shared
    TRACES = pathlib.Path(__file__).resolve().parents[3] / "shared" / "traces"


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


def test_delay_proxy_forwards_bytes_intact(rng):
    # an echo server + the proxy on loopback (no namespaces needed)
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
    ready = f"/tmp/collab-proxy-{os.getpid()}-{rng.integers(1 << 30)}"
    threading.Thread(target=netns.run_delay_proxy, daemon=True,
                     args=("127.0.0.1:0", f"127.0.0.1:{srv.getsockname()[1]}", 0.005, ready)).start()
    t = time.monotonic()
    while not os.path.exists(ready):
        assert time.monotonic() - t < 10
        time.sleep(0.01)
    port = int(open(ready).read())
    os.unlink(ready)
    data = rng.bytes(300_000)
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
    c.shutdown(socket.SHUT_WR)
    th.join(20)
    assert bytes(got) == data


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


@pytest.mark.parametrize("qdisc", ["tbf", "htb"])
def test_grpc_across_shaped_namespaces(tmp_path, qdisc):
    need_netns()
    # a fixed 4 Mbit/s link in both directions (one opportunity per 3 ms); a real trace when present
    fixed = tmp_path / "fixed.trace"
    fixed.write_text("3\n")
    up = down = str(fixed)
    if qdisc == "tbf" and (TRACES / "TMobile-LTE-short.up").exists():
        up, down = str(TRACES / "TMobile-LTE-short.up"), str(TRACES / "TMobile-LTE-short.down")
    res = netns.shaping_experiment(up, down, [30_000, 120_000, 5_000], rtt_ms=20, gap_s=0.02, start_delay_s=1.0,
                                    qdisc=qdisc)
    recs = res["records"]
    assert [r["bytes"] for r in recs] == [30_000, 120_000, 5_000]
    for r in recs:
        assert r["measured_ms"] > 0 and np.isfinite(r["predicted_ms"]) and r["predicted_ms"] > 0
    # the shaper really throttled the uplink (packets held back by tc), not just passed them
    stats = res["config"]["tc_up_stats"]
    assert "overlimits 0 " not in stats, stats
    assert res["config"]["qdisc"] == qdisc
    print(res["summary"])
