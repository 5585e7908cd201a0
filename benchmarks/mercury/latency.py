"""Accuracy-latency trade-off (Mercury Fig. 8 structure), speedup at equal accuracy, Table I.

    python benchmarks/mercury/latency.py [--splits 1,3,6] [--slowdown 1.0]

latency = device compute (measured here, one image, 1 thread, min of 15 runs, x --slowdown to stand for a
          slower phone CPU; 1.0 = this CPU as is)
        + uplink transfer of the actual payload bytes (float16 tokens) on real mahimahi uplink
          traces (../shared/traces/*.up; per trace the median over 200 start offsets, robust to
          the multi-second outages in ATT-LTE-driving; the headline number averages the LTE
          traces; per-trace means and medians, 3G traces included, are in the JSON; skipped if absent)
        + server compute (measured here, same CPU, 1 thread, min of 15 runs).
Methods: Mercury (regional pruning after layer 1 + meta tokens, and without meta tokens),
OTAS-style ToMe (constant r per block), Janus-style ToMe (r_i = r0 * 0.7^i), vanilla.
Accuracies: Mercury from models/mercury + benchmarks/results/mercury_accuracy.json (accuracy.py); ToMe
evaluated here on the same test subset (cached in benchmarks/results/mercury_tome_acc.json).
Writes benchmarks/results/mercury_latency.{json,png} and mercury_table1.json.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import pathlib
import time

import numpy as np
import torch

from collab.bench_io import pyplot, save_json, save_png
from collab.net import load_trace, transfer_time
from collab.vit import experiments as ex
from collab.vit import mercury
from collab.vit.baselines import apply_tome, tome_schedule
from collab.vit.data import load_fmnist, preprocess

S = ex.Settings.from_env(pathlib.Path(__file__).resolve().parents[2])
TRACES = os.environ.get("COLLAB_TRACES") or next(
    (p for p in (os.path.join(S.root, "..", "shared", "traces"), os.path.join(S.root, "..", "..", "shared", "traces"))
     if os.path.isdir(p)), os.path.join(S.root, "..", "shared", "traces"))
OTAS_R = [1, 2, 4]
JANUS_R0 = [6, 12, 18]
DIM = 384


def transfer_ms(trace, nbytes: int, starts: np.ndarray) -> np.ndarray:
    """Uplink time of nbytes from each start offset (ms): the planner's deterministic simulator."""
    return np.asarray(transfer_time(nbytes, starts.astype(np.float64), trace), np.float64)


def traces():
    return {os.path.basename(p)[:-3]: load_trace(p) for p in sorted(glob.glob(os.path.join(TRACES, "*.up")))}


def tome_accuracy(m, head, c, kind, r, cache):
    key = f"{kind}:{r}"
    if key not in cache:
        cache[key] = ex.image_accuracy(apply_tome(m, r, kind), head, c, f"ToMe {kind} r={r} accuracy")
        m.clear_hooks()
    return cache[key]


def timed(fn, threads, reps=15):
    """Minimum over reps (the CPU is shared with other jobs; the minimum is the least disturbed)."""
    torch.set_num_threads(threads)
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return float(np.min(ts))


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

    td = timed(device, 1)
    ts = timed(server, 1)
    m.clear_hooks()
    t_dev = state["x"].shape[1]
    toks = []
    t = t_dev + (meta_k if kind == "mercury" else 0)
    sched = tome_schedule(kind, arg) if kind in ("constant", "decay") else [0] * depth
    for i in range(split, depth):
        toks.append(t)
        t -= sched[i]
    return td, ts, t_dev * DIM * 2, toks


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
    torch.set_num_threads(2)
    for kind, rs in (("constant", OTAS_R), ("decay", JANUS_R0)):
        for r in rs:
            tome_accuracy(m, head, c, kind, r, tome_cache)
            save_json(tome_cache_p, tome_cache)
    tr = traces()
    if not tr:
        print(f"no mahimahi uplink traces under {TRACES}: transfer time skipped (0)")
    starts = {k: np.linspace(0, v.period_ms, 200, endpoint=False).astype(np.int64) for k, v in tr.items()}
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
            td, ts, nbytes, toks = measure(m, img, split, kind, arg, meta_k)
            per_trace = {n: {"mean": float(v.mean()), "median": float(np.median(v))}
                         for n, t in tr.items() for v in [transfer_ms(t, nbytes, starts[n])]}
            lte = [v["median"] for n, v in per_trace.items() if "LTE" in n] or [v["median"] for v in per_trace.values()]
            tx = float(np.mean(lte)) if lte else 0.0
            points.append({"split": split, "method": label, "param": arg, "acc": acc, "device_ms": 1e3 * td * a.slowdown,
                           "transfer_ms": tx, "transfer_ms_per_trace": per_trace, "server_ms": 1e3 * ts,
                           "payload_bytes": nbytes, "latency_ms": 1e3 * td * a.slowdown + tx + 1e3 * ts,
                           "server_gflops": ex.server_flops(toks) / 1e9, "extra_params": meta_k * DIM})
    # speedup at equal accuracy: for each baseline point, the fastest Mercury point at >= its accuracy
    # "Mercury": with meta tokens only (the paper's method); "Mercury (any)": also without them.
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
    print("\nspeedup at equal accuracy (Mercury vs baseline)")
    for s in speed:
        head_ = f"{s['family']:13s} split {s['split']} {s['baseline']:17s} {s['baseline_param']!s:>4} acc {100 * s['acc']:.1f}: "
        if s["speedup"] is None:
            print(head_ + f"{s['baseline_ms']:.1f} ms, no Mercury point reaches this accuracy")
        else:
            print(head_ + f"{s['baseline_ms']:.1f} ms vs {s['mercury_ms']:.1f} ms ({s['mercury_method']}, rate "
                  f"{s['mercury_rate']}, acc {100 * s['mercury_acc']:.1f}) -> {s['speedup']:.2f}x")
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
