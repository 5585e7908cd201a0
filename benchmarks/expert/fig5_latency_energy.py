"""Fig. 5: latency and energy per image vs tau, normalised to edge-only with the same-size (3H)
generalist, against edge-only and near-edge-only; offloaded data vs near-edge-only.

    python benchmarks/expert/fig5_latency_energy.py
"""
from collab.bench_io import pyplot, save_json, save_png

from common import PAPER_FIGS, RESULTS, TAUS
from figs_common import load, per_image, series


def main():
    d = load()
    n = d["n_stream"]
    base = d["timing"]["edge-only 3H"]
    near = d["timing"]["near-edge-only 3H"]
    res = {"tau": list(TAUS), "paper_claim": PAPER_FIGS["fig5"], "normalised_to": "edge-only 3H"}
    for field in ("latency", "device_j", "system_j"):
        b = per_image(base, field, n)
        res[field] = {"ours": [v / b for v in series(d, "expert", field)],
                      "near-edge-only 3H": per_image(near, field, n) / b, "edge-only 3H": 1.0,
                      "edge-only 2H": per_image(d["timing"]["edge-only 2H"], field, n) / b,
                      "absolute_edge_only_3H": b}
    up_near = near["total_bytes_up"]
    res["offloaded_data_reduction_vs_near_edge_only"] = [1 - d["timing"][f"expert@{t}"]["total_bytes_up"] / up_near
                                                         for t in TAUS]
    print("tau                " + " ".join(f"{t:6}" for t in TAUS))
    for field in ("latency", "device_j", "system_j"):
        print(f"{field:8} ours/edge3H " + " ".join(f"{v:6.2f}" for v in res[field]["ours"]) +
              f"   near-edge-only {res[field]['near-edge-only 3H']:.2f}")
    print("data saved vs near-edge-only " + " ".join(f"{v:6.1%}" for v in res["offloaded_data_reduction_vs_near_edge_only"]))
    out = RESULTS / "fig5_latency_energy.json"
    save_json(out, res)
    plt = pyplot()
    if plt:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for ax, field, title in zip(axes, ("latency", "system_j"), ("latency / image", "energy / image (device + server)")):
            ax.plot(TAUS, res[field]["ours"], "o-", label="ours (2H edge + 3H experts)")
            ax.axhline(1.0, color="k", ls="--", lw=1, label="edge-only 3H")
            ax.axhline(res[field]["near-edge-only 3H"], color="r", ls=":", label="near-edge-only 3H")
            ax.axhline(res[field]["edge-only 2H"], color="gray", ls="-.", lw=1, label="edge-only 2H")
            ax.set_title(f"{title}, normalised")
            ax.set_xlabel("tau")
            ax.invert_xaxis()
            ax.legend(fontsize=7)
        save_png(fig, out)


if __name__ == "__main__":
    main()
