"""Table 2: configurations and top-1 / top-2 accuracy of the generalist models, with the paper's.

Our family is the paper's scaled to a 6-head teacher: edge 2H (paper 3H), expert size 3H
(paper 4H/6H), 4H, teacher 6H (paper DeiT-Base). Accuracy on the recipe's held-out split,
run with ONNX Runtime (float32 from the cache; the committed quantised copies beside).

    python benchmarks/expert/table2_generalists.py
"""
import json

from collab.bench_io import pyplot, save_json, save_png

from common import PAPER_TABLE2, RESULTS, cache_library, classifier, committed_library, logits_of, n_params, \
    test_split, topk_acc

PAPER_ROW = {"2H": "DeiT-3H", "3H": "DeiT-4H", "3H-base": "DeiT-4H", "4H": "DeiT-6H", "6H": "DeiT-Base"}


def main():
    lib = cache_library()
    x, y = test_split(lib)
    rows = []
    models = sorted(lib.m["generalists"].items())
    if lib.m["edge"]["file"] not in lib.m["generalists"].values():  # the longer-trained edge model
        models.insert(0, (f"{lib.m['edge']['heads']}H", lib.m["edge"]["file"]))
    for name, rel in models:
        path = lib.path(rel)
        clf = classifier(path, lib)
        lg = logits_of(clf, x)
        metrics = json.loads((path.parent / "metrics.json").read_text())
        heads = int(name.split("H")[0])
        label = name + (" edge" if rel == lib.m["edge"]["file"] else "")
        rows.append({"model": label, "heads": heads, "width": 64 * heads, "mlp": 256 * heads, "layers": 12,
                     "params": n_params(path), "top1": 100 * topk_acc(lg, y, 1), "top2": 100 * topk_acc(lg, y, 2),
                     "train_images": metrics.get("n_train"), "epochs": metrics.get("epochs"),
                     "train_minutes": round(metrics.get("train_seconds", 0) / 60, 1),
                     "paper_model": PAPER_ROW.get(name), "paper_top1_top2": PAPER_TABLE2.get(PAPER_ROW.get(name)),
                     "file": rel})
    try:
        com = committed_library()
        quant = {}
        for name, rel in [("edge", com.m["edge"]["file"])] + sorted(com.m["generalists"].items()):
            lg = logits_of(classifier(com.path(rel), com), x)
            quant[name] = {"file": rel, "top1": 100 * topk_acc(lg, y, 1), "top2": 100 * topk_acc(lg, y, 2)}
    except Exception as e:  # no committed library yet
        quant = {"error": str(e)}
    print(f"{'model':8} {'width':>5} {'params':>9} {'top1':>7} {'top2':>7} | paper {'':9} top1  top2")
    for r in rows:
        p = r["paper_top1_top2"] or ("", "")
        print(f"{r['model']:8} {r['width']:5d} {r['params']:9d} {r['top1']:7.2f} {r['top2']:7.2f} | "
              f"{r['paper_model'] or '':15} {p[0]}  {p[1]}")
    out = RESULTS / "table2_generalists.json"
    save_json(out, {"rows": rows, "committed_quantised": quant, "n_test": int(len(y)),
                    "note": "ours: Fashion-MNIST 56 px, DINOv2 ViT-S/14 family; paper: CIFAR-100, DeiT family"})
    plt = pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = range(len(rows))
        ax.bar([i - 0.2 for i in xs], [r["top1"] for r in rows], 0.4, label="ours top-1")
        ax.bar([i + 0.2 for i in xs], [r["top2"] for r in rows], 0.4, label="ours top-2")
        ax.plot(list(xs), [(r["paper_top1_top2"] or (None,))[0] for r in rows], "k^", label="paper top-1 (scaled row)")
        ax.set_xticks(list(xs), [f"{r['model']}\n({r['paper_model']})" for r in rows])
        ax.set_ylim(60, 100)
        ax.set_ylabel("accuracy %")
        ax.legend(fontsize=8)
        save_png(fig, out)


if __name__ == "__main__":
    main()
