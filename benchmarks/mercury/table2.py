"""Reconstruction alternatives (Mercury Table II): 75% of tokens pruned after layer 1, split
after layer 3, Fashion-MNIST test subset.

    python benchmarks/mercury/table2.py

  none            kept tokens only (full-model head)
  zero padding    K zero tokens appended on the server (full-model head, no training)
  duplication     each pruned position filled with its region's preserved token (no training)
  deconvolution   generator (conv 2x2/2 + deconv 2x2/2) + head, trained by train.py
  meta tokens     Mercury: K learned tokens + head, trained by train.py
Writes benchmarks/results/mercury_table2.json.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np
import torch

from collab.bench_io import save_json
from collab.vit import experiments as ex
from collab.vit.baselines import deconv_flops, duplicate_fill, zero_fill

S = ex.Settings.from_env(pathlib.Path(__file__).resolve().parents[2])
RATE, SPLIT, DIM = 75, 3, 384


def main():
    torch.set_num_threads(1)
    c = ex.load_cache(S)
    m = ex.load_model()
    head = ex.load_head(os.path.join(S.models, "head_full.npz"))
    kept = ex.kept_for("ours", RATE / 100, c, "test", m, S)
    with S.autocast():
        x = ex.device_side(m, c["test_l1"], kept, SPLIT)
    k = ex.GRID * ex.GRID + 1 - x.shape[1]
    depth = m.depth
    rows = []

    def ev(name, xs, params=0, extra_flops=0.0):
        with torch.no_grad(), S.autocast():
            acc = ex.accuracy(ex.server_logits(m, xs, SPLIT, head), c["test_y"])
        rows.append({"method": name, "accuracy": acc, "extra_params": params,
                     "server_gflops": (ex.server_flops([xs.shape[1]] * (depth - SPLIT)) + extra_flops) / 1e9,
                     "trained": False})
        print(f"{name:14s} {100 * acc:.1f}%")

    ev("none", x)
    ev("zero padding", zero_fill(x, k))
    ev("duplication", duplicate_fill(x, kept, ex.GRID, ex.REGION))
    for name, fn in (("deconvolution", f"deconv_r{RATE}_s{SPLIT}.npz"), ("meta tokens", f"meta_r{RATE:02d}_s{SPLIT}.npz")):
        p = os.path.join(S.models, fn)
        if not os.path.exists(p):
            print(f"{name}: {fn} missing (run train.py)")
            continue
        z = np.load(p)
        gen_flops = 0.0
        if name == "deconvolution":
            hid = int(z["gen_hidden"]) if "gen_hidden" in z else z["gen_down.weight"].shape[0]
            gen_flops = deconv_flops(ex.GRID, DIM, hid)
        rows.append({"method": name, "accuracy": float(z["test_acc"]), "extra_params": int(z["extra_params"]),
                     "server_gflops": (ex.server_flops([ex.GRID * ex.GRID + 1] * (depth - SPLIT)) + gen_flops) / 1e9,
                     "trained": True, "n_train": int(z["n_train"]), "epochs": int(z["epochs"])})
        print(f"{name:14s} {100 * float(z['test_acc']):.1f}% (trained on {int(z['n_train'])} images)")
    save_json(os.path.join(S.results, "mercury_table2.json"),
              {"rate_pct": RATE, "split": SPLIT, "n_test": int(len(c["test_y"])), "rows": rows})
    print("\nmethod         | accuracy | extra params | server GFLOPs")
    for r in rows:
        print(f"{r['method']:14s} | {100 * r['accuracy']:7.1f}% | {r['extra_params']:12d} | {r['server_gflops']:.3f}")


if __name__ == "__main__":
    main()
