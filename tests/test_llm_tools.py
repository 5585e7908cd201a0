"""Helpers of the LLM benchmark: trace replay arithmetic, the delaying TCP proxy, and the
`collab llm bench` command on the tiny model (fast, RPC baseline off)."""
from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest

from collab.llm.bench import replay
from collab.llm.delay_proxy import DelayProxy


class FixedLink:
    """bytes/ms link: a transfer of nb bytes starting at t ends at t + nb / rate."""

    def __init__(self, bytes_per_ms):
        self.r = bytes_per_ms

    def delivery_times(self, nb, start_ms):
        return start_ms + nb / self.r


def test_replay_adds_transfers_and_rtt():
    # device computes 10 ms, sends 1000 B; server takes 5 ms; replies 100 B; device sends again at 20 ms...
    events = [("up", 0.010, 1000), ("down", 0.015, 100), ("up", 0.020, 1000), ("down", 0.025, 100)]
    ttft, total = replay(events, FixedLink(100.0), FixedLink(100.0), rtt_ms=40)
    # first: 10 + 10 (up) + 20 (rtt/2) + 5 (server) + 1 (down) + 20 = 66 ms
    assert ttft == pytest.approx(0.066)
    # second up leaves 5 ms after the first reply arrived (66 + 5 = 71): 71 + 10 + 20 + 5 + 1 + 20 = 127
    assert total == pytest.approx(0.127)
    t0, t1 = replay(events, FixedLink(1e12), FixedLink(1e12), rtt_ms=0)
    assert (t0, t1) == pytest.approx((0.015, 0.025))  # infinite link, no RTT: the recorded times


def _echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        c, _ = srv.accept()
        while True:
            d = c.recv(4096)
            if not d:
                break
            c.sendall(d)
        c.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_delay_proxy_rtt():
    srv = _echo_server()
    with DelayProxy(srv.getsockname(), rtt_s=0.1) as px:
        c = socket.create_connection(("127.0.0.1", px.port))
        t = time.perf_counter()
        c.sendall(b"ping" * 100)
        got = b""
        while len(got) < 400:
            got += c.recv(4096)
        dt = time.perf_counter() - t
        c.close()
    srv.close()
    assert got == b"ping" * 100
    assert 0.1 <= dt < 1.0
    assert px.bytes_up[0] == 400 and px.bytes_down[0] == 400


def test_bench_command_tiny(tmp_path):
    from _llm_common import require_llama, tiny_model

    require_llama()
    from collab.cli import main

    rc = main(["llm", "bench", "--model", str(tiny_model(4)), "--at", "2", "--rtts", "0,20", "--max-tokens", "4",
               "--no-rpc", "--traces", str(tmp_path / "none"), "--prompt", "the cat sat", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "llm_bench.json").read_text())
    modes = {r["mode"] for r in res["rows"]}
    assert modes == {"device-only", "server-only", "roundtrip", "kv-handoff", "shortcut"}
    for r in res["rows"]:
        if r["mode"] in ("server-only", "roundtrip", "kv-handoff"):
            assert r["identical_to_device_only"] is True
        if r["mode"] != "device-only" and r["rtt_ms"] == 20:
            assert r["ttft_s"] >= 0.02  # at least one real round trip before the first token
    assert "llama.cpp-rpc" in res["skipped"] and "traces" in res["skipped"]
    assert (tmp_path / "llm_bench.png").stat().st_size > 1000
