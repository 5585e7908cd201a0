"""Helpers of the LLM benchmark: trace replay arithmetic, the delaying TCP proxy, and the
`collab llm bench` command on the tiny model (fast, RPC baseline off)."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from collab.llm.timeline import replay, replay_arrivals
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


def test_replay_streamed_replies_keep_the_server_pace():
    # one request at 0, three streamed tokens 10 ms apart: each arrives 10 ms after the previous
    events = [("up", 0.0, 100), ("down", 0.030, 40), ("down", 0.040, 40), ("down", 0.050, 40)]
    a = replay_arrivals(events, FixedLink(1e12), FixedLink(1e12), rtt_ms=100)
    assert a == pytest.approx([0.130, 0.140, 0.150])


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


@pytest.mark.slow
def test_bench_command_tiny(tmp_path):
    """`collab llm bench --quick` on the tiny model: server and proxy processes, real gRPC."""
    from _llm_common import require_llama, tiny_model

    require_llama()
    pytest.importorskip("grpc")
    from collab.cli import main

    rc = main(["llm", "bench", "--quick", "--model", str(tiny_model(4)), "--at", "2",
               "--modes", "server-only,roundtrip,kv-handoff,shortcut", "--traces", str(tmp_path / "none"),
               "--prompt", "the cat sat", "--workdir", str(tmp_path), "--out", str(tmp_path / "llm_bench.json")])
    assert rc == 0
    res = json.loads((tmp_path / "llm_bench.json").read_text())
    links = {(r["mode"], r["link"]) for r in res["runs"]}
    for mode in ("server-only", "roundtrip", "kv-handoff", "shortcut"):
        assert (mode, "rtt 0 ms") in links and (mode, "rtt 50 ms") in links
    assert ("device-only", "local") in links
    for r in res["runs"]:
        assert r["n_tokens"] == 8  # the same token count in every row
        if r["mode"] in ("server-only", "roundtrip", "kv-handoff"):
            assert r["same_tokens_as_device_only"] is True
        if r["mode"] != "device-only" and not r.get("simulated"):
            assert r["wire_up"] > 0 and r["wire_down"] > 0 and r["ttst_s"] >= r["ttft_s"]
        if r.get("rtt_ms") == 50 and r["mode"] != "device-only":
            assert r["ttft_s"] >= 0.05  # the stream opening and the request each cross the link
    assert {"kv-handoff/server-only tok/s", "link"} <= set(res["ratios"][0])
    assert (tmp_path / "llm_bench.png").stat().st_size > 1000


@pytest.mark.parametrize("context", ["", "a long note about cats and mats. "])
def test_demo_command_tiny(tmp_path, capsys, context):
    """`collab llm demo`: server process (gRPC, when the transport is installed) + device here;
    --context goes before the question in the one user message both runs see."""
    from _llm_common import require_llama, tiny_model

    require_llama()
    from collab.cli import main

    rc = main(["llm", "demo", "--model", str(tiny_model(4)), "--at", "2", "--max-tokens", "5",
               "--prompt", "the cat sat on the mat", "--workdir", str(tmp_path)]
              + (["--context", context] if context else []))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"prompt: {context}the cat sat on the mat" in out
    assert "time to 1st token" in out and "bytes up" in out and "round trips" in out
    m = re.search(r"agreement with device-only: (\d+)/(\d+) tokens", out)
    assert m and m.group(1) == m.group(2) and int(m.group(2)) >= 1, out  # kv-handoff is exact


def test_quality_metrics():
    from collab.llm.fidelity import compare

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
    from collab.llm.fidelity import mmlu_prompts

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


def test_llm_help_lists_the_training_verbs_without_importing_torch():
    """`collab llm --help` and `collab llm train-codec --help` build every parser without
    importing torch (training imports it only when it runs)."""
    code = ("import sys\nfrom collab.cli import main\n"
            "for argv in (['llm', '--help'], ['llm', 'train-codec', '--help'], ['llm', 'train-shortcut', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, argv\n"
            "print('TORCH', 'torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "train-shortcut" in r.stdout and "train-codec" in r.stdout and "--ratio" in r.stdout
    assert "TORCH False" in r.stdout
