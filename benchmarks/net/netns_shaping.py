"""Real shaping vs the simulator: gRPC requests across a veth pair in two network namespaces,
tc (tbf / htb) following mahimahi traces, RTT from a user-space delaying proxy. For each request
the measured transfer time (client round trip minus server time and client serialization) is
compared with the simulator's prediction for the same bytes and start time on the same trace.

    sudo python benchmarks/net/netns_shaping.py            # full (a few minutes)
    sudo python benchmarks/net/netns_shaping.py --quick    # ~1 minute

Needs root and iproute2. Traces: the recorded mahimahi traces in ../shared/traces (or
--trace-dir); when none of them is there (a fresh clone), a seeded synthetic cellular-like trace
from collab.net.synthetic_trace is generated and used instead (`--traces synthetic` forces it).
Prints a table and writes benchmarks/results/netns_shaping.json and .png.
"""
from __future__ import annotations

import argparse
import atexit
import os
import pathlib
import platform
import shutil
import signal
import sys
import tempfile
import time

import numpy as np
from shaping import shaping_experiment  # this folder's experiment module (the script's own directory)

from collab import net
from collab.bench_io import pyplot, save_json
from collab.net import netns

HERE = pathlib.Path(__file__).resolve().parent
# the recorded traces live next to the repository (../shared/traces), not in it
DEFAULT_TRACES = next((p / "shared" / "traces" for p in HERE.parents if (p / "shared" / "traces").is_dir()),
                      HERE / "traces")


def synthetic_pair(directory: str, seed: int):
    """Write a synthetic up/down trace pair (8 / 16 Mbit/s means, 30 s, seeded); returns the name."""
    name = "synthetic"
    net.write_trace(os.path.join(directory, name + ".up"), net.synthetic_trace(30, 8.0, seed=seed))
    net.write_trace(os.path.join(directory, name + ".down"), net.synthetic_trace(30, 16.0, seed=seed + 1))
    return name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--trace-dir", default=str(DEFAULT_TRACES))
    ap.add_argument("--traces", default="TMobile-LTE-short,Verizon-LTE-short,ATT-LTE-driving,TMobile-UMTS-driving",
                    help="comma-separated trace names (<name>.up / <name>.down)")
    ap.add_argument("--rtt-ms", default="20,80")
    ap.add_argument("--qdisc", default="tbf,htb")
    ap.add_argument("--n", type=int, default=None, help="requests per configuration (default 24; --quick 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE.parent / "results" / "netns_shaping.json"))
    ap.add_argument("--replot", action="store_true", help="only redraw the PNG from an existing --out JSON")
    args = ap.parse_args(argv)
    if args.replot:
        import json
        plot(json.loads(pathlib.Path(args.out).read_text())["runs"], pathlib.Path(args.out))
        return 0
    # SIGTERM -> SystemExit, so the namespaces are removed on the way out
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    reason = netns.unavailable_reason()
    if reason:
        print(f"netns_shaping: cannot run: {reason}", file=sys.stderr)
        return 2
    traces = args.traces.split(",")
    synth_dir = tempfile.mkdtemp(prefix="collab-traces-")
    atexit.register(shutil.rmtree, synth_dir, True)
    if traces == ["synthetic"] or not any(os.path.exists(os.path.join(args.trace_dir, t + ".up")) for t in traces):
        if traces != ["synthetic"]:
            print(f"no recorded trace in {args.trace_dir}: using a synthetic trace (collab.net.synthetic_trace)",
                  file=sys.stderr)
        traces, args.trace_dir = [synthetic_pair(synth_dir, args.seed)], synth_dir
    rtts = [float(r) for r in args.rtt_ms.split(",")]
    qdiscs = args.qdisc.split(",")
    n = args.n or (10 if args.quick else 24)
    if args.quick:
        traces, rtts, qdiscs = traces[:1], rtts[:1], qdiscs[:2]
    rng = np.random.default_rng(args.seed)
    runs = []
    configs = [(t, r, q) for t in traces for r in rtts for q in qdiscs]
    for ci, (trace, rtt, qdisc) in enumerate(configs):
        up = os.path.join(args.trace_dir, trace + ".up")
        down = os.path.join(args.trace_dir, trace + ".down")
        if not (os.path.exists(up) and os.path.exists(down)):
            print(f"skip {trace}: no {up} / {down}", file=sys.stderr)
            continue
        sizes = np.exp(rng.uniform(np.log(5e3), np.log(1e6), n)).astype(int).tolist()
        print(f"[{ci + 1}/{len(configs)}] {trace} rtt={rtt:g}ms {qdisc}: {n} requests", file=sys.stderr, flush=True)
        t = time.monotonic()
        res = shaping_experiment(up, down, sizes, rtt_ms=rtt, qdisc=qdisc, gap_s=0.1, log=lambda m: None)
        res["config"].update(trace=trace, wall_s=time.monotonic() - t)
        res["config"].pop("tc_up_stats", None)
        runs.append(res)
    if not runs:
        print("no trace found", file=sys.stderr)
        return 2
    hdr = f"{'trace':<22} {'rtt':>5} {'qdisc':>5} {'n':>3} {'fail':>4} {'mean|rel|':>9} {'med|rel|':>9} {'p90|rel|':>9} " \
          f"{'bias ms':>8} {'med|err| ms':>11}"
    print(hdr)
    print("-" * len(hdr))
    for r in runs:
        c, s = r["config"], r["summary"]
        print(f"{c['trace']:<22} {c['rtt_ms']:>5.0f} {c['qdisc']:>5} {s['n']:>3} {s['failed']:>4} {100 * s['mean_abs_rel_error']:>8.1f}% "
              f"{100 * s['median_abs_rel_error']:>8.1f}% {100 * s['p90_abs_rel_error']:>8.1f}% "
              f"{s['mean_error_ms']:>8.1f} {s['median_abs_error_ms']:>11.1f}")
    out = pathlib.Path(args.out)
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "quick": args.quick,
            "note": "measured = client round trip - server time - client (de)serialization; predicted = "
                    "simulator(up bytes on wire, start) + rtt/2 + simulator(reply, ...) + rtt/2"}
    save_json(out, {"meta": meta, "runs": runs})
    plot(runs, out)
    return 0


def plot(runs, out: pathlib.Path):
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.5))
    for r in runs:
        c = r["config"]
        m = np.array([x["measured_ms"] for x in r["records"]])
        p = np.array([x["predicted_ms"] for x in r["records"]])
        lab = f"{c['trace']} rtt{c['rtt_ms']:g} {c['qdisc']}"
        ax[0].scatter(p, m, s=12, label=lab)
        ax[1].scatter([x["bytes"] / 1e3 for x in r["records"]], 100 * (m - p) / p, s=12, label=lab)
    lim = max(max(x["predicted_ms"] for r in runs for x in r["records"]),
              max(x["measured_ms"] for r in runs for x in r["records"]))
    ax[0].plot([1, lim], [1, lim], "k--", lw=0.8)
    ax[0].set(xscale="log", yscale="log", xlabel="simulator prediction (ms)", ylabel="measured over netns+tc (ms)",
              title="transfer time: measured vs simulated")
    ax[1].axhline(0, color="k", lw=0.8)
    ax[1].set(xscale="log", yscale="symlog", xlabel="payload (kB)", ylabel="error (%, symlog)",
              title="relative error (measured - predicted) / predicted")
    ax[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    print(f"wrote {out.with_suffix('.png')}")


if __name__ == "__main__":
    sys.exit(main())
