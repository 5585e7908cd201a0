"""`collab llm bench`: decode modes side by side under fixed RTTs, simulated traces and
llama.cpp's own RPC backend. Device AND server compute are this machine's CPU (the server
runs in a thread of this process, the RPC server in a child process), so the numbers show
what the network and the protocol cost, not a fast server's speed-up.

Fixed RTTs are real (the emulated link sleeps; the RPC rows go through a delaying TCP
proxy). Trace rows replay the message log of the RTT-0 run through mahimahi traces with the
deterministic transfer simulator of collab.net (skipped, with the reason, when collab.net
or the traces are not there).
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

MODES = ["device-only", "server-only", "roundtrip", "kv-handoff", "shortcut"]
DEFAULT_PROMPT = ("Explain in a few sentences why the sky is blue, and what changes at sunset when the light "
                  "travels through more of the atmosphere.")


def add_arguments(p):
    p.add_argument("--model", default=None, help="full GGUF (default: embedded SmolLM2)")
    p.add_argument("--at", type=int, default=None, help="split point (default L/2)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--rtts", default="0,20,50,100", help="RTTs in ms, comma separated")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--traces", default=None, help="mahimahi trace dir (default ../shared/traces if present)")
    p.add_argument("--trace-rtt", type=float, default=40.0, help="base RTT (ms) added to trace rows")
    p.add_argument("--no-rpc", action="store_true", help="skip the llama.cpp RPC baseline")
    p.add_argument("--rpc-tokens", type=int, default=8, help="tokens generated in the (slow) RPC rows")
    p.add_argument("--out", default="benchmarks/results", help="output directory for JSON and PNG")
    p.add_argument("--quick", action="store_true", help="RTTs 0,50 and 16 tokens")


class _Recorder:
    """Channel wrapper recording (direction, t, bytes) for trace replay."""

    def __init__(self, inner):
        self.inner = inner
        self.events = []
        self.t0 = time.perf_counter()

    def session(self, task, meta=None):
        outer = self

        class S:
            def __init__(s):
                s.sess = outer.inner.session(task, meta)
                outer.t0 = time.perf_counter()  # the log starts when the session is open

            def send(s, kind, payload=b"", meta=None):
                from ..net.link import message_bytes

                outer.events.append(("up", time.perf_counter() - outer.t0, message_bytes(kind, payload, meta)))
                s.sess.send(kind, payload, meta)

            def recv(s):
                from ..net.link import message_bytes

                k, p, m = s.sess.recv()
                outer.events.append(("down", time.perf_counter() - outer.t0, message_bytes(k, p, m)))
                return k, p, m

            def __enter__(s):
                return s

            def __exit__(s, *exc):
                s.sess.close()

        return S()


def replay(events, up_link, down_link, rtt_ms):
    """Re-time a recorded RTT-0 message log on links (collab.net Trace/FixedRateLink): device and
    server compute gaps are kept, transfers take the simulated time. Returns (ttft_s, total_s)."""
    shift = 0.0          # ms the device timeline is delayed by the network so far
    up_free = down_free = 0.0
    last_up_arrival = last_up_t = 0.0
    first = None
    end = 0.0
    for d, t, nb in events:
        t_ms = t * 1e3
        if d == "up":
            depart = max(t_ms + shift, up_free)
            done = float(up_link.delivery_times(nb, depart))
            up_free = done
            last_up_arrival, last_up_t = done + rtt_ms / 2, t_ms
        else:
            ready = max(last_up_arrival + max(0.0, t_ms - last_up_t), down_free)
            done = float(down_link.delivery_times(nb, ready))
            down_free = done
            recv = done + rtt_ms / 2
            shift = max(shift, recv - t_ms)
            end = recv
            if first is None:
                first = recv
    return (first or 0.0) / 1e3, end / 1e3


def _find_up(rel: str) -> Path | None:
    """rel under the current directory or one of its parents (the source tree, ../shared)."""
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / rel).exists():
            return d / rel
    return None


def _gen_row(g, rtt, extra=None):
    d = {"mode": g.mode, "rtt_ms": rtt, "ttft_s": g.ttft_s, "total_s": g.total_s, "prefill_tok_s": g.prefill_tok_s,
         "decode_tok_s": g.decode_tok_s, "bytes_up": g.bytes_up, "bytes_down": g.bytes_down,
         "round_trips": g.round_trips, "prompt_tokens": g.prompt_tokens, "generated": g.n_generated,
         "device_s": g.device_s, "server_s": g.server_s}
    d.update(extra or {})
    return d


def _rpc_rows(full, at, n_layer, prompt_tokens, max_tokens, rtts, threads, log):
    """llama.cpp RPC backend: layers [at, L) + output on a ggml rpc-server behind a delaying proxy."""
    from ..net.proxy import DelayProxy
    from .runtime import Model, greedy

    script = _find_up("scripts/build_rpc_server.sh")  # run from the source tree
    root = script.parents[1] if script else Path.cwd()
    exe = Path(os.environ.get("COLLAB_RPC_SERVER", root / "build" / "llama-rpc" / "bin" / "ggml-rpc-server"))
    if not exe.exists() and script is not None:
        log("building ggml-rpc-server from the llama-cpp-python sdist (scripts/build_rpc_server.sh) ...")
        r = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        if r.returncode != 0:
            return [], f"rpc-server build failed: {r.stdout[-300:]} {r.stderr[-300:]}"
    if not exe.exists():
        return [], "ggml-rpc-server not available (run from the source tree: scripts/build_rpc_server.sh builds it)"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port), "-t", str(threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        def generate(m, label, rtt, px):
            c0 = (px.bytes_up[:], px.bytes_down[:]) if px else None
            with m.session("full", n_ctx=1024, n_threads=threads) as s:
                t0 = time.perf_counter()
                tok = greedy(s.decode(prompt_tokens)[-1])
                t1 = time.perf_counter()
                out = [tok]
                while len(out) < max_tokens and not m.is_eog(tok):
                    tok = greedy(s.decode([tok])[-1])
                    out.append(tok)
                t2 = time.perf_counter()
            n = len(out)
            row = {"mode": label, "rtt_ms": rtt, "ttft_s": t1 - t0, "total_s": t2 - t0,
                   "prefill_tok_s": len(prompt_tokens) / (t1 - t0),
                   "decode_tok_s": (n - 1) / (t2 - t1) if n > 1 else float("nan"),
                   "bytes_up": px.bytes_up[0] - c0[0][0] if px else None,
                   "bytes_down": px.bytes_down[0] - c0[1][0] if px else None,
                   "round_trips": None, "tcp_reads_down": px.bytes_down[1] - c0[1][1] if px else None,
                   "prompt_tokens": len(prompt_tokens), "generated": n, "tokens": out}
            rows.append(row)
            log(f"  {label:<20} rtt={rtt:>3.0f} ms  TTFT {row['ttft_s'] * 1e3:8.1f} ms  decode "
                f"{row['decode_tok_s']:6.1f} tok/s  ({n} tokens"
                f"{', %d server->client TCP reads' % row['tcp_reads_down'] if px else ''})")

        n_remote = n_layer - at + 1
        m = Model(full, rpc=f"127.0.0.1:{port}", n_remote_layers=n_remote)
        generate(m, "llama.cpp-rpc-direct", 0.0, None)  # no proxy in the way
        del m
        # Every RTT through one delaying proxy: weights are uploaded once at load (delay 0),
        # then the delay is set per RTT. The proxy is a Python relay and costs a little itself
        # (compare its RTT-0 row with the direct one).
        px = DelayProxy(("127.0.0.1", port), 0.0)
        try:
            m = Model(full, rpc=f"127.0.0.1:{px.port}", n_remote_layers=n_remote)
            for rtt in rtts:
                px.delay = rtt / 2e3
                generate(m, "llama.cpp-rpc", rtt, px)
            del m
        finally:
            px.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows, None


def run(args) -> int:
    from .device import Device
    from ..net.link import LinkClient
    from .models import default_model_path
    from .server import LlmTask, prepare_parts

    def log(msg):
        print(msg, flush=True)

    rtts = [0, 50] if args.quick else [float(x) for x in args.rtts.split(",") if x.strip()]
    max_tokens = 16 if args.quick else args.max_tokens
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    full = Path(args.model) if args.model else default_model_path()
    head, tail, at = prepare_parts(full, args.at)
    task = LlmTask(head=head, tail=tail, n_ctx=1024, n_threads=args.threads)
    dev = Device(head=head, full=full, n_ctx=1024, n_threads=args.threads)
    n_layer = task.head.info["n_layer_total"]
    # warm-up outside the timings: page in every model once (else the first mode pays for it)
    task.warm_up()
    dev.warm_up()
    if "shortcut" in modes:
        task._shortcut_parts()  # loads the projection and token_embd once
    log(f"collab llm bench: {full.name}, split at {at}/{n_layer}, {max_tokens} new tokens, threads {args.threads} "
        f"per side; device AND server compute on this CPU ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores)")
    load_start = os.getloadavg()
    rows, skipped = [], {}
    ref_tokens = None
    recorded = {}
    total = len(rtts) * len(modes)
    k = 0
    for rtt in rtts:
        client = LinkClient([task], rtt_s=rtt / 1e3)
        for mode in modes:
            k += 1
            if mode == "device-only" and rtt != rtts[0]:
                r = dict(rows[[x["mode"] for x in rows].index("device-only")])
                r["rtt_ms"] = rtt
                rows.append(r)  # no network: the same run applies to every RTT
                continue
            rec = _Recorder(client) if rtt == 0 else client
            g = dev.generate(args.prompt, mode=mode, client=rec if mode != "device-only" else None,
                             max_tokens=max_tokens)
            if rtt == 0 and mode != "device-only":
                recorded[mode] = (rec.events, g)
            if mode == "device-only":
                ref_tokens = g.tokens
            same = None if ref_tokens is None else g.tokens == ref_tokens
            rows.append(_gen_row(g, rtt, {"identical_to_device_only": same}))
            log(f"[{k}/{total}] {mode:<12} rtt={rtt:>3.0f} ms  TTFT {g.ttft_s * 1e3:8.1f} ms  decode "
                f"{g.decode_tok_s:6.1f} tok/s  up {g.bytes_up:>9} B  down {g.bytes_down:>6} B  "
                f"round trips {g.round_trips:>3}  same tokens as device-only: {same}")

    # ---- simulated traces -------------------------------------------------------------
    trace_rows = []
    tdir = Path(args.traces) if args.traces else (_find_up("shared/traces") or Path("../shared/traces"))
    try:
        from .. import net
    except ImportError:
        net = None
    if net is None:
        skipped["traces"] = "collab.net (planner) not installed: trace simulation skipped"
    elif not tdir.is_dir() or not recorded:
        skipped["traces"] = f"no trace directory {tdir} (or no RTT-0 run to replay)"
    else:
        for name in ("ATT-LTE-driving", "TMobile-LTE-short", "Verizon-LTE-short"):
            up, down = tdir / f"{name}.up", tdir / f"{name}.down"
            if not (up.exists() and down.exists()):
                continue
            ul, dl = net.load_trace(up), net.load_trace(down)
            for mode, (events, g) in recorded.items():
                ttft, tot = replay(events, ul, dl, args.trace_rtt)
                n = g.n_generated
                trace_rows.append({"mode": mode, "trace": name, "rtt_ms": args.trace_rtt, "ttft_s": ttft,
                                   "total_s": tot, "decode_tok_s": (n - 1) / (tot - ttft) if n > 1 and tot > ttft
                                   else float("nan"), "bytes_up": g.bytes_up, "bytes_down": g.bytes_down,
                                   "round_trips": g.round_trips, "simulated": True})
                log(f"  trace {name:<18} {mode:<12} TTFT {ttft * 1e3:8.1f} ms  total {tot * 1e3:8.1f} ms (simulated)")
        if not trace_rows:
            skipped["traces"] = f"no .up/.down trace pairs found in {tdir}"

    # ---- llama.cpp RPC baseline --------------------------------------------------------
    rpc_rows = []
    if args.no_rpc:
        skipped["llama.cpp-rpc"] = "--no-rpc"
    else:
        toks = dev.prompt_tokens(args.prompt)[1]
        try:
            rpc_rows, why = _rpc_rows(full, at, n_layer, toks, min(max_tokens, args.rpc_tokens), rtts,
                                      args.threads, log)
        except Exception as e:  # report, do not hide
            rpc_rows, why = [], f"{type(e).__name__}: {e}"
        if why:
            skipped["llama.cpp-rpc"] = why
        for r in rpc_rows:
            toks_r = r.pop("tokens")
            r["identical_to_device_only"] = toks_r == ref_tokens[: len(toks_r)] if ref_tokens else None
        rows += rpc_rows

    # ---- ratios the MindFusion paper reports ----------------------------------------------
    def get(mode, rtt, key):
        for r in rows:
            if r["mode"] == mode and r["rtt_ms"] == rtt:
                return r[key]
        return None

    ratios = []
    for rtt in rtts:
        d_ttft, d_dec, s_dec = get("device-only", rtt, "ttft_s"), get("device-only", rtt, "decode_tok_s"), \
            get("server-only", rtt, "decode_tok_s")
        for mode in [m for m in modes if m not in ("device-only",)] + (["llama.cpp-rpc"] if rpc_rows else []):
            t, dec = get(mode, rtt, "ttft_s"), get(mode, rtt, "decode_tok_s")
            if t is None:
                continue
            ratios.append({"mode": mode, "rtt_ms": rtt,
                           "ttft_vs_device_only": t / d_ttft if d_ttft else None,
                           "decode_vs_device_only": dec / d_dec if d_dec and dec == dec else None,
                           "decode_vs_server_only": dec / s_dec if s_dec and dec == dec else None})

    # ---- table ----------------------------------------------------------------------------
    hdr = f"{'mode':<14}{'RTT ms':>7}{'TTFT ms':>10}{'prefill t/s':>12}{'decode t/s':>11}{'up B':>10}" \
          f"{'down B':>9}{'RTTs':>6}{'same':>6}{'TTFT/dev':>9}{'dec/dev':>8}{'dec/srv':>8}"
    print("\n" + hdr + "\n" + "-" * len(hdr))
    for r in rows:
        rt = next((x for x in ratios if x["mode"] == r["mode"] and x["rtt_ms"] == r["rtt_ms"]), {})

        def f(v, fmt):
            w = int("".join(ch for ch in fmt.split(".")[0] if ch.isdigit()) or 0)
            return format(v, fmt) if isinstance(v, (int, float)) and v == v else "-".rjust(w)
        print(f"{r['mode']:<14}{r['rtt_ms']:>7.0f}{f(r['ttft_s'] * 1e3, '10.1f')}{f(r.get('prefill_tok_s'), '12.1f')}"
              f"{f(r['decode_tok_s'], '11.1f')}{f(r['bytes_up'], '10d')}{f(r['bytes_down'], '9d')}"
              f"{(r['round_trips'] if r['round_trips'] is not None else '-'):>6}"
              f"{str(r.get('identical_to_device_only', '-'))[:5]:>6}"
              f"{f(rt.get('ttft_vs_device_only'), '9.2f')}{f(rt.get('decode_vs_device_only'), '8.2f')}"
              f"{f(rt.get('decode_vs_server_only'), '8.2f')}")
    for k2, v in skipped.items():
        print(f"skipped {k2}: {v}")
    print(f"load average (1 min) at start {load_start[0]:.1f}, at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
          "cores: timings are only comparable when this is below the core count")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"model": str(full), "split_at": at, "n_layer": n_layer, "max_tokens": max_tokens, "prompt": args.prompt,
           "threads_per_side": args.threads, "cpu": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "note": "device and server compute both run on this machine's CPU",
           "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
           "rows": rows, "trace_rows": trace_rows, "ratios": ratios, "skipped": skipped,
           "command": " ".join(["collab", "llm", "bench"] + sys.argv[3:])}
    jpath = out / "llm_bench.json"
    jpath.write_text(json.dumps(res, indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else o))
    try:
        _plot(rows, out / "llm_bench.png")
        print(f"wrote {jpath} and {out / 'llm_bench.png'}")
    except Exception as e:  # matplotlib missing
        print(f"wrote {jpath} (no PNG: {e})")
    return 0


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    for m in modes:
        rs = sorted((r for r in rows if r["mode"] == m), key=lambda r: r["rtt_ms"])
        x = [r["rtt_ms"] for r in rs]
        axes[0].plot(x, [r["ttft_s"] * 1e3 for r in rs], "o-", label=m)
        axes[1].plot(x, [r["decode_tok_s"] for r in rs], "o-", label=m)
        axes[2].plot(x, [max(1, (r["bytes_up"] or 0) + (r["bytes_down"] or 0)) for r in rs], "o-", label=m)
    axes[0].set_ylabel("time to first token (ms)")
    axes[1].set_ylabel("decode speed (tokens/s)")
    axes[2].set_ylabel("bytes up + down per request")
    axes[2].set_yscale("log")
    for a in axes:
        a.set_xlabel("RTT (ms)")
        a.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("collab llm bench (device and server compute on the same CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
