"""Fig. 4: accuracy vs tau of specialist co-inference (ours), generalist co-inference of the same
size, edge-only and near-edge-only (from results/coinference.json).

    python benchmarks/expert/fig4_accuracy.py
"""
from collab.bench_io import pyplot, save_json, save_png

from common import PAPER_FIGS, RESULTS, TAUS
from figs_common import load


def main():
    d = load()
    c, const = d["accuracy_curves"], d["accuracy_constant"]
    gain = {str(t): 100 * (c["expert"][str(t)] - c["gen3"][str(t)]) for t in TAUS}
    rows = {"tau": list(TAUS), **{d["libraries"][k]: [100 * c[k][str(t)] for t in TAUS] for k in c},
            **{k: 100 * v for k, v in const.items()}, "gain_over_generalist_coinference_pts": gain,
            "paper_claim": PAPER_FIGS["fig4"]}
    print("tau    " + " ".join(f"{t:6}" for t in TAUS))
    for k in c:
        print(f"{k:6} " + " ".join(f"{100 * c[k][str(t)]:6.2f}" for t in TAUS))
    for k, v in const.items():
        print(f"{k}: {100 * v:.2f}")
    out = RESULTS / "fig4_accuracy.json"
    save_json(out, rows)
    plt = pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for k in c:
            ax.plot(TAUS, [100 * c[k][str(t)] for t in TAUS], "o-", label=d["libraries"][k])
        for k, v in const.items():
            ax.axhline(100 * v, ls="--", lw=1, color="gray" if "edge-only 2H" in k else None, label=k)
        ax.set_xlabel("tau")
        ax.set_ylabel("accuracy %")
        ax.invert_xaxis()
        ax.legend(fontsize=7)
        save_png(fig, out)


if __name__ == "__main__":
    main()
