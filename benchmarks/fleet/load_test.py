"""Load test of a local fleet: 1, 2, 4 replicas behind nginx (consistent hash on x-collab-session),
K concurrent clients mixing codec requests (unary) and split-LLM sessions (kv-handoff, a tiny
random GGUF), then chaos: one replica SIGKILLed and another drained (SIGTERM) mid-run.

    nice -n 5 python benchmarks/fleet/load_test.py                     # the full grid (~3 min)
    nice -n 5 python benchmarks/fleet/load_test.py --replicas 2 --clients 1 4 --seconds 3

Per cell: throughput (ok requests / s), p50/p99 latency by kind, errors by status, sessions
on the wrong replica (a key answered by another replica while its owner was alive: must be
0), requests lost (a caller saw an error: must be 0; the retry policy and the LLM failover
must hide replica loss). Loopback only; bounded (each cell runs --seconds); the fleet is
stopped in all cases. Client process pinned to CPU 0, replicas + nginx to CPU 1 (when the
machine has 2+ CPUs). Output: benchmarks/results/fleet_load.json + .png.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc
import numpy as np

from collab import codec
from collab.bench_io import pyplot, save_json, save_png
from collab.fleet import Fleet
from collab.llm import split_gguf
from collab.llm.device import Device
from collab.llm.failover import FailoverClient
from collab.llm.tiny import write_tiny_gguf
from collab.transport import Client, TransportError
from collab.transport import _wire as w
from collab.transport.common import REPLICA_HEADER, SESSION_HEADER
from collab.transport.retry import retry_options

RESULTS = Path("benchmarks/results")
PROMPTS = ["the cat sat on the mat", "hello world", "the dog is in the mat", "a cat and a dog"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(cpus):
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, cpus)


class Chaos:
    """Signals sent to replicas, with times: a key may move only after its owner was signaled."""

    def __init__(self):
        self.signaled = {}  # replica id -> perf_counter time

    def dead_before(self, replica: str, t: float) -> bool:
        ts = self.signaled.get(replica)
        return ts is not None and ts <= t


class Worker(threading.Thread):
    def __init__(self, idx, target, stop_at, chaos, head, llm_share, frame):
        super().__init__(daemon=True, name=f"client-{idx}")
        self.key = f"client-{idx}-{uuid.uuid4().hex[:8]}"
        self.rng = random.Random(idx)
        self.stop_at, self.chaos, self.llm_share, self.frame = stop_at, chaos, llm_share, frame
        self.opts = retry_options(max_attempts=5, initial_backoff_s=0.05, max_backoff_s=0.5)
        self.channel = grpc.insecure_channel(target, options=self.opts)
        self.infer = self.channel.unary_unary(w.INFER)
        self.client = Client(target, options=self.opts)
        self.llm = FailoverClient(self.client, backoff_s=0.05)
        self.device = Device(head=head, n_ctx=256, n_threads=1)
        self.records = []  # (kind, ok, status, latency_s, t_end)
        self.failures = []
        self.owner = None
        self.wrong = 0
        self.moved = 0

    def _served_by(self, replica, t_end):
        if not replica:
            return
        if self.owner is None:
            self.owner = replica
        elif replica != self.owner:
            if self.chaos.dead_before(self.owner, t_end):
                self.moved += 1  # its replica was killed / drained: moving is the failover
                self.owner = replica
            else:
                self.wrong += 1

    def _codec(self):
        req = w.make_frame(task="codec-stats", payload=self.frame, meta={"request_id": uuid.uuid4().hex[:16]})
        _, call = self.infer.with_call(req.SerializeToString(), timeout=30,
                                       metadata=((SESSION_HEADER, self.key),))
        return dict(call.initial_metadata()).get(REPLICA_HEADER, "")

    def run(self):
        while time.perf_counter() < self.stop_at:
            kind = "llm" if self.rng.random() < self.llm_share else "codec"
            t0 = time.perf_counter()
            status, replicas, detail = "OK", [], ""
            try:
                if kind == "codec":
                    replicas = [self._codec()]
                else:
                    rec = _Recorder(self.llm, self.key)
                    self.device.generate(self.rng.choice(PROMPTS), mode="kv-handoff", client=rec, max_tokens=8,
                                         chat=False)
                    replicas = rec.replicas
            except grpc.RpcError as e:
                status, detail = e.code().name, e.details() or ""
            except TransportError as e:
                status, detail = e.code, e.details
            except EOFError:
                status = "EOF"
            except Exception as e:  # a client-side bug counts as a lost request, not a dead thread
                status = f"client:{type(e).__name__}: {e}"[:120]
            t1 = time.perf_counter()
            for r in replicas:  # more than one: an LLM session that failed over
                self._served_by(r, t1)
            self.records.append((kind, status == "OK", status, t1 - t0, t1))
            if status != "OK":
                self.failures.append({"kind": kind, "status": status, "detail": detail[:200], "t_end": t1})
        self.client.close()
        self.channel.close()


class _Recorder:
    """Passes the worker's session key to FailoverClient and keeps the replicas that served."""

    def __init__(self, fc, key):
        self.fc, self.key, self.replicas = fc, key, []

    def session(self, task, meta=None):
        s = self.fc.session(task, meta, session_key=self.key, timeout=60)
        self.replicas = s.replicas  # the live list: failovers append to it
        return s


def pct(xs, q):
    return float(np.percentile(xs, q)) if xs else float("nan")


def run_cell(target, fleet, n_clients, seconds, head, llm_share, frame, chaos_plan=None, warmup=0.0):
    """warmup: seconds at the start whose requests are run but left out of the latency numbers
    (never out of the lost / wrong-replica counts)."""
    chaos = Chaos()
    stop_at = time.perf_counter() + warmup + seconds
    workers = [Worker(i, target, stop_at, chaos, head, llm_share, frame) for i in range(n_clients)]
    t0 = time.perf_counter()
    for wk in workers:
        wk.start()
    events = []
    if chaos_plan:
        for at, rid, sig in chaos_plan:
            time.sleep(max(0.0, t0 + warmup + at * seconds - time.perf_counter()))
            chaos.signaled[rid] = time.perf_counter()
            fleet.signal(rid, sig)
            events.append({"t_s": round(time.perf_counter() - t0, 3), "replica": rid, "signal": sig.name})
            print(f"    chaos: {sig.name} -> {rid}", flush=True)
    for wk in workers:
        wk.join(seconds + 120)
    wall = time.perf_counter() - t0 - warmup
    every = [r for wk in workers for r in wk.records]
    recs = [r for r in every if r[4] - r[3] >= t0 + warmup]
    out = {"clients": n_clients, "wall_s": wall, "requests": len(recs),
           "ok": sum(r[1] for r in recs), "throughput_rps": sum(r[1] for r in recs) / wall,
           "errors_by_status": dict(Counter(r[2] for r in every if not r[1])),
           "failures": [{"kind": f["kind"], "status": f["status"], "detail": f["detail"],
                         "t_s": round(f["t_end"] - t0, 3)}
                        for wk in workers for f in wk.failures][:20],
           "lost": sum(not r[1] for r in every), "requests_incl_warmup": len(every),
           "wrong_replica": sum(wk.wrong for wk in workers),
           "keys_moved_after_failure": sum(wk.moved for wk in workers),
           "llm_failovers": sum(wk.llm.failovers for wk in workers), "events": events, "hung_clients":
               sum(wk.is_alive() for wk in workers)}
    for kind in ("codec", "llm"):
        lat = [r[3] for r in recs if r[0] == kind and r[1]]
        out[kind] = {"n": len(lat), "p50_ms": 1e3 * pct(lat, 50), "p99_ms": 1e3 * pct(lat, 99),
                     "rps": len(lat) / wall}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicas", type=int, nargs="*", default=[1, 2, 4], help="fleet sizes of the grid")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--seconds", type=float, default=4.0, help="per cell")
    ap.add_argument("--warmup", type=float, default=1.0, help="per cell, left out of throughput and latency")
    ap.add_argument("--chaos-seconds", type=float, default=8.0)
    ap.add_argument("--chaos-clients", type=int, nargs="*", default=[16, 64])
    ap.add_argument("--chaos-repeat", type=int, default=1, help="chaos runs per K, each on a fresh fleet")
    ap.add_argument("--llm-share", type=float, default=0.3, help="fraction of operations that are LLM sessions")
    ap.add_argument("--no-direct", dest="direct", action="store_false",
                    help="skip the baseline: one server, clients connected to it without the proxy")
    ap.add_argument("--out", default=str(RESULTS / "fleet_load.json"))
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG of --out from its JSON")
    args = ap.parse_args()
    if args.plot_only:
        import json
        plot(json.loads(Path(args.out).read_text()), args.out)
        return 0
    ncpu = os.cpu_count() or 1
    tmp = tempfile.TemporaryDirectory(prefix="collab-fleet-load-")
    model = write_tiny_gguf(Path(tmp.name) / "tiny.gguf", n_layer=4, seed=0)
    head, tail = split_gguf(model, Path(tmp.name) / "split", 2)
    frame = codec.encode(np.random.default_rng(0).standard_normal((16, 384)).astype(np.float32), 0.0)
    tasks = ["codec-stats", "llm=collab.llm.server:LlmTask"]
    task_args = [f"llm.head={head}", f"llm.tail={tail}", "llm.n_ctx=256", "llm.n_threads=1", "llm.max_sessions=64"]
    result = {"machine": {"cpus": ncpu, "loadavg_start": os.getloadavg()},
              "setup": {"tasks": tasks, "llm": "tiny random llama GGUF (4 layers, n_embd 64) split at 2, kv-handoff, "
                        "8 new tokens", "codec_frame_bytes": len(frame), "llm_share": args.llm_share,
                        "workers_per_replica": 1, "max_queue": 256, "seconds_per_cell": args.seconds,
                        "warmup_s": args.warmup,
                        "vit": "left out: one Mercury ViT-S tail request costs ~2.8 s of CPU on this machine"},
              "cells": [], "direct": [], "chaos": []}
    plan = sorted(set(args.replicas) | ({4} if args.chaos_clients else set()))
    for n in plan:
        pin({1} if ncpu >= 2 else {0})  # replicas + nginx inherit CPU 1
        fleet = Fleet(Path(tmp.name) / f"fleet-{n}")
        try:
            t = time.perf_counter()
            fleet.up(n, free_port(), tasks, task_args, workers=1, drain_timeout=5.0,
                     serve_args=["--max-queue", "256", "--max-sessions", "256"], timeout=180)
            print(f"{n} replicas up in {time.perf_counter() - t:.1f}s", flush=True)
            pin({0})
            if n in args.replicas:
                for k in args.clients:
                    c = run_cell(fleet.target, fleet, k, args.seconds, head, args.llm_share, frame,
                                 warmup=args.warmup)
                    c["replicas"] = n
                    result["cells"].append(c)
                    if n == 1 and args.direct:  # baseline: what a user runs today, one server, no proxy
                        d = run_cell(f"127.0.0.1:{fleet.replicas[0]['port']}", fleet, k, args.seconds, head,
                                     args.llm_share, frame, warmup=args.warmup)
                        d["replicas"] = "1-direct"
                        result["direct"].append(d)
                        print(f"  direct K={k:3d}: {d['throughput_rps']:7.1f} req/s  codec p50 "
                              f"{d['codec']['p50_ms']:.1f} p99 {d['codec']['p99_ms']:.1f} ms  llm p50 "
                              f"{d['llm']['p50_ms']:.0f} p99 {d['llm']['p99_ms']:.0f} ms", flush=True)
                    print(f"  R={n} K={k:3d}: {c['throughput_rps']:7.1f} req/s  codec p50 {c['codec']['p50_ms']:.1f} "
                          f"p99 {c['codec']['p99_ms']:.1f} ms  llm p50 {c['llm']['p50_ms']:.0f} p99 "
                          f"{c['llm']['p99_ms']:.0f} ms  lost {c['lost']} wrong {c['wrong_replica']}", flush=True)
            if n == 4:
                runs = [(r, k) for r in range(args.chaos_repeat) for k in args.chaos_clients]
                for i, (r, k) in enumerate(runs):
                    if i:  # fresh fleet: the last one lost two replicas
                        fleet.down(timeout=10)
                        pin({1} if ncpu >= 2 else {0})
                        fleet = Fleet(Path(tmp.name) / f"fleet-{n}-{i}")
                        fleet.up(n, free_port(), tasks, task_args, workers=1, drain_timeout=5.0,
                                 serve_args=["--max-queue", "256", "--max-sessions", "256"], timeout=180)
                        pin({0})
                    c = run_cell(fleet.target, fleet, k, args.chaos_seconds, head, args.llm_share, frame,
                                 chaos_plan=[(0.3, "r1", signal.SIGKILL), (0.55, "r2", signal.SIGTERM)],
                                 warmup=args.warmup)
                    c["replicas"], c["repeat"] = n, r
                    result["chaos"].append(c)
                    print(f"  CHAOS R=4 K={k}: {c['throughput_rps']:.1f} req/s lost {c['lost']} wrong "
                          f"{c['wrong_replica']} moved {c['keys_moved_after_failure']} llm failovers "
                          f"{c['llm_failovers']} errors {c['errors_by_status']}", flush=True)
        finally:
            fleet.down(timeout=15)
    result["machine"]["loadavg_end"] = os.getloadavg()
    save_json(args.out, result)
    plot(result, args.out)
    bad = sum(c["lost"] + c["wrong_replica"] + c["hung_clients"] for c in result["cells"] + result["chaos"])
    return 0 if bad == 0 else 1


def plot(result, out):
    plt = pyplot()
    if plt is None:
        return
    if not result["cells"]:
        return plot_chaos(plt, result["chaos"], out)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for n in sorted({c["replicas"] for c in result["cells"]}) + (["1-direct"] if result["direct"] else []):
        cs = [c for c in result["cells"] + result["direct"] if c["replicas"] == n]
        ks = [c["clients"] for c in cs]
        name = "1 server, no proxy" if n == "1-direct" else f"{n} replica{'s' if n > 1 else ''} + nginx"
        axes[0].plot(ks, [c["throughput_rps"] for c in cs], "o-", label=name)
        (line,) = axes[1].plot(ks, [c["codec"]["p99_ms"] for c in cs], "o-", label=f"p99, {name}")
        axes[1].plot(ks, [c["codec"]["p50_ms"] for c in cs], "x--", color=line.get_color(), label=f"p50, {name}")
        axes[2].plot(ks, [c["llm"]["p99_ms"] for c in cs], "o-", label=f"p99, {name}")
    for ax, t in zip(axes, ("throughput (ok requests/s)", "codec latency (ms)", "LLM session latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients K")
        ax.set_title(t)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    ch = result["chaos"]
    if ch:
        txt = f"{len(ch)} chaos runs (K={sorted({c['clients'] for c in ch})}, SIGKILL + drain): lost " \
              f"{sum(c['lost'] for c in ch)}, wrong replica {sum(c['wrong_replica'] for c in ch)}, " \
              f"LLM failovers {sum(c['llm_failovers'] for c in ch)}"
        fig.suptitle(f"fleet behind nginx on {result['machine']['cpus']} CPUs - {txt}", fontsize=9)
    save_png(fig, out)


def plot_chaos(plt, runs, out):
    """One group of bars per chaos run: what happened to the calls while r1 died and r2 drained."""
    fig, ax = plt.subplots(figsize=(9, 4))
    keys = [("requests_incl_warmup", "calls"), ("keys_moved_after_failure", "keys moved"),
            ("llm_failovers", "LLM sessions recovered"), ("lost", "lost"), ("wrong_replica", "wrong replica")]
    x = np.arange(len(runs))
    for j, (k, label) in enumerate(keys):
        vals = [c[k] for c in runs]
        ax.bar(x + (j - 2) * 0.16, vals, 0.16, label=label)
    ax.set_xticks(x, [f"K={c['clients']} #{c.get('repeat', 0) + 1}" for c in runs])
    ax.set_yscale("symlog")
    ax.set_title("4 replicas behind nginx; r1 SIGKILLed at 30%, r2 drained at 55% of each run")
    ax.legend(fontsize=8)
    save_png(fig, out)


if __name__ == "__main__":
    raise SystemExit(main())
