"""Fig. 6: accuracy against latency and energy per image, normalised to the lightest edge model
(edge-only 2H), for every configuration: the Pareto view.

    python benchmarks/expert/fig6_pareto.py
"""
from collab.bench_io import pyplot, save_json, save_png

from common import PAPER_FIGS, RESULTS, TAUS
from figs_common import load, per_image


def main():
    d = load()
    n = d["n_stream"]
    base = d["timing"]["edge-only 2H"]
    acc_c = d["accuracy_constant"]
    pts = []

    def add(name, timing, acc):
        pts.append({"config": name, "accuracy": 100 * acc,
                    "latency_x": per_image(timing, "latency", n) / per_image(base, "latency", n),
                    "energy_x": per_image(timing, "system_j", n) / per_image(base, "system_j", n)})
    add("edge-only 2H", base, acc_c["edge-only 2H"])
    add("edge-only 3H", d["timing"]["edge-only 3H"], acc_c["edge-only 3H / near-edge-only 3H"])
    add("near-edge-only 3H", d["timing"]["near-edge-only 3H"], acc_c["edge-only 3H / near-edge-only 3H"])
    if "near-edge-only 6H" in d["timing"]:
        add("near-edge-only 6H", d["timing"]["near-edge-only 6H"], acc_c["near-edge-only 6H"])
    for task in d["accuracy_curves"]:
        for tau in TAUS:
            add(f"{task}@{tau}", d["timing"][f"{task}@{tau}"], d["accuracy_curves"][task][str(tau)])

    def front(key):
        best, out = -1, []
        for p in sorted(pts, key=lambda p: (p[key], -p["accuracy"])):
            if p["accuracy"] > best:
                out.append(p["config"])
                best = p["accuracy"]
        return out
    res = {"points": pts, "pareto_latency": front("latency_x"), "pareto_energy": front("energy_x"),
           "paper_claim": PAPER_FIGS["fig6"]}
    for p in pts:
        print(f"{p['config']:22} acc {p['accuracy']:6.2f}  latency x{p['latency_x']:5.2f}  energy x{p['energy_x']:5.2f}")
    print("Pareto (latency):", res["pareto_latency"])
    print("Pareto (energy): ", res["pareto_energy"])
    out = RESULTS / "fig6_pareto.json"
    save_json(out, res)
    plt = pyplot()
    if plt:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
        for ax, key in zip(axes, ("latency_x", "energy_x")):
            for group, mark in (("expert@", "o"), ("gen3@", "s"), ("gen6@", "^")):
                g = [p for p in pts if p["config"].startswith(group)]
                if g:
                    ax.plot([p[key] for p in g], [p["accuracy"] for p in g], mark + "-", label=group[:-1])
            for p in pts:
                if "@" not in p["config"]:
                    ax.plot(p[key], p["accuracy"], "k*")
                    ax.annotate(p["config"], (p[key], p["accuracy"]), fontsize=6)
            ax.set_xlabel(key.replace("_x", " (x edge-only 2H)"))
            ax.set_ylabel("accuracy %")
            ax.legend(fontsize=7)
        save_png(fig, out)


if __name__ == "__main__":
    main()
