"""Fig. 7: accuracy gained over edge-only (2H) per added latency and per added energy, for the
specialist library (3H experts, ours) vs generalist co-inference with the large generalist (6H)
and with the same-size generalist (3H).

    python benchmarks/expert/fig7_roi.py
"""
from collab.bench_io import pyplot, save_json, save_png

from common import PAPER_FIGS, RESULTS, TAUS
from figs_common import load, per_image


def main():
    d = load()
    n = d["n_stream"]
    base = d["timing"]["edge-only 2H"]
    a0 = 100 * d["accuracy_constant"]["edge-only 2H"]
    lat0, e0 = per_image(base, "latency", n), per_image(base, "system_j", n)
    res = {"tau": list(TAUS), "paper_claim": PAPER_FIGS["fig7"], "units": "accuracy points per ms / per J (per image)"}
    for task in d["accuracy_curves"]:
        acc_l, acc_e = [], []
        for tau in TAUS:
            t = d["timing"][f"{task}@{tau}"]
            gain = 100 * d["accuracy_curves"][task][str(tau)] - a0
            dl = (per_image(t, "latency", n) - lat0) * 1e3
            de = per_image(t, "system_j", n) - e0
            acc_l.append(gain / dl if dl > 0 else None)
            acc_e.append(gain / de if de > 0 else None)
        res[task] = {"label": d["libraries"][task], "acc_per_ms": acc_l, "acc_per_joule": acc_e}
        print(f"{task:6} acc/ms " + " ".join("  -   " if v is None else f"{v:6.2f}" for v in acc_l))
        print(f"{task:6} acc/J  " + " ".join("  -   " if v is None else f"{v:6.1f}" for v in acc_e))
    out = RESULTS / "fig7_roi.json"
    save_json(out, res)
    plt = pyplot()
    if plt:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for ax, key, title in zip(axes, ("acc_per_ms", "acc_per_joule"), ("accuracy-to-latency", "accuracy-to-energy")):
            for task in d["accuracy_curves"]:
                ax.plot(TAUS, [v if v is not None else float("nan") for v in res[task][key]], "o-",
                        label=res[task]["label"])
            ax.set_title(title)
            ax.set_xlabel("tau")
            ax.invert_xaxis()
            ax.legend(fontsize=7)
        save_png(fig, out)


if __name__ == "__main__":
    main()
