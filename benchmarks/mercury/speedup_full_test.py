"""Speedup at equal accuracy (Mercury vs OTAS- / Janus-style ToMe) with the accuracies of the
whole test set, on latency.py's measured latencies.

latency.py times one image per configuration; its compute times do not depend on which test
images the accuracies came from, only the pairing "fastest Mercury point at >= the baseline's
accuracy" does. So this re-pairs the committed latency points (mercury_latency.json, and the
--slowdown one) with the accuracies re-measured on all 10k test images (verify.py --json) and
the meta-token artifacts' own test accuracies where they were measured on the same images
(train.py with MERCURY_N_TEST = 10000), without timing anything again.

    python benchmarks/mercury/speedup_full_test.py [--models models/mercury] \
        [--full-test benchmarks/results/mercury_full_test.json]
    -> benchmarks/results/mercury_speedup_full_test.json (+ the table printed)
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
sys.path.insert(0, HERE)

from collab.bench_io import pyplot, save_json, save_png  # noqa: E402
from quality_table import full_test_accuracy  # noqa: E402


def accuracy_of(point, checks, n, models):
    """The whole-test-set accuracy of one latency point, or None when it was not measured."""
    m, param, split = point["method"], point["param"], point["split"]
    if m == "vanilla":
        return checks.get("head", {}).get("acc")
    if m in ("OTAS-style ToMe", "Janus-style ToMe"):
        kind = "constant" if m.startswith("OTAS") else "decay"
        return checks.get(f"tome:{kind}:{param}", {}).get("acc")
    rate = int(round(100 * param))
    if m == "Mercury w/o reconstruction":
        return checks.get(f"norecon:ours:{rate}", {}).get("acc")
    return full_test_accuracy(os.path.join(models, f"meta_r{rate:02d}_s{split}.npz"), checks, n)


def main(argv=None):
    from latency import equal_accuracy_speedups, print_speedups

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full-test", default=os.path.join(RESULTS, "mercury_full_test.json"))
    ap.add_argument("--models", default=os.path.join(ROOT, "models", "mercury"))
    ap.add_argument("--out", default=os.path.join(RESULTS, "mercury_speedup_full_test.json"))
    a = ap.parse_args(argv)
    ft = json.load(open(a.full_test))
    checks, n = ft["checks"], int(ft["setup"]["n_test"])
    out = {"n_test": n, "accuracies": os.path.relpath(a.full_test, ROOT), "models": os.path.relpath(a.models, ROOT),
           "runs": {}}
    for name in ("mercury_latency.json", "mercury_latency_slowdown10.json"):
        p = os.path.join(RESULTS, name)
        if not os.path.exists(p):
            continue
        lat = json.load(open(p))
        points, missing = [], []
        for q in lat["points"]:
            acc = accuracy_of(q, checks, n, a.models)
            if acc is None:
                missing.append(f"{q['method']} {q['param']} split {q['split']}")
                continue
            points.append(dict(q, acc=acc, acc_committed=q["acc"]))
        splits = sorted({q["split"] for q in points})
        speed = equal_accuracy_speedups(points, splits)
        print(f"\n{name} (slowdown {lat.get('slowdown', 1)}), accuracies on {n} test images"
              + (f"; not measured on them: {', '.join(missing)}" if missing else ""))
        print_speedups(speed)
        out["runs"][name] = {"slowdown": lat.get("slowdown", 1), "points": points, "not_measured": missing,
                             "speedup_at_equal_accuracy": speed}
    out_p = save_json(a.out, out)
    plt = pyplot()
    if plt is None or not out["runs"]:
        return
    fig, axs = plt.subplots(1, len(out["runs"]), figsize=(7 * len(out["runs"]), 4), squeeze=False)
    for ax, (name, run) in zip(axs[0], out["runs"].items()):
        rows = [s for s in run["speedup_at_equal_accuracy"] if s["family"] == "Mercury"]
        labels = [f"s{s['split']} {s['baseline'].split('-')[0]} {s['baseline_param']}" for s in rows]
        ax.bar(range(len(rows)), [s["speedup"] or 0.05 for s in rows],
               color=["tab:blue" if s["speedup"] else "lightgray" for s in rows])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("speedup at equal accuracy (x)")
        ax.set_title(f"{name}: Mercury (meta tokens) vs ToMe, {n} test images (gray: not reached)", fontsize=8)
    save_png(fig, out_p)


if __name__ == "__main__":
    main()
