"""Accuracy-latency trade-off (Mercury Fig. 8 structure), speedup at equal accuracy, Table I.

    python benchmarks/mercury/latency.py [--splits 1,3,6] [--slowdown 1.0]

latency = device compute (measured here on core 0, one image, 1 thread, min of 15 runs (median in the JSON), x --slowdown to stand for a
          slower phone CPU; 1.0 = this CPU as is)
        + uplink transfer of the actual payload bytes (float16 tokens) on real mahimahi uplink
          traces (../shared/traces/*.up; per trace the median over 200 start offsets, robust to
          the multi-second outages in ATT-LTE-driving; the headline number averages the LTE
          traces; per-trace means and medians, 3G traces included, are in the JSON; skipped if absent)
        + server compute (measured here on core 1, 1 thread, min of 15 runs).
Methods: Mercury (regional pruning after layer 1 + meta tokens, and without meta tokens),
OTAS-style ToMe (constant r per block), Janus-style ToMe (r_i = r0 * 0.7^i), vanilla.
Accuracies: Mercury from models/mercury + benchmarks/results/mercury_accuracy.json (accuracy.py); ToMe
evaluated here on the same test subset (cached in benchmarks/results/mercury_tome_acc.json).
Writes benchmarks/results/mercury_latency.{json,png} and mercury_table1.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np
import torch

from collab.bench_io import pyplot, save_json, save_png
from collab.vit import experiments as ex
from collab.vit import mercury
from collab.vit.baselines import apply_tome, tome_schedule
from collab.vit.data import load_fmnist, preprocess

S = ex.Settings.from_env(pathlib.Path(__file__).resolve().parents[2])
TRACES = ex.traces_dir(S)
OTAS_R = [1, 2, 4]
JANUS_R0 = [6, 12, 18]
DIM = 384


def tome_accuracy(m, head, c, kind, r, cache):
    key = f"{kind}:{r}"
    if key not in cache:
        with S.autocast():
            cache[key] = ex.image_accuracy(apply_tome(m, r, kind), head, c, f"ToMe {kind} r={r} accuracy")
        m.clear_hooks()
    return cache[key]


DEVICE_CPU, SERVER_CPU = 0, 1   # device and server parts pinned to different cores


def timed(fn, threads, cpu, reps=15):
    """Minimum over reps on core cpu (the CPU is shared with other jobs; the minimum is the least
    disturbed), and the median."""
    torch.set_num_threads(threads)
    allowed = os.sched_getaffinity(0)
    if cpu in allowed:
        os.sched_setaffinity(0, {cpu})
    try:
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    finally:
        os.sched_setaffinity(0, allowed)
    return float(np.min(ts)), float(np.median(ts))


def measure(m, img, split, kind, arg, meta_k):
    """(device s, server s, payload bytes, server token counts per block) for one image."""
    depth = m.depth
    tome = kind in ("constant", "decay")
    if tome:
        apply_tome(m, arg, kind)
    state = {}
    meta = torch.zeros(meta_k, DIM)   # stands for the trained M: same shape, same server cost

    def device():
        with torch.no_grad():
            if kind == "mercury":
                h, att = m.layer1(img)
                x, _ = mercury.prune(h, att.out, arg, ex.REGION)
                x = m.run_blocks(x, 1, split)
            else:
                x = m.run_blocks(m.embed(img), 0, split)
                state["size"] = m.tome.size if tome else None
            state["x"] = x

    def server():
        with torch.no_grad():
            x = state["x"]
            if kind == "mercury" and meta_k:
                x = mercury.pad(x, meta)
            if tome:
                m.tome.size = state["size"]   # the device part's token sizes travel with the tokens
            m.features(m.run_blocks(x, split, depth))

    td, td_med = timed(device, 1, DEVICE_CPU)
    ts, ts_med = timed(server, 1, SERVER_CPU)
    m.clear_hooks()
    t_dev = state["x"].shape[1]
    toks = []
    t = t_dev + (meta_k if kind == "mercury" else 0)
    sched = tome_schedule(kind, arg) if kind in ("constant", "decay") else [0] * depth
    for i in range(split, depth):
        toks.append(t)
        t -= sched[i]
    return td, ts, t_dev * DIM * 2, toks, (td_med, ts_med)


def equal_accuracy_speedups(points, splits):
    """For each ToMe baseline point, the fastest Mercury point at >= its accuracy, per split.
    "Mercury": with meta tokens only (the paper's method); "Mercury (any)": also without them."""
    speed = []
    for family, labels in (("Mercury", ("Mercury",)), ("Mercury (any)", ("Mercury", "Mercury w/o reconstruction"))):
        for split in splits:
            ours = [p for p in points if p["split"] == split and p["method"] in labels]
            for p in points:
                if p["split"] != split or "ToMe" not in p["method"]:
                    continue
                ok = [q for q in ours if q["acc"] >= p["acc"]]
                if ok:
                    best = min(ok, key=lambda q: q["latency_ms"])
                    speed.append({"family": family, "split": split, "baseline": p["method"],
                                  "baseline_param": p["param"], "acc": p["acc"], "baseline_ms": p["latency_ms"],
                                  "mercury_method": best["method"], "mercury_rate": best["param"],
                                  "mercury_acc": best["acc"], "mercury_ms": best["latency_ms"],
                                  "speedup": p["latency_ms"] / best["latency_ms"]})
                else:
                    speed.append({"family": family, "split": split, "baseline": p["method"],
                                  "baseline_param": p["param"], "acc": p["acc"], "baseline_ms": p["latency_ms"],
                                  "mercury_method": None, "speedup": None})
    return speed


def print_speedups(speed):
    print("\nspeedup at equal accuracy (Mercury vs baseline)")
    for s in speed:
        head_ = f"{s['family']:13s} split {s['split']} {s['baseline']:17s} {s['baseline_param']!s:>4} acc {100 * s['acc']:.1f}: "
        if s["speedup"] is None:
            print(head_ + f"{s['baseline_ms']:.1f} ms, no Mercury point reaches this accuracy")
        else:
            print(head_ + f"{s['baseline_ms']:.1f} ms vs {s['mercury_ms']:.1f} ms ({s['mercury_method']}, rate "
                  f"{s['mercury_rate']}, acc {100 * s['mercury_acc']:.1f}) -> {s['speedup']:.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", default="1,3,6")
    ap.add_argument("--slowdown", type=float, default=1.0)
    ap.add_argument("--rates", default="0,25,50,60,75")
    a = ap.parse_args()
    splits = [int(s) for s in a.splits.split(",")]
    c = ex.load_cache(S)
    m = ex.load_model()
    head = ex.load_head(os.path.join(S.models, "head_full.npz"))
    acc_json = os.path.join(S.results, "mercury_accuracy.json")
    norecon = json.load(open(acc_json))["curves"]["ours w/o reconstruction"] if os.path.exists(acc_json) else {}
    full_acc = float(np.load(os.path.join(S.models, "head_full.npz"))["test_acc"])
    tome_cache_p = os.path.join(S.results, "mercury_tome_acc.json")
    tome_cache = json.load(open(tome_cache_p)) if os.path.exists(tome_cache_p) else {}
    setup = {"n_test": int(len(c["test_y"])), "head_acc": full_acc, "compute": "bfloat16 autocast" if S.bf16 else "float32"}
    if tome_cache.get("_setup") != setup:   # measured with another head, subset or precision
        tome_cache = {"_setup": setup}
    torch.set_num_threads(1)
    for kind, rs in (("constant", OTAS_R), ("decay", JANUS_R0)):
        for r in rs:
            tome_accuracy(m, head, c, kind, r, tome_cache)
            save_json(tome_cache_p, tome_cache)
    tr = ex.load_traces(S)
    if not tr:
        print(f"no mahimahi uplink traces under {TRACES}: transfer time skipped (0)")
    img = torch.from_numpy(preprocess(load_fmnist("test")[0][:1], ex.IMG))
    points = []
    for split in splits:
        cfgs = [("vanilla", None, "vanilla", 0, full_acc)]
        for r in [int(x) for x in a.rates.split(",")]:
            k = int(np.floor(r / 100 * 64 + 0.5))
            p = os.path.join(S.models, f"meta_r{r:02d}_s{split}.npz")
            if os.path.exists(p) and r > 0:
                cfgs.append(("mercury", r / 100, "Mercury", k, float(np.load(p)["test_acc"])))
            if str(r) in norecon and r > 0:
                cfgs.append(("mercury", r / 100, "Mercury w/o reconstruction", 0, norecon[str(r)]))
        cfgs += [("constant", r, "OTAS-style ToMe", 0, tome_cache[f"constant:{r}"]) for r in OTAS_R]
        cfgs += [("decay", r, "Janus-style ToMe", 0, tome_cache[f"decay:{r}"]) for r in JANUS_R0]
        for kind, arg, label, meta_k, acc in ex.progress(cfgs, len(cfgs), f"latency split {split}"):
            td, ts, nbytes, toks, (td_med, ts_med) = measure(m, img, split, kind, arg, meta_k)
            tx, per_trace = ex.uplink_ms(tr, nbytes)
            points.append({"split": split, "method": label, "param": arg, "acc": acc, "device_ms": 1e3 * td * a.slowdown,
                           "transfer_ms": tx, "transfer_ms_per_trace": per_trace, "server_ms": 1e3 * ts,
                           "device_ms_median": 1e3 * td_med * a.slowdown, "server_ms_median": 1e3 * ts_med,
                           "payload_bytes": nbytes, "latency_ms": 1e3 * td * a.slowdown + tx + 1e3 * ts,
                           "server_gflops": ex.server_flops(toks) / 1e9, "extra_params": meta_k * DIM})
    speed = equal_accuracy_speedups(points, splits)
    out = {"slowdown": a.slowdown, "traces": sorted(tr), "traces_dir": TRACES, "n_test": int(len(c["test_y"])),
           "points": points, "speedup_at_equal_accuracy": speed}
    sfx = "" if a.slowdown == 1 else f"_slowdown{a.slowdown:g}"
    out_p = save_json(os.path.join(S.results, f"mercury_latency{sfx}.json"), out)
    # Table I: split 3 (or the middle split), vanilla vs best Janus vs best Mercury at similar accuracy
    s3 = 3 if 3 in splits else splits[len(splits) // 2]
    van = next(p for p in points if p["split"] == s3 and p["method"] == "vanilla")
    server_params = sum(p.numel() for b in m.blocks[s3:] for p in b.parameters()) + sum(
        p.numel() for p in m.norm.parameters()) + sum(p.numel() for p in head.parameters())
    # all split-s3 points (Mercury reached no ToMe accuracy here, so no single equal-accuracy row)
    rows = [("Vanilla", van)] + [(f"{p['method']} {p['param']}", p) for p in points
                                 if p["split"] == s3 and p["method"] != "vanilla"]
    table = [{"method": n, "accuracy": p["acc"], "latency_overall_ms": p["latency_ms"], "latency_server_ms": p["server_ms"],
              "params_on_server_M": (server_params + p["extra_params"]) / 1e6, "server_gflops": p["server_gflops"]}
             for n, p in rows]
    save_json(os.path.join(S.results, f"mercury_table1{sfx}.json"), {"split": s3, "rows": table, "slowdown": a.slowdown})
    print(f"\nTable I (split after layer {s3})\n{'method':34s} | acc   | overall ms | server ms | server params (M) | server GFLOPs")
    for r in table:
        print(f"{r['method']:34s} | {100 * r['accuracy']:.1f} | {r['latency_overall_ms']:10.1f} | "
              f"{r['latency_server_ms']:9.1f} | {r['params_on_server_M']:17.4f} | {r['server_gflops']:.3f}")
    print_speedups(speed)
    plt = pyplot()
    if plt is None:
        return
    fig, axs = plt.subplots(1, len(splits), figsize=(5 * len(splits), 4), squeeze=False)
    for ax, split in zip(axs[0], splits):
        for label in ("Mercury", "Mercury w/o reconstruction", "OTAS-style ToMe", "Janus-style ToMe", "vanilla"):
            ps = sorted((p for p in points if p["split"] == split and p["method"] == label), key=lambda p: p["latency_ms"])
            if ps:
                ax.plot([p["latency_ms"] for p in ps], [100 * p["acc"] for p in ps], marker="o", label=label)
        ax.set_title(f"split after layer {split}" + (f" (device x{a.slowdown:g})" if a.slowdown != 1 else ""))
        ax.set_xlabel("latency (ms): device + uplink traces + server")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=7)
    save_png(fig, out_p)


if __name__ == "__main__":
    main()
