"""Accuracy vs token-reduction rate after layer 1 (Mercury Fig. 10 / Fig. 13 structure).

    python benchmarks/mercury/accuracy.py [--rates 0,25,50,60,75]

Curves (split after layer 1, Fashion-MNIST test subset, frozen DINOv2 ViT-S/14):
  ours w/o reconstruction   regional pruning, remaining blocks on the kept tokens, full-model head
  top-k w/o reconstruction  layer-1 CLS-attention top-k pruning, same
  ours (w/ reconstruction)  + meta tokens and head trained by train.py (models/mercury)
  top-k w/ reconstruction   + meta tokens trained the same way on top-k pruned tokens
Writes benchmarks/results/mercury_accuracy.{json,png}.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import pathlib

import numpy as np
import torch

from collab.bench_io import pyplot, save_json, save_png
from collab.vit import experiments as ex

S = ex.Settings.from_env(pathlib.Path(__file__).resolve().parents[2])


def trained(method, split=1):
    out = {}
    pre = "meta" if method == "ours" else method
    for p in glob.glob(os.path.join(S.models, f"{pre}_r*_s{split}.npz")):
        z = np.load(p)
        out[int(z["rate_pct"])] = {"acc": float(z["test_acc"]), "n_train": int(z["n_train"]), "epochs": int(z["epochs"])}
    return dict(sorted(out.items()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="0,25,50,60,75")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    c = ex.load_cache(S)
    m = ex.load_model()
    head = ex.load_head(os.path.join(S.models, "head_full.npz"))
    full = float(np.load(os.path.join(S.models, "head_full.npz"))["test_acc"])
    rates = [int(r) for r in a.rates.split(",")]
    res = {"n_test": int(len(c["test_y"])), "full_model_acc": full, "rates": rates, "curves": {}}
    res["compute"] = "bfloat16 autocast" if S.bf16 else "float32"
    out_p = os.path.join(S.results, "mercury_accuracy.json")
    old = json.load(open(out_p)) if os.path.exists(out_p) else {}
    same = all(old.get(k) == res[k] for k in ("n_test", "full_model_acc", "compute"))   # reuse its curves
    for method in ("ours", "topk"):
        name = f"{method} w/o reconstruction"
        cur = dict(old["curves"].get(name, {})) if same else {}
        for r in ex.progress(rates, len(rates), name):
            if str(r) in cur:
                continue
            kept = ex.kept_for(method, r / 100, c, "test", m, S)
            with torch.no_grad(), S.autocast():
                x = ex.device_side(m, c["test_l1"], kept, 1)
                cur[str(r)] = ex.accuracy(ex.server_logits(m, x, 1, head), c["test_y"])
            print(f"  {method} {r}%: {cur[str(r)]:.4f}")
            res["curves"][name] = cur
            save_json(out_p, res)   # resumable: each point as it is measured
        res["curves"][name] = {str(r): cur[str(r)] for r in rates}
        tr = trained(method)
        res["curves"][f"{method} w/ reconstruction"] = {str(k): v["acc"] for k, v in tr.items()}
        res.setdefault("training", {})[method] = {str(k): v for k, v in tr.items()}
    out = save_json(out_p, res)
    plt = pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, cur in res["curves"].items():
            if cur:
                ks = sorted(cur, key=int)
                ax.plot([int(k) for k in ks], [100 * cur[k] for k in ks], marker="o", label=name)
        ax.axhline(100 * full, color="gray", ls="--", label="full model")
        ax.set_xlabel("token reduction rate after layer 1 (%)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"DINOv2 ViT-S/14, Fashion-MNIST 112px ({res['n_test']} test images)")
        ax.legend(fontsize=8)
        save_png(fig, out, dpi=120)
    print("\nrate% | " + " | ".join(res["curves"]))
    for r in rates:
        print(f"{r:5d} | " + " | ".join(f"{100 * cur[str(r)]:.1f}" if str(r) in cur else "-"
                                       for cur in res["curves"].values()))


if __name__ == "__main__":
    main()
