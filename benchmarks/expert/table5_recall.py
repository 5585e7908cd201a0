"""Table 5: top-k accuracy of the edge model and the recall gaps top-2 - top-1, top-3 - top-1.

    python benchmarks/expert/table5_recall.py
"""
from collab.bench_io import pyplot, save_json, save_png

from common import PAPER_TABLE5, RESULTS, classifier, committed_library, logits_of, test_split, topk_acc


def main():
    lib = committed_library()
    x, y = test_split(lib)
    lg = logits_of(classifier(lib.edge_path(), lib), x)
    t1, t2, t3 = (100 * topk_acc(lg, y, k) for k in (1, 2, 3))
    ours = {"top1": t1, "top2": t2, "top3": t3, "gap_2_1": t2 - t1, "gap_3_1": t3 - t1}
    print(f"{'':12} top1   top2   top3   d2-1  d3-1")
    print(f"{'F-MNIST ours':12} {t1:6.2f} {t2:6.2f} {t3:6.2f} {t2 - t1:5.2f} {t3 - t1:5.2f}")
    for k, v in PAPER_TABLE5.items():
        print(f"{k + ' (p)':12} {v[0]:6.2f} {v[1]:6.2f} {v[2]:6.2f} {v[3]:5.2f} {v[4]:5.2f}")
    out = RESULTS / "table5_recall.json"
    save_json(out, {"ours_fashion_mnist": ours, "paper": PAPER_TABLE5, "n_test": int(len(y))})
    plt = pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        names = ["Fashion-MNIST (ours)"] + [f"{k} (paper)" for k in PAPER_TABLE5]
        gaps = [(ours["gap_2_1"], ours["gap_3_1"])] + [(v[3], v[4]) for v in PAPER_TABLE5.values()]
        ax.bar([i - 0.2 for i in range(3)], [g[0] for g in gaps], 0.4, label="top-2 - top-1")
        ax.bar([i + 0.2 for i in range(3)], [g[1] for g in gaps], 0.4, label="top-3 - top-1")
        ax.set_xticks(range(3), names, fontsize=8)
        ax.set_ylabel("recall gap (points)")
        ax.legend(fontsize=8)
        save_png(fig, out)


if __name__ == "__main__":
    main()
