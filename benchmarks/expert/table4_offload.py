"""Table 4: offload proportion alpha(tau) of the edge model, beside the paper's.

    python benchmarks/expert/table4_offload.py
"""
import numpy as np

from collab.bench_io import pyplot, save_json, save_png
from collab.expert.routing import softmax

from common import PAPER_TABLE4, RESULTS, TAUS, classifier, committed_library, logits_of, test_split


def main():
    lib = committed_library()  # the served edge model (fp16)
    x, y = test_split(lib)
    conf = softmax(logits_of(classifier(lib.edge_path(), lib), x)).max(1)
    rows = [{"tau": t, "alpha_pct": 100 * float((conf < t).mean()), "paper_alpha_pct": PAPER_TABLE4[t]} for t in TAUS]
    print("tau    " + " ".join(f"{t:6}" for t in TAUS))
    print("ours   " + " ".join(f"{r['alpha_pct']:6.1f}" for r in rows))
    print("paper  " + " ".join(f"{r['paper_alpha_pct']:6.1f}" for r in rows))
    out = RESULTS / "table4_offload.json"
    save_json(out, {"rows": rows, "n_test": int(len(y)), "edge": lib.m["edge"]})
    plt = pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(TAUS, [r["alpha_pct"] for r in rows], "o-", label="ours (edge 2H, Fashion-MNIST)")
        ax.plot(TAUS, [r["paper_alpha_pct"] for r in rows], "s--", label="paper (DeiT-3H, CIFAR-100)")
        ax.set_xlabel("confidence threshold tau")
        ax.set_ylabel("offloaded %")
        ax.invert_xaxis()
        ax.legend(fontsize=8)
        save_png(fig, out)


if __name__ == "__main__":
    main()
