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
from collab.net.proxy import DelayProxy


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


def test_demo_command_tiny(tmp_path, capsys):
    """`collab llm demo`: server process (gRPC, when the transport is installed) + device here."""
    from _llm_common import require_llama, tiny_model

    require_llama()
    from collab.cli import main

    rc = main(["llm", "demo", "--model", str(tiny_model(4)), "--at", "2", "--max-tokens", "5",
               "--prompt", "the cat sat on the mat", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "time to 1st token" in out and "bytes up" in out and "round trips" in out
    assert "tokens identical to device-only: yes" in out


def test_quality_metrics():
    from collab.llm.quality import compare

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((6, 50)).astype(np.float32)
    targets = rng.integers(0, 50, 5)
    same = compare(ref, ref.copy(), targets)
    assert same["top1"] == 1.0 and same["top5"] == 1.0 and same["ppl"] == pytest.approx(same["ppl_ref"])
    # the reference perplexity by hand
    lp = ref[:5] - np.log(np.exp(ref[:5]).sum(-1, keepdims=True))
    assert same["ppl_ref"] == pytest.approx(float(np.exp(-lp[np.arange(5), targets].mean())), rel=1e-5)
    noisy = compare(ref, ref + 3 * rng.standard_normal(ref.shape).astype(np.float32), targets)
    assert noisy["top1"] < 1.0


def test_mmlu_prompts_from_lm_eval():
    from collab.llm.quality import mmlu_prompts

    try:
        prompts, src = mmlu_prompts(3)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    assert len(prompts) == 3
    for subject, text, q in prompts:
        assert "(A)" in text and text[q:].startswith("Q:")


def test_delay_proxy_delay_changes_on_open_connection():
    srv = _echo_server()
    with DelayProxy(srv.getsockname(), rtt_s=0.0) as px:
        c = socket.create_connection(("127.0.0.1", px.port))

        def ping():
            t = time.perf_counter()
            c.sendall(b"x")
            assert c.recv(16) == b"x"
            return time.perf_counter() - t

        fast = ping()
        px.delay = 0.1  # RTT 200 ms from now on, same connection
        slow = ping()
        c.close()
    srv.close()
    assert fast < 0.1 and slow >= 0.2
