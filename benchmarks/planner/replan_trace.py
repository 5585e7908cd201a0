"""Re-planning over a real bandwidth trace: the device sends one DINOv2-S request every
--period-ms; before each, the Replanner plans with its EWMA bandwidth estimate; the transfer
is then simulated on the real mahimahi trace (collab.net, deterministic) and its measured time
fed back. Compared with a static plan made once at the trace's mean bandwidth, and with an
oracle that plans on the real trace itself (knows the future: an upper bound for any estimator).

    python benchmarks/planner/replan_trace.py                                 # measures profile + calibration first
    python benchmarks/planner/replan_trace.py --profile P.json --calibration C.json --trace X.up

Writes benchmarks/results/replan_trace.json and .png (bandwidth vs chosen split / sparsity),
prints the plan changes and a summary table. Payload sizes are the codec's predicted bound
(predict_bits) for each plan; device/codec/server times come from the profile and calibration.
"""
from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

import numpy as np

from collab import net, planner

from collab.bench_io import pyplot, save_json, save_png

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"  # shared by every benchmark folder
DEFAULT_TRACE = HERE.parent.parent.parent / "shared" / "traces" / "ATT-LTE-driving-2016.up"
if not DEFAULT_TRACE.exists():
    DEFAULT_TRACE = pathlib.Path("/work/shared/traces/ATT-LTE-driving-2016.up")


def walk(base, trace, *, alpha, safety, rtt_ms, start_ms, period_ms, n_req, mode="ewma"):
    """Re-planned requests over the trace: [(t, plan, estimate, actual latency ms, bytes)]."""
    rp = planner.Replanner(base, alpha=alpha, initial_bps=trace.mean_bps(), safety=safety, mode=mode)
    out = []
    for k in range(n_req):
        t = start_ms + k * period_ms
        plan = rp.plan(t)
        est = rp.history[-1][1]
        nbytes = math.ceil(plan.bits / 8)
        start = t + plan.device_ms + plan.encode_ms
        ms = float(trace.transfer_time(nbytes, start, rtt_ms=rtt_ms))
        rp.observe(nbytes, ms / 1000, rtt_s=rtt_ms / 1000)
        out.append((t, plan, est, plan.device_ms + plan.encode_ms + ms, nbytes))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", default=str(DEFAULT_TRACE))
    ap.add_argument("--profile", help="device profile JSON (default: run `collab profile` now)")
    ap.add_argument("--calibration", help="codec calibration JSON (default: run `collab calibrate` now, small)")
    ap.add_argument("--deadline-ms", type=float, default=0.0,
                    help="latency budget D (default: device time of 60%% of the layers + 150 ms)")
    ap.add_argument("--rtt-ms", type=float, default=40.0)
    ap.add_argument("--period-ms", type=float, default=500.0, help="one request every this many ms")
    ap.add_argument("--duration-s", type=float, default=0.0, help="walk this long (default: one trace period)")
    ap.add_argument("--alpha", type=float, default=0.3, help="EWMA weight of the newest transfer")
    ap.add_argument("--safety", type=float, default=0.8, help="plan at this fraction of the EWMA estimate")
    ap.add_argument("--sweep", default="1.0,0.8,0.5,0.3",
                    help="also walk with these safety factors, EWMA and harmonic-mean estimators, and report "
                         "deadline met vs mean split ('' = none)")
    ap.add_argument("--start-s", type=float, default=0.0, help="start this far into the trace")
    ap.add_argument("--out", default=str(RESULTS / "replan_trace"))
    args = ap.parse_args(argv)

    if not pathlib.Path(args.trace).exists():
        print(f"trace {args.trace} not found; pass --trace PATH (any mahimahi file)")
        return 2
    trace = net.load_trace(args.trace)
    if args.profile:
        prof = planner.load_profile(args.profile)
    else:
        from collab.vit.profile import profile_onnx_layers

        prof = profile_onnx_layers(repeats=5)
        RESULTS.mkdir(parents=True, exist_ok=True)
        prof.save(RESULTS / "vit_s_profile.json")
    if args.calibration:
        cal = planner.load_calibration(args.calibration)
    else:
        cal = planner.measure_calibration(sizes=(1024, 16384, 98688, 393216), repeats=3)
        cal.save(RESULTS / "codec_calibration.json")

    dev = prof.device_ms()
    D = args.deadline_ms or float(dev[int(round(0.6 * prof.n_layers))] + 150.0)
    space = planner.SearchSpace()
    budget = planner.Budget(deadline_ms=D)
    base = planner.Planner(prof, cal, net.FixedRateLink(trace.mean_bps()), rtt_ms=args.rtt_ms, budget=budget,
                           space=space)
    static = base.search()
    oracle = base.with_link(trace)
    duration = (args.duration_s * 1000) or trace.period_ms
    n_req = int(duration // args.period_ms)
    t_wall = time.perf_counter()
    walked = walk(base, trace, alpha=args.alpha, safety=args.safety, rtt_ms=args.rtt_ms,
                  start_ms=args.start_s * 1000, period_ms=args.period_ms, n_req=n_req)
    plan_s = (time.perf_counter() - t_wall) / max(1, n_req)
    rows = []
    for k, (t, plan, est, actual, nbytes) in enumerate(walked):
        # the static plan on the same trace
        s_bytes = math.ceil(static.bits / 8)
        s_ms = float(trace.transfer_time(s_bytes, t + static.device_ms + static.encode_ms, rtt_ms=args.rtt_ms))
        s_actual = static.device_ms + static.encode_ms + s_ms
        # the oracle: plans on the trace itself (its prediction is exact)
        orc = oracle.search(t)
        true_bw = trace.bps_between(t, t + args.period_ms)
        rows.append(dict(t_ms=t, true_bps=true_bw, est_bps=est, split=plan.split, sparsity=plan.sparsity,
                         blocks=list(plan.blocks) if plan.blocks else None, feasible=plan.feasible,
                         predicted_ms=plan.latency_ms, actual_ms=actual, static_actual_ms=s_actual,
                         oracle_actual_ms=orc.latency_ms, oracle_split=orc.split, oracle_sparsity=orc.sparsity,
                         bytes=nbytes, evaluated=plan.evaluated))
        if k % max(1, n_req // 10) == 0:
            print(f"[replan] {k + 1}/{n_req} t={t / 1000:.1f}s est {est / 1e6:.2f} Mbit/s -> split {plan.split} "
                  f"s={plan.sparsity}; oracle split {orc.split} ({time.perf_counter() - t_wall:.1f} s)")
    sweep = []
    for mode in ("ewma", "harmonic"):
        for sf in [float(v) for v in args.sweep.split(",") if v.strip()]:
            res = walk(base, trace, alpha=args.alpha, safety=sf, rtt_ms=args.rtt_ms, start_ms=args.start_s * 1000,
                       period_ms=args.period_ms, n_req=n_req, mode=mode)
            lat = np.array([r[3] for r in res])
            sweep.append(dict(estimator=mode, safety=sf, deadline_met=float(np.mean(lat <= D)),
                              p95_ms=float(np.percentile(lat, 95)),
                              mean_split=float(np.mean([r[1].split for r in res])),
                              mean_sparsity=float(np.mean([r[1].sparsity or 0.0 for r in res]))))
            print(f"[replan] sweep {mode} safety {sf:g}: deadline met {sweep[-1]['deadline_met']:.1%}, "
                  f"mean split {sweep[-1]['mean_split']:.2f}")

    # plan changes
    print(f"\ntrace {trace.name}: mean {trace.mean_bps() / 1e6:.2f} Mbit/s; D = {D:.0f} ms, RTT {args.rtt_ms:g} ms, "
          f"{n_req} requests every {args.period_ms:g} ms")
    print(f"static plan (at the mean): split {static.split}, sparsity {static.sparsity}")
    print(f"\n{'t (s)':>7} {'true Mbit/s':>11} {'EWMA Mbit/s':>11} {'split':>5} {'sparsity':>8} {'pred ms':>8} "
          f"{'actual ms':>9}")
    prev = None
    changes = 0
    for r in rows:
        key = (r["split"], r["sparsity"])
        if key != prev:
            changes += prev is not None
            print(f"{r['t_ms'] / 1000:7.1f} {r['true_bps'] / 1e6:11.2f} {r['est_bps'] / 1e6:11.2f} {r['split']:>5} "
                  f"{str(r['sparsity']):>8} {r['predicted_ms']:8.1f} {r['actual_ms']:9.1f}")
            prev = key
    act = np.array([r["actual_ms"] for r in rows])
    sact = np.array([r["static_actual_ms"] for r in rows])
    oact = np.array([r["oracle_actual_ms"] for r in rows])
    pred = np.array([r["predicted_ms"] for r in rows])
    summary = dict(trace=trace.name, start_s=args.start_s, safety=args.safety, alpha=args.alpha, trace_mean_bps=trace.mean_bps(), deadline_ms=D, rtt_ms=args.rtt_ms,
                   period_ms=args.period_ms, requests=n_req, plan_changes=changes,
                   distinct_plans=len({(r["split"], r["sparsity"]) for r in rows}),
                   replan_deadline_met=float(np.mean(act <= D)), static_deadline_met=float(np.mean(sact <= D)),
                   replan_p50_ms=float(np.median(act)), replan_p95_ms=float(np.percentile(act, 95)),
                   static_p50_ms=float(np.median(sact)), static_p95_ms=float(np.percentile(sact, 95)),
                   oracle_deadline_met=float(np.mean(oact <= D)), oracle_p50_ms=float(np.median(oact)),
                   oracle_p95_ms=float(np.percentile(oact, 95)),
                   oracle_mean_split=float(np.mean([r["oracle_split"] for r in rows])),
                   mean_abs_pred_error_ms=float(np.mean(np.abs(act - pred))),
                   mean_split=float(np.mean([r["split"] for r in rows])), static_split=static.split,
                   plan_seconds_per_request=plan_s, safety_sweep=sweep, profile_model=prof.model, profile_device=prof.device)
    print(f"\n{'':24}{'re-planned':>12}{'static':>12}{'oracle':>12}")
    print(f"{'deadline met':24}{summary['replan_deadline_met']:12.1%}{summary['static_deadline_met']:12.1%}"
          f"{summary['oracle_deadline_met']:12.1%}")
    print(f"{'latency p50 (ms)':24}{summary['replan_p50_ms']:12.1f}{summary['static_p50_ms']:12.1f}"
          f"{summary['oracle_p50_ms']:12.1f}")
    print(f"{'latency p95 (ms)':24}{summary['replan_p95_ms']:12.1f}{summary['static_p95_ms']:12.1f}"
          f"{summary['oracle_p95_ms']:12.1f}")
    print(f"{'mean split':24}{summary['mean_split']:12.2f}{static.split:12d}{summary['oracle_mean_split']:12.2f}")
    if sweep:
        print(f"\nestimator x safety (plan at safety x estimate):\n{'estimator':>10} {'safety':>6} {'met':>6} "
              f"{'p95 ms':>8} {'split':>6} {'sparsity':>8}")
        for w in sweep:
            print(f"{w['estimator']:>10} {w['safety']:6g} {w['deadline_met']:6.1%} {w['p95_ms']:8.1f} "
                  f"{w['mean_split']:6.2f} {w['mean_sparsity']:8.2f}")
    print(f"plan changes: {changes}, distinct plans: {summary['distinct_plans']}, "
          f"|actual - predicted| mean {summary['mean_abs_pred_error_ms']:.1f} ms, "
          f"planning {plan_s * 1e3:.1f} ms/request")

    out = pathlib.Path(args.out)
    save_json(out.with_suffix(".json"), dict(summary=summary, requests=rows))
    plt = pyplot()
    if plt is None:
        print("matplotlib not installed: no PNG")
        return 0
    tt = np.array([r["t_ms"] for r in rows]) / 1000
    fig, ax = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    ax[0].plot(tt, [r["true_bps"] / 1e6 for r in rows], lw=0.8, label=f"trace capacity ({args.period_ms:g} ms windows)")
    ax[0].plot(tt, [r["est_bps"] / 1e6 for r in rows], lw=1.2, label=f"EWMA estimate (alpha={args.alpha}; plans use x{args.safety:g})")
    ax[0].set_ylabel("Mbit/s")
    ax[0].legend(loc="upper right", fontsize=8)
    ax[0].set_title(f"re-planning DINOv2-S on {trace.name} (D={D:.0f} ms, RTT {args.rtt_ms:g} ms)")
    ax[1].step(tt, [r["split"] for r in rows], where="post", label="re-planned")
    ax[1].step(tt, [r["oracle_split"] for r in rows], where="post", lw=0.7, alpha=0.6, label="oracle (knows the trace)")
    ax[1].axhline(static.split, color="gray", ls="--", lw=0.8, label="static")
    ax[1].set_ylabel(f"split (layers on device, of {prof.n_layers})")
    ax[1].legend(loc="upper right", fontsize=8)
    ax[2].step(tt, [-0.05 if r["sparsity"] is None else r["sparsity"] for r in rows], where="post")
    ax[2].set_ylabel("sparsity (-0.05 = raw)")
    ax[2].set_xlabel("time (s)")
    save_png(fig, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
