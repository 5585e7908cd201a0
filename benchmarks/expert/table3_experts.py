"""Table 3: static vs progressive experts, accuracy on their target partitions and overall,
averaged over the library of each S, with the same-size generalist, beside the paper's.

    python benchmarks/expert/table3_experts.py
"""
import numpy as np

from collab.bench_io import pyplot, save_json, save_png
from collab.expert.artifacts import parse_key
from collab.expert.partitions import classes_of

from common import PAPER_TABLE3, RESULTS, cache_library, classifier, logits_of, test_split


def evaluate(lib, name, x, y, s):
    rows = {}
    for k, path in lib.experts(name).items():
        pred = logits_of(classifier(path, lib), x).argmax(1)
        sel = np.isin(y, classes_of(s, k))
        rows[",".join(map(str, k))] = {"target": 100 * float((pred[sel] == y[sel]).mean()),
                                       "overall": 100 * float((pred == y).mean()), "target_images": int(sel.sum())}
    return rows


def main():
    lib = cache_library()
    x, y = test_split(lib)
    heads = None
    out = {"S": {}, "n_test": int(len(y))}
    for name in lib.names():
        if not name.isdigit():
            continue
        s = int(name)
        heads = lib.library(name)["heads"]
        prog = evaluate(lib, name, x, y, s)
        static = evaluate(lib, f"{name}-static", x, y, s) if f"{name}-static" in lib.names() else None
        gen_name = f"gen-{heads}H"
        gen = None
        if gen_name in lib.names():
            gpred = logits_of(classifier(lib.generalist(f"{heads}H"), lib), x).argmax(1)
            gen = {"overall": 100 * float((gpred == y).mean()),
                   "target": {k: 100 * float((gpred[np.isin(y, classes_of(s, parse_key(k)))] ==
                                              y[np.isin(y, classes_of(s, parse_key(k)))]).mean()) for k in prog}}
        # averages over the sets that have both a static and a progressive expert (all when complete)
        both = sorted(set(prog) & set(static or {})) or sorted(prog)
        avg = lambda rows, f: float(np.mean([rows[k][f] for k in both])) if rows else None  # noqa: E731
        out["S"][s] = {"experts": len(prog), "compared_sets": both, "progressive": prog, "static": static,
                       "generalist": gen,
                       "avg": {"target_static": avg(static, "target"), "target_progressive": avg(prog, "target"),
                               "overall_static": avg(static, "overall"), "overall_progressive": avg(prog, "overall"),
                               "generalist_overall": gen and gen["overall"],
                               "generalist_on_targets": gen and float(np.mean([gen["target"][k] for k in both])),
                               "target_progressive_all_sets": float(np.mean([r["target"] for r in prog.values()]))}}
    out["heads"] = heads
    out["paper"] = {m: {str(k): v for k, v in d.items()} for m, d in PAPER_TABLE3.items()}
    print(f"experts {heads}H   target: static  progr. (gen)  | overall: static  progr. (gen)")
    for s, r in out["S"].items():
        a = r["avg"]
        f = lambda v: "  -  " if v is None else f"{v:6.2f}"  # noqa: E731
        print(f"S={s} ({len(r['compared_sets'])}/{r['experts']} sets)   {f(a['target_static'])} {f(a['target_progressive'])} "
              f"({f(a['generalist_on_targets'])}) | {f(a['overall_static'])} {f(a['overall_progressive'])} "
              f"({f(a['generalist_overall'])})")
    for m, d in PAPER_TABLE3.items():
        for s in (4, 6, 8):
            v = d[s]
            print(f"paper {m} S={s}: target {v[0]} {v[1]} | overall {v[2]} {v[3]} (gen {d['gen']})")
    res = RESULTS / "table3_experts.json"
    save_json(res, out)
    plt = pyplot()
    if plt and out["S"]:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
        for ax, what in zip(axes, ("target", "overall")):
            ss = sorted(out["S"])
            for j, sched in enumerate(("static", "progressive")):
                ax.bar([i + 0.3 * j for i in range(len(ss))], [out["S"][s]["avg"][f"{what}_{sched}"] or 0 for s in ss],
                       0.3, label=sched)
            gk = "generalist_on_targets" if what == "target" else "generalist_overall"
            ax.plot([i + 0.15 for i in range(len(ss))], [out["S"][s]["avg"][gk] or np.nan for s in ss], "k_",
                    markersize=30, label="generalist")
            ax.set_xticks([i + 0.15 for i in range(len(ss))], [f"S={s}" for s in ss])
            ax.set_title(f"{what} accuracy (%)")
            ax.set_ylim(50, 100)
            ax.legend(fontsize=8)
        save_png(fig, res)


if __name__ == "__main__":
    main()
