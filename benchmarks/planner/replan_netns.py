"""Re-planning over a real, trace-shaped network: the device process (its own network namespace)
runs the DINOv2-S pieces up to the planned split, encodes the feature with the planned sparsity,
and sends it over gRPC to a `collab serve` process (another namespace) across a veth pair whose
tc rate follows a mahimahi trace (collab.net.netns: TraceShaper + user-space RTT proxy). Before
each request the Replanner plans with the EWMA of the transfer times it measured so far.

    sudo python benchmarks/planner/replan_netns.py [--trace T.up] [--duration-s 60]

Needs root, `ip` and `tc`; exits 0 with the reason when namespaces cannot be used. The server
hosts the built-in `codec-stats` task (decodes the frame; the tail's compute is not run there:
its time is the profile's). Writes benchmarks/results/replan_netns.{json,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

from collab.bench_io import pyplot, save_json, save_png

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"  # shared by every benchmark folder
TRACES = HERE.parent.parent.parent / "shared" / "traces"
if not TRACES.is_dir():
    TRACES = pathlib.Path("/work/shared/traces")


def client_role(args):
    """Runs inside the client namespace."""
    from collab import codec, net, planner
    from collab.vit.profile import OnnxPieces, smooth_input
    from collab.transport.client import Client

    prof = planner.load_profile(args.profile)
    cal = planner.load_calibration(args.calibration)
    trace = net.load_trace(args.trace)
    space = planner.SearchSpace(allow_raw=False)  # codec-stats decodes frames: no raw input
    base = planner.Planner(prof, cal, net.FixedRateLink(trace.mean_bps()), rtt_ms=args.rtt_ms,
                           budget=planner.Budget(deadline_ms=args.deadline_ms), space=space)
    rp = planner.Replanner(base, alpha=args.alpha, initial_bps=trace.mean_bps(), safety=args.safety)
    pieces = OnnxPieces(threads=1)
    x = smooth_input(pieces.input_shape)
    act = x
    for i in range(len(pieces)):  # build and warm every piece before the clock starts
        act = pieces.run(i, act, x)
    recs = []
    with Client(args.target, timeout=120) as c:
        c.wait_ready(30)
        c.infer("echo", b"", {"echo.reply_bytes": "0"})
        while time.monotonic() < args.t0:
            time.sleep(0.001)
        while time.monotonic() - args.t0 < args.duration_s:
            t_ms = (time.monotonic() - args.t0) * 1e3
            plan = rp.plan(t_ms)
            est = rp.history[-1][1]
            t1 = time.perf_counter()
            act = x
            for i in range(plan.split):
                act = pieces.run(i, act, x)
            t2 = time.perf_counter()
            frame = codec.encode(act, plan.sparsity, blocks=plan.blocks, qbits=plan.qbits)
            t3 = time.perf_counter()
            send_ms = (time.monotonic() - args.t0) * 1e3
            _, _, tim = c.infer("codec-stats", frame, {"split": str(plan.split)})
            rp.observe(len(frame), tim["transfer"], rtt_s=args.rtt_ms / 1e3)
            recs.append(dict(t_ms=t_ms, send_ms=send_ms, split=plan.split, sparsity=plan.sparsity,
                             blocks=list(plan.blocks), bytes=len(frame), predicted_bytes=plan.bits / 8,
                             est_bps=est, device_ms=(t2 - t1) * 1e3, encode_ms=(t3 - t2) * 1e3,
                             transfer_ms=tim["transfer"] * 1e3, predicted_transfer_ms=plan.transfer_ms,
                             predicted_latency_ms=plan.latency_ms,
                             latency_ms=(t2 - t1) * 1e3 + (t3 - t2) * 1e3 + tim["transfer"] * 1e3))
            print(f"[replan-netns] t={t_ms / 1e3:5.1f}s est {est / 1e6:6.2f} Mbit/s -> split {plan.split:2d} "
                  f"s={plan.sparsity:<4} {len(frame) / 1024:6.1f} KiB in {tim['transfer'] * 1e3:7.1f} ms",
                  file=sys.stderr, flush=True)
            if args.gap_s > 0:
                time.sleep(args.gap_s)
    with open(args.out + ".tmp", "w") as f:
        json.dump(recs, f)
    os.replace(args.out + ".tmp", args.out)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=("orchestrate", "client"), default="orchestrate")
    ap.add_argument("--trace", default=str(TRACES / "ATT-LTE-driving-2016.up"))
    ap.add_argument("--profile", default=str(RESULTS / "vit_s_profile.json"))
    ap.add_argument("--calibration", default=str(RESULTS / "codec_calibration.json"))
    ap.add_argument("--duration-s", type=float, default=60.0)
    ap.add_argument("--deadline-ms", type=float, default=0.0, help="D (default: device time of 9 layers + 120 ms)")
    ap.add_argument("--rtt-ms", type=float, default=40.0)
    ap.add_argument("--alpha", type=float, default=0.3)
    ap.add_argument("--safety", type=float, default=0.8)
    ap.add_argument("--gap-s", type=float, default=0.2)
    ap.add_argument("--bin-ms", type=float, default=50.0)
    ap.add_argument("--target")
    ap.add_argument("--t0", type=float)
    ap.add_argument("--out", default=str(RESULTS / "replan_netns"))
    args = ap.parse_args(argv)
    if args.role == "client":
        return client_role(args)

    from collab import net, planner
    from collab.net import netns

    reason = netns.unavailable_reason()
    if reason:
        print(f"skipped: network namespaces / tc unavailable here: {reason}")
        return 0
    if not pathlib.Path(args.trace).exists():
        print(f"skipped: trace {args.trace} not found")
        return 0
    prof = planner.load_profile(args.profile)
    args.deadline_ms = args.deadline_ms or float(prof.device_ms()[9] + 120.0)
    trace = net.load_trace(args.trace)
    py = sys.executable
    procs = []
    with tempfile.TemporaryDirectory() as tmp, netns.NetnsLink() as link:
        try:
            port_file = os.path.join(tmp, "port")
            procs.append(link.popen("server", [py, "-m", "collab.cli", "serve", "--host", link.ip["server"], "--port",
                                               "0", "--port-file", port_file, "--task", "echo", "--task",
                                               "codec-stats", "--workers", "2", "--log-level", "WARNING"]))
            netns.wait_file(port_file, procs[-1], "server")
            port = open(port_file).read().strip()
            proxy, pport = link.start_proxy(f"{link.ip['server']}:{port}", args.rtt_ms, os.path.join(tmp, "proxy"))
            procs.append(proxy)
            t0 = time.monotonic() + 12.0  # the client loads the model and warms up first
            shaper = netns.TraceShaper(link, up=trace.timestamps, bin_ms=args.bin_ms).start(t0)
            out = os.path.join(tmp, "client.json")
            print(f"[replan-netns] {link.ns['client']} -> {link.ns['server']}: {trace.name}, RTT {args.rtt_ms} ms, "
                  f"D = {args.deadline_ms:.0f} ms, {args.duration_s:g} s", flush=True)
            try:
                r = link.run("client", [py, str(pathlib.Path(__file__).resolve()), "--role", "client", "--target",
                                        f"127.0.0.1:{pport}", "--t0", repr(t0), "--trace", args.trace, "--profile",
                                        args.profile, "--calibration", args.calibration, "--duration-s",
                                        str(args.duration_s), "--deadline-ms", str(args.deadline_ms), "--rtt-ms",
                                        str(args.rtt_ms), "--alpha", str(args.alpha), "--safety", str(args.safety),
                                        "--gap-s", str(args.gap_s), "--out", out],
                             stderr=None, timeout=args.duration_s + 300)
            finally:
                shaper.stop()
            if r.returncode != 0:
                print(f"client failed with status {r.returncode}")
                return 1
            recs = json.load(open(out))
        finally:
            for p in procs:
                p.kill()
                p.wait()
    # what the simulator says for the same transfers (uplink on the trace + RTT; small reply)
    for rec in recs:
        wire = netns.wire_packets(rec["bytes"]) * net.PACKET_BYTES
        rec["simulated_transfer_ms"] = float(net.transfer_time(wire, rec["send_ms"], trace, args.rtt_ms))
        rec["trace_bps"] = trace.bps_between(max(0.0, rec["send_ms"] - 500), rec["send_ms"] + 500)
    lat = np.array([r["latency_ms"] for r in recs])
    meas = np.array([r["transfer_ms"] for r in recs])
    sim = np.array([r["simulated_transfer_ms"] for r in recs])
    summary = dict(trace=trace.name, requests=len(recs), deadline_ms=args.deadline_ms, rtt_ms=args.rtt_ms,
                   safety=args.safety, alpha=args.alpha, deadline_met=float(np.mean(lat <= args.deadline_ms)),
                   distinct_plans=len({(r["split"], r["sparsity"]) for r in recs}),
                   splits=sorted({r["split"] for r in recs}), sparsities=sorted({r["sparsity"] for r in recs}),
                   median_abs_sim_error_ms=float(np.median(np.abs(meas - sim))),
                   median_rel_sim_error=float(np.median(np.abs(meas - sim) / np.maximum(sim, 1e-9))),
                   loadavg=os.getloadavg())
    print(f"\n{'t (s)':>6} {'trace Mbit/s':>12} {'EWMA':>7} {'split':>5} {'s':>5} {'KiB':>7} {'transfer ms':>11} "
          f"{'simulated':>9} {'latency':>8}")
    prev = None
    for r in recs:
        if (r["split"], r["sparsity"]) != prev:
            print(f"{r['t_ms'] / 1e3:6.1f} {r['trace_bps'] / 1e6:12.2f} {r['est_bps'] / 1e6:7.2f} {r['split']:>5} "
                  f"{r['sparsity']:>5} {r['bytes'] / 1024:7.1f} {r['transfer_ms']:11.1f} "
                  f"{r['simulated_transfer_ms']:9.1f} {r['latency_ms']:8.1f}")
            prev = (r["split"], r["sparsity"])
    print(f"\n{len(recs)} requests, {summary['distinct_plans']} distinct plans (splits {summary['splits']}), deadline "
          f"met {summary['deadline_met']:.1%}; measured vs simulated transfer: median |error| "
          f"{summary['median_abs_sim_error_ms']:.1f} ms ({summary['median_rel_sim_error']:.0%})")
    outp = pathlib.Path(args.out)
    save_json(outp.with_suffix(".json"), dict(summary=summary, requests=recs))
    plt = pyplot()
    if plt is None:
        return 0
    tt = np.array([r["t_ms"] for r in recs]) / 1e3
    fig, ax = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    wt, wb = trace.windowed_bps(500, duration_ms=args.duration_s * 1e3)
    ax[0].step(wt / 1e3, wb / 1e6, where="post", lw=0.8, label="trace capacity (500 ms windows; tc follows it)")
    ax[0].plot(tt, [r["est_bps"] / 1e6 for r in recs], lw=1.2, label="EWMA of measured gRPC transfers")
    ax[0].set_ylabel("Mbit/s")
    ax[0].legend(fontsize=8, loc="upper right")
    ax[0].set_title(f"re-planning DINOv2-S over a tc-shaped gRPC link ({trace.name}, D={args.deadline_ms:.0f} ms)")
    ax[1].step(tt, [r["split"] for r in recs], where="post")
    ax[1].set_ylabel(f"split (of {prof.n_layers})")
    ax[2].step(tt, [r["sparsity"] for r in recs], where="post")
    ax[2].set_ylabel("sparsity")
    ax[2].set_xlabel("time (s)")
    save_png(fig, outp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
