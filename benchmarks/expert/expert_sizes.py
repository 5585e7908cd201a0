"""Experts with 3 and 4 heads side by side (S = 3 libraries of the recipe's cache): accuracy on
their targets and overall, specialist vs generalist co-inference accuracy over tau behind the
committed edge model's routing (Algorithm 1, k = 2), and the near-edge compute time T_N(b) of
one expert of each size (ONNX Runtime, one thread, this process pinned to one core).

    python benchmarks/expert/expert_sizes.py [--core 0]

Accuracy here is exact for every tau (each test image is answered once by the expert its top-2
set routes to, locally: the gRPC round trip of coinference_run.py returns the same logits, which
tests/test_expert_server.py checks); latency and energy over the link are in coinference_run.py
for the served 3H library.
"""
import argparse
import os
import re

import numpy as np

from collab.bench_io import pyplot, save_json, save_png
from collab.expert.planner import profile_classifier
from collab.expert.routing import route, softmax

from common import PAPER_FIGS, RESULTS, TAUS, cache_library, classifier, committed_library, logits_of, n_params, \
    test_split
from table3_experts import Predictions, evaluate

BATCHES = (1, 8, 32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--core", type=int, default=0)
    a = ap.parse_args()
    os.sched_setaffinity(0, {a.core})
    lib, com = cache_library(), committed_library()
    x, y = test_split(lib)
    preds = Predictions(lib, x)
    edge_logits = logits_of(classifier(com.edge_path(), com), x)
    conf = softmax(edge_logits).max(1)
    names = [n for n in lib.names() if re.fullmatch(r"3(-\d+H)?", n)]
    _, edge_pred, keys = route(edge_logits, tau=1.0, k=lib.k, partition_of=com.partition_of("3"))
    out = {"n_test": int(len(y)), "edge": {"file": com.m["edge"]["file"], "accuracy": float((edge_pred == y).mean())},
           "alpha": {str(t): float((conf < t).mean()) for t in TAUS}, "sizes": {},
           "paper_fig4": PAPER_FIGS["fig4"]}
    for name in names:
        info = lib.library(name)
        h = info["heads"]
        experts = lib.experts(name)
        missing = sorted(set(keys) - set(experts))
        if missing:  # a partial library cannot answer every routed image
            print(f"library {name}: no expert for {missing}; skipped")
            continue
        rows = evaluate(lib, name, y, 3, preds)
        spec = np.array([preds(experts[k])[i] for i, k in enumerate(keys)])
        gen_path = lib.generalist(f"{h}H") if f"{h}H" in lib.m["generalists"] else None
        gen = preds(gen_path) if gen_path else None
        curve = lambda p: {str(t): float((np.where(conf >= t, edge_pred, p) == y).mean()) for t in TAUS}  # noqa: E731
        one = experts[(0,)]
        t_n = profile_classifier(classifier(one, lib), BATCHES, repeats=5).as_dict()
        out["sizes"][f"{h}H"] = {
            "library": name, "heads": h, "params_per_expert": n_params(one), "experts": len(experts),
            "complete": bool(info.get("complete", True)),
            "target_mean": float(np.mean([r["target"] for r in rows.values()])),
            "overall_mean": float(np.mean([r["overall"] for r in rows.values()])),
            "generalist_overall": None if gen is None else float((gen == y).mean()) * 100,
            "specialist_coinference": curve(spec),
            "generalist_coinference": None if gen is None else curve(gen),
            "near_edge_only_generalist": None if gen is None else float((gen == y).mean()),
            "T_N_s": t_n}
        s = out["sizes"][f"{h}H"]
        gap = [s["specialist_coinference"][str(t)] - s["generalist_coinference"][str(t)] for t in TAUS] if gen is not None \
            else None
        s["specialist_minus_generalist_points"] = None if gap is None else [100 * g for g in gap]
        print(f"{h}H experts ({n_params(one) / 1e6:.2f} M params): target {s['target_mean']:.2f}, overall "
              f"{s['overall_mean']:.2f}; T_N(32) {t_n['32'] * 1e3:.1f} ms")
        for t in TAUS:
            g = s["generalist_coinference"]
            print(f"  tau {t}: alpha {out['alpha'][str(t)]:.3f}  specialist {100 * s['specialist_coinference'][str(t)]:.2f}"
                  + ("" if g is None else f"  generalist {100 * g[str(t)]:.2f}"))
    res = RESULTS / "expert_sizes.json"
    save_json(res, out)
    plt = pyplot()
    if plt and out["sizes"]:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for h, s in out["sizes"].items():
            l, = axes[0].plot(TAUS, [100 * s["specialist_coinference"][str(t)] for t in TAUS], "o-",
                              label=f"specialist co-inf. {h}")
            if s["generalist_coinference"]:
                axes[0].plot(TAUS, [100 * s["generalist_coinference"][str(t)] for t in TAUS], "s--", color=l.get_color(),
                             label=f"generalist co-inf. {h}")
        axes[0].axhline(100 * out["edge"]["accuracy"], color="grey", lw=0.8, label="edge-only 2H")
        axes[0].invert_xaxis()
        axes[0].set_xlabel("tau")
        axes[0].set_ylabel("accuracy (%)")
        axes[0].legend(fontsize=7)
        hs = list(out["sizes"])
        for j, b in enumerate(BATCHES):
            axes[1].bar(np.arange(len(hs)) + 0.25 * j, [out["sizes"][h]["T_N_s"][str(b)] * 1e3 for h in hs], 0.25,
                        label=f"batch {b}")
        axes[1].set_xticks(np.arange(len(hs)) + 0.25, [f"expert {h}" for h in hs])
        axes[1].set_ylabel("T_N per batch (ms, 1 core)")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        save_png(fig, res)


if __name__ == "__main__":
    main()
