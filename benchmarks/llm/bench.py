"""Split LLM decoding modes against each other and against llama.cpp's RPC backend, measured
so that the numbers can be trusted (MindFusion Tables II-IV: see README.md here).

    python benchmarks/llm/bench.py            # SmolLM2 split at L/2, 64 tokens, 3 rounds
    python benchmarks/llm/bench.py --quick    # smoke run: 1 round, RTT 0 and 50, 8 tokens

Setup: the device is this process; `collab llm serve` (tail + head copy) and llama.cpp's
ggml-rpc-server are separate processes; each is reached over real sockets (gRPC, RPC)
through a delaying TCP proxy that is a process of its own (benchmarks/llm/proxy_proc.py).
With >= 2 cores the device is pinned to one core and servers + proxies to another
(os.sched_setaffinity), one compute thread per side by default. Rows run in interleaved
rounds (each round: every RTT, every mode, in a rotated order), and the table shows the
median with min-max over rounds. Every row generates the same number of tokens (end-of-
generation is ignored; llama.cpp RPC rows run the same greedy loop). One-time setup bytes
(llama.cpp RPC's weight upload) are reported apart from the per-request bytes. Per row:
load average and CPU busy / steal fractions from /proc/stat during the row, since other
work on the machine changes every timing.

Columns: TTFT (request start, including opening the stream, to the first token on the
device), TTST (to the second token: the first the stream delivers), inter-token gap p50/p99,
decode tok/s ((n-1) / (last - first)), bytes up/down per request (collab: message bytes;
wire: TCP payload bytes through the proxy, gRPC/HTTP2 framing included, for collab and RPC
alike). LTE trace rows re-time each round's RTT-0 message log (collab) or TCP chunk log
(RPC) on mahimahi traces with the transfer simulator of collab.net (collab.llm.timeline).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COLLAB_MODES = ["server-only", "roundtrip", "kv-handoff", "shortcut"]
RPC_MODES = ["rpc-split", "rpc-all"]
DEFAULT_PROMPT = ("Write a detailed story about a lighthouse keeper who finds a message in a bottle, "
                  "and describe what happens over the following year.")
TRACES = ("TMobile-LTE-short", "Verizon-LTE-short")


def add_arguments(p):
    p.add_argument("--model", default=None, help="full GGUF (default: $COLLAB_LLM_MODEL or the embedded SmolLM2)")
    p.add_argument("--at", type=int, default=None, help="split point (default L/2)")
    p.add_argument("--threads", type=int, default=1, help="compute threads per side (default 1)")
    p.add_argument("--tokens", type=int, default=64, help="generated tokens in every row (default 64)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--rtts", default="0,20,50,100", help="RTTs in ms (default 0,20,50,100)")
    p.add_argument("--modes", default=",".join(COLLAB_MODES + RPC_MODES))
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--traces", default=None, help="mahimahi trace directory (default: shared/traces above "
                   "this checkout, else the synthetic traces of collab.net)")
    p.add_argument("--trace-rtt", type=float, default=40.0, help="base RTT (ms) of the trace rows (default 40)")
    p.add_argument("--rpc-server", default=None, help="ggml-rpc-server binary (default: build/llama-rpc/bin/, "
                   "built by scripts/build_rpc_server.sh when missing)")
    p.add_argument("--workdir", default=None, help="split parts cache (default $COLLAB_CACHE_DIR/llm)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "llm_bench.json"))
    p.add_argument("--resume", action="store_true", help="keep the rows of an interrupted run (<out>.partial)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, RTT 0 and 50, 8 tokens, one trace")
    p.add_argument("--device-cpu", type=float, default=None,
                   help="cap the device at this fraction of a core (cgroup CPU quota): a device slower than "
                        "its server, as a phone against a GPU box (default: no cap)")


# ---- processes ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """benchmarks/llm/proxy_proc.py as a child process."""

    def __init__(self, target: str, cores):
        from collab.bench_io import server_preexec  # on the server cores, outside the device's CPU cap

        self.p = subprocess.Popen([sys.executable, str(HERE / "proxy_proc.py"), target], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, preexec_fn=server_preexec(cores))
        line = self.p.stdout.readline().split()
        if line[:1] != ["port"]:
            raise RuntimeError(f"proxy for {target} did not start")
        self.port = int(line[1])

    def cmd(self, c: str):
        self.p.stdin.write(c + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def delay(self, rtt_ms: float):
        assert self.cmd(f"delay {rtt_ms / 2e3:.6f}") == "ok"

    def stats(self) -> dict:
        return json.loads(self.cmd("stats"))

    def close(self):
        try:
            self.cmd("quit")
        except (BrokenPipeError, OSError):
            pass
        self.p.wait(timeout=10)


def _wait_port(port, proc, what, timeout=300):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def _rpc_server_binary(arg):
    exe = Path(arg or os.environ.get("COLLAB_RPC_SERVER", ROOT / "build" / "llama-rpc" / "bin" / "ggml-rpc-server"))
    if not exe.exists() and not arg:
        print("building ggml-rpc-server (scripts/build_rpc_server.sh) ...", flush=True)
        subprocess.run(["bash", str(ROOT / "scripts" / "build_rpc_server.sh")], check=False)
    return exe if exe.exists() else None


# ---- machine state --------------------------------------------------------------------------
def _cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    steal = v[7] if len(v) > 7 else 0
    return sum(v[:8]), idle, steal


def _machine(before, after):
    tot, idle, steal = (a - b for a, b in zip(after, before))
    tot = max(tot, 1)
    return {"cpu_busy_frac": round(1 - idle / tot, 3), "cpu_steal_frac": round(steal / tot, 4),
            "loadavg_1m": round(os.getloadavg()[0], 2)}


# ---- one row --------------------------------------------------------------------------------
class _Recorder:
    """A client wrapper that logs (direction, seconds since the request started, bytes) of every
    message, the stream opening included, for the trace rows."""

    def __init__(self, inner):
        self.inner, self.events = inner, []

    def session(self, task, meta=None):
        from collab.net.link import message_bytes

        rec = self
        rec.events = [("up", 0.0, message_bytes("collab.open", b"", meta))]
        t0 = time.perf_counter()
        sess = self.inner.session(task, meta)
        rec.events.append(("down", time.perf_counter() - t0, message_bytes("collab.opened", b"", {})))

        class S:
            def send(self, kind, payload=b"", meta=None):
                rec.events.append(("up", time.perf_counter() - t0, message_bytes(kind, payload, meta)))
                sess.send(kind, payload, meta)

            def recv(self, timeout=None):
                k, p, m = sess.recv(timeout=timeout)
                rec.events.append(("down", time.perf_counter() - t0, message_bytes(k, p, m)))
                return k, p, m

            def close(self):
                sess.close()

            def cancel(self):
                sess.cancel()

        return S()


def _timing(times):
    """TTFT, TTST, inter-token p50/p99, decode tok/s from token arrival times (s)."""
    import numpy as np

    gaps = np.diff(times) if len(times) > 1 else np.array([float("nan")])
    n = len(times)
    return {"ttft_s": times[0], "ttst_s": times[1] if n > 1 else float("nan"),
            "itl_p50_s": float(np.percentile(gaps, 50)), "itl_p99_s": float(np.percentile(gaps, 99)),
            "tok_s": (n - 1) / (times[-1] - times[0]) if n > 1 and times[-1] > times[0] else float("nan"),
            "total_s": times[-1], "n_tokens": n}


def run_collab(dev, client, proxy, prompt, mode, n):
    rec = _Recorder(client)
    w0, c0 = proxy.stats(), _cpu_times()
    g = dev.generate(prompt, mode=mode, client=rec, max_tokens=n, ignore_eog=True)
    c1, w1 = _cpu_times(), proxy.stats()
    row = _timing(g.token_times)
    row.update(bytes_up=g.bytes_up, bytes_down=g.bytes_down, wire_up=w1["up"][0] - w0["up"][0],
               wire_down=w1["down"][0] - w0["down"][0], round_trips=g.round_trips, server_s=g.server_s,
               device_s=g.device_s, **_machine(c0, c1))
    marks = list(g.token_times)
    return row, g.tokens, {"events": rec.events, "marks": marks}


def run_rpc(model, proxy, toks, n, threads, record):
    from collab.llm.runtime import greedy

    if record:
        assert proxy.cmd("log") == "ok"
    w0, c0 = proxy.stats(), _cpu_times()
    with model.session("full", n_ctx=1024, n_threads=threads) as s:
        t0w, t0 = time.time(), time.perf_counter()
        tok = greedy(s.decode(toks)[-1])
        out, times = [tok], [time.perf_counter() - t0]
        while len(out) < n:
            tok = greedy(s.decode([tok])[-1])
            out.append(tok)
            times.append(time.perf_counter() - t0)
    c1, w1 = _cpu_times(), proxy.stats()
    log = None
    if record:
        chunks = json.loads(proxy.cmd("dump"))
        log = {"events": [(d, t - t0w, nb) for d, t, nb in chunks if t >= t0w], "marks": times}
    row = _timing(times)
    up, down = w1["up"][0] - w0["up"][0], w1["down"][0] - w0["down"][0]
    row.update(bytes_up=up, bytes_down=down, wire_up=up, wire_down=down, round_trips=None,
               tcp_reads_down=w1["down"][1] - w0["down"][1], **_machine(c0, c1))
    return row, out, log


# ---- aggregation ----------------------------------------------------------------------------
KEYS = ("ttft_s", "ttst_s", "itl_p50_s", "itl_p99_s", "tok_s", "bytes_up", "bytes_down", "wire_up", "wire_down",
        "cpu_busy_frac", "cpu_steal_frac", "loadavg_1m")


def _nan(v):
    return v is None or (isinstance(v, float) and v != v)


def summarize(runs):
    """Group per (mode, link) over rounds: median, min, max of each key."""
    groups = {}
    for r in runs:
        groups.setdefault((r["mode"], r["link"]), []).append(r)
    out = []
    for (mode, link), rs in groups.items():
        s = {"mode": mode, "link": link, "rtt_ms": rs[0]["rtt_ms"], "rounds": len(rs),
             "n_tokens": sorted({r["n_tokens"] for r in rs}), "same_tokens_as_device_only":
             all(r.get("same_tokens_as_device_only") is not False for r in rs)}
        for k in KEYS:
            vals = [r[k] for r in rs if not _nan(r.get(k))]
            if vals:
                s[k] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
        out.append(s)
    return out


def _med(summary, mode, link, key):
    for s in summary:
        if s["mode"] == mode and s["link"] == link and key in s:
            return s[key]["median"]
    return None


def ratios(summary, links):
    out = []
    for link in links:
        kv = _med(summary, "kv-handoff", link, "tok_s")
        r = {"link": link}
        for other in ("server-only", "rpc-split", "rpc-all", "roundtrip"):
            o = _med(summary, other, link, "tok_s")
            r[f"kv-handoff/{other} tok/s"] = kv / o if kv and o else None
        kt, st = _med(summary, "kv-handoff", link, "ttst_s"), _med(summary, "server-only", link, "ttst_s")
        r["kv-handoff/server-only TTST"] = kt / st if kt and st else None
        out.append(r)
    return out


def print_table(summary, links):
    def f(s, k, scale=1.0, fmt="{:.1f}"):
        v = s.get(k)
        if not v:
            return "-"
        return (fmt.format(v["median"] * scale) + " [" + fmt.format(v["min"] * scale) + "-" +
                fmt.format(v["max"] * scale) + "]")

    hdr = (f"{'mode':<12}{'link':<20}{'TTFT ms':>22}{'TTST ms':>22}{'ITL p50':>8}{'ITL p99':>8}"
           f"{'tok/s':>20}{'wire up':>10}{'wire down':>10}{'busy':>6}{'steal':>7}{'load':>6}")
    print("\n" + hdr + "\n" + "-" * len(hdr))
    order = {l: i for i, l in enumerate(links)}
    for s in sorted(summary, key=lambda s: (order.get(s["link"], 99), s["mode"])):
        def m(k, scale=1.0, fmt="{:.0f}"):
            v = s.get(k)
            return fmt.format(v["median"] * scale) if v else "-"
        print(f"{s['mode']:<12}{s['link']:<20}{f(s, 'ttft_s', 1e3):>22}{f(s, 'ttst_s', 1e3):>22}"
              f"{m('itl_p50_s', 1e3, '{:.1f}'):>8}{m('itl_p99_s', 1e3, '{:.1f}'):>8}{f(s, 'tok_s'):>20}"
              f"{m('wire_up'):>10}{m('wire_down'):>10}{m('cpu_busy_frac', 1, '{:.2f}'):>6}"
              f"{m('cpu_steal_frac', 1, '{:.3f}'):>7}{m('loadavg_1m', 1, '{:.1f}'):>6}")


def plot(summary, links, path):
    from collab.bench_io import pyplot, save_png

    plt = pyplot()
    if plt is None:
        print("no PNG: matplotlib missing")
        return
    rtt_links = [l for l in links if l.startswith("rtt")]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    modes = list(dict.fromkeys(s["mode"] for s in summary))
    for mode in modes:
        pts = sorted((s for s in summary if s["mode"] == mode and s["link"] in rtt_links), key=lambda s: s["rtt_ms"])
        if not pts:
            continue
        x = [s["rtt_ms"] for s in pts]
        for ax, key, scale in zip(axes, ("ttft_s", "ttst_s", "tok_s", "wire_down"), (1e3, 1e3, 1, 1)):
            ys = [s.get(key) for s in pts]
            if not all(ys):
                continue
            med = [y["median"] * scale for y in ys]
            err = [[m - y["min"] * scale for m, y in zip(med, ys)], [y["max"] * scale - m for m, y in zip(med, ys)]]
            ax.errorbar(x, med, yerr=err, marker="o", capsize=3, label=mode)
    for ax, lab in zip(axes, ("time to first token (ms)", "time to second token (ms)", "decode tokens/s",
                               "bytes down per request (wire)")):
        ax.set_xlabel("RTT (ms)")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    axes[3].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("split LLM decoding: medians with min-max over rounds (device and server on separate cores)")
    save_png(fig, path)


# ---- main -----------------------------------------------------------------------------------
def _trace_dir(arg):
    if arg:
        return Path(arg)
    for d in [ROOT, *ROOT.parents]:
        if (d / "shared" / "traces").is_dir():
            return d / "shared" / "traces"
    return None


def _traces(arg, quick):
    """[(name, up Trace, down Trace)]: two LTE traces from files, else collab.net's synthetic ones."""
    from collab import net

    names = TRACES[:1] if quick else TRACES
    d = _trace_dir(arg)
    out = []
    if d is not None:
        for name in names:
            up, down = d / f"{name}.up", d / f"{name}.down"
            if up.exists() and down.exists():
                out.append((name, net.load_trace(up), net.load_trace(down)))
    if not out:
        try:
            from collab.net import synthetic
        except ImportError:
            return [], f"no trace files under {d} and no collab.net.synthetic"
        out = [(f"synthetic-LTE-{i}", synthetic.synthetic_trace(mean_mbps=4.0, seed=2 * i),
                synthetic.synthetic_trace(mean_mbps=12.0, seed=2 * i + 1)) for i in range(len(names))]
    return out, None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/llm/bench.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args) -> int:
    if args.quick:
        args.rounds, args.rtts, args.tokens = 1, "0,50", 8
    rtts = [float(x) for x in args.rtts.split(",") if x.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in COLLAB_MODES + RPC_MODES]
    if bad or args.tokens < 2 or args.rounds < 1 or args.threads < 1:
        print(f"llm bench: unknown modes {bad}" if bad else "llm bench: --tokens >= 2, --rounds >= 1, --threads >= 1",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    partial = out.with_suffix(".partial.json")

    from collab.llm.device import Device
    from collab.llm.models import default_model_path
    from collab.llm.runtime import Model
    from collab.llm.server import prepare_parts
    from collab.llm.timeline import retime
    from collab.transport import Client

    cores = sorted(os.sched_getaffinity(0))
    dev_cores, srv_cores = ({cores[0]}, {cores[1]}) if len(cores) >= 2 else (None, None)
    if dev_cores:
        os.sched_setaffinity(0, dev_cores)
    from collab.bench_io import limit_device_cpu, server_preexec

    device_cpu = limit_device_cpu(args.device_cpu)
    full = Path(args.model) if args.model else default_model_path()
    head, tail, at = prepare_parts(full, args.at, args.workdir)
    procs, proxies, rpc_models = [], [], {}

    def log(msg):
        print(msg, flush=True)

    try:
        port = _free_port()
        cmd = [sys.executable, "-m", "collab.cli", "llm", "serve", "--model", str(full), "--at", str(at),
               "--port", str(port), "--threads", str(args.threads), "--n-ctx", "1024", "--max-sessions", "4"]
        if args.workdir:
            cmd += ["--workdir", args.workdir]
        if "shortcut" in modes:
            cmd.append("--load-nets")   # the trained nets load before the port opens, not on the first request
        srv = subprocess.Popen(cmd, preexec_fn=server_preexec(srv_cores), stdout=subprocess.DEVNULL)
        procs.append(srv)
        gproxy = Proxy(f"127.0.0.1:{port}", srv_cores)
        proxies.append(gproxy)
        skipped, setup = {}, {}
        want_rpc = [m for m in modes if m in RPC_MODES]
        if want_rpc:
            exe = _rpc_server_binary(args.rpc_server)
            if exe is None:
                skipped["llama.cpp RPC"] = "ggml-rpc-server not built (scripts/build_rpc_server.sh)"
            else:
                rport = _free_port()
                rsrv = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(rport), "-t", str(args.threads)],
                                        preexec_fn=server_preexec(srv_cores), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                procs.append(rsrv)
                _wait_port(rport, rsrv, "ggml-rpc-server")
                rproxy = Proxy(f"127.0.0.1:{rport}", srv_cores)
                proxies.append(rproxy)
        dev = Device(head=head, full=full, n_ctx=1024, n_threads=args.threads)
        dev.warm_up()
        n_layer = dev.head.info["n_layer_total"]
        _wait_port(port, srv, "collab llm serve")
        client = Client(f"127.0.0.1:{gproxy.port}", timeout=900)
        client.wait_ready(timeout=300)
        w0 = gproxy.stats()
        for mode in [m for m in modes if m in COLLAB_MODES]:  # warm the server's paths, untimed
            dev.generate(args.prompt, mode=mode, client=client, max_tokens=2, ignore_eog=True)
        w1 = gproxy.stats()
        setup["collab warm-up (one 2-token request per mode)"] = {"up": w1["up"][0] - w0["up"][0],
                                                                  "down": w1["down"][0] - w0["down"][0]}
        toks = dev.prompt_tokens(args.prompt)[1]
        for m in want_rpc:
            if "llama.cpp RPC" in skipped:
                break
            n_remote = (n_layer - at + 1) if m == "rpc-split" else (n_layer + 1)
            r0 = rproxy.stats()
            t = time.perf_counter()
            rpc_models[m] = Model(full, rpc=f"127.0.0.1:{rproxy.port}", n_remote_layers=n_remote)
            run_rpc(rpc_models[m], rproxy, toks, 2, args.threads, False)  # warm-up
            r1 = rproxy.stats()
            setup[f"{m} model load + warm-up ({n_remote} layers remote)"] = {
                "up": r1["up"][0] - r0["up"][0], "down": r1["down"][0] - r0["down"][0],
                "seconds": round(time.perf_counter() - t, 2)}
        log(f"llm bench: {full.name} split at {at}/{n_layer}; {len(toks)} prompt tokens, {args.tokens} generated "
            f"per row; {args.rounds} rounds; threads {args.threads} per side; device on cores {dev_cores or 'all'}, "
            f"servers + proxies on {srv_cores or 'all'} ({os.cpu_count()} CPUs, {platform.machine()})")
        for k, v in setup.items():
            log(f"  setup: {k}: {v}")

        runs = []
        if args.resume and partial.exists():
            runs = json.loads(partial.read_text())["runs"]
            log(f"resuming: {len(runs)} rows from {partial}")
        done = {(r["round"], r["mode"], r["link"]) for r in runs}
        logs = {}
        ref_tokens = next((r["tokens"] for r in runs if r["mode"] == "device-only"), None)
        total = args.rounds * (1 + len(rtts) * len(modes))
        k = len(done)
        for rnd in range(args.rounds):
            # interleave: each round rotates the RTT order and the mode order
            r_rtts = rtts[rnd % len(rtts):] + rtts[:rnd % len(rtts)]
            r_modes = modes[rnd % len(modes):] + modes[:rnd % len(modes)]
            plan = [("device-only", None)] + [(m, rtt) for rtt in r_rtts for m in r_modes]
            for mode, rtt in plan:
                link = "local" if rtt is None else f"rtt {rtt:g} ms"
                if (rnd, mode, link) in done:
                    continue
                k += 1
                if mode in RPC_MODES and mode not in rpc_models:
                    continue
                if rtt is not None:
                    gproxy.delay(rtt)
                    if rpc_models:
                        rproxy.delay(rtt)
                if mode == "device-only":
                    c0 = _cpu_times()
                    g = dev.generate(args.prompt, mode="device-only", max_tokens=args.tokens, ignore_eog=True)
                    row, tokens, tlog = _timing(g.token_times), g.tokens, None
                    row.update(bytes_up=0, bytes_down=0, wire_up=0, wire_down=0, **_machine(c0, _cpu_times()))
                    ref_tokens = tokens
                elif mode in RPC_MODES:
                    row, tokens, tlog = run_rpc(rpc_models[mode], rproxy, toks, args.tokens, args.threads, rtt == 0)
                else:
                    row, tokens, tlog = run_collab(dev, client, gproxy, args.prompt, mode, args.tokens)
                row.update(mode=mode, link=link, rtt_ms=rtt, round=rnd, tokens=tokens,
                           same_tokens_as_device_only=None if ref_tokens is None or mode == "shortcut"
                           else tokens == ref_tokens)
                runs.append(row)
                if tlog is not None:
                    logs[(rnd, mode)] = tlog
                log(f"[{k}/{total}] round {rnd + 1} {mode:<12} {link:<12} TTFT {row['ttft_s'] * 1e3:7.1f} ms  "
                    f"TTST {row['ttst_s'] * 1e3:7.1f} ms  {row['tok_s']:6.1f} tok/s  wire up/down "
                    f"{row['wire_up']}/{row['wire_down']} B  busy {row['cpu_busy_frac']:.2f} steal "
                    f"{row['cpu_steal_frac']:.3f} load {row['loadavg_1m']:.1f}")
                partial.parent.mkdir(parents=True, exist_ok=True)
                partial.write_text(json.dumps({"runs": runs}))

        # ---- LTE traces: re-time each round's RTT-0 log -----------------------------------------
        traces, why = _traces(args.traces, args.quick)
        if why:
            skipped["traces"] = why
        for name, up, down in traces:
            for (rnd, mode), tl in sorted(logs.items()):
                times = retime(tl["events"], tl["marks"], up, down, args.trace_rtt)
                base = next(r for r in runs if r["round"] == rnd and r["mode"] == mode and r["rtt_ms"] == 0)
                row = _timing(times)
                row.update({k2: base[k2] for k2 in ("bytes_up", "bytes_down", "wire_up", "wire_down",
                                                    "cpu_busy_frac", "cpu_steal_frac", "loadavg_1m")})
                row.update(mode=mode, link=f"{name} +{args.trace_rtt:g} ms", rtt_ms=None, round=rnd,
                           simulated=True, same_tokens_as_device_only=base["same_tokens_as_device_only"])
                runs.append(row)
        if not logs and traces:
            skipped["traces"] = "no RTT-0 rows to re-time"
    finally:
        rpc_models.clear()  # free the RPC models while their server still runs (else ggml aborts)
        import gc

        gc.collect()
        for px in proxies:
            px.close()
        for pr in procs:
            pr.terminate()
            try:
                pr.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pr.kill()

    links = [f"rtt {r:g} ms" for r in rtts] + list(dict.fromkeys(r["link"] for r in runs if r.get("simulated"))) \
        + ["local"]
    summary = summarize(runs)
    rat = ratios(summary, links[:-1])
    print_table(summary, links)
    print("\nratios of medians (kv-handoff over the other mode):")
    for r in rat:
        print("  " + r["link"] + ": " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()
                                                  if k != "link" and v is not None))
    for k2, v in skipped.items():
        print(f"skipped {k2}: {v}")
    loads = [r["loadavg_1m"] for r in runs if "loadavg_1m" in r]
    print(f"load average during the rows: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs; "
          "CPU busy/steal per row are in the JSON")
    from collab.bench_io import save_json

    for r in runs:
        r.pop("tokens", None)
    res = {"model": str(full), "split_at": at, "n_layer": n_layer, "prompt": args.prompt,
           "prompt_tokens": int(len(toks)), "tokens_per_row": args.tokens, "rounds": args.rounds,
           "threads_per_side": args.threads, "device_cores": sorted(dev_cores or []), "device_cpu": device_cpu,
           "server_cores": sorted(srv_cores or []), "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "trace_base_rtt_ms": args.trace_rtt, "setup_bytes": setup, "skipped": skipped, "summary": summary,
           "ratios": rat, "runs": runs,
           "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    save_json(out, json.loads(json.dumps(res, default=lambda o: None), parse_constant=lambda c: None))
    plot(summary, links, out)
    partial.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
