"""Reconstruction alternatives (Mercury Table II): 75% of tokens pruned after layer 1, split
after layer 3, Fashion-MNIST test subset.

    python benchmarks/mercury_table2.py

  none            kept tokens only (full-model head)
  zero padding    K zero tokens appended on the server (full-model head, no training)
  duplication     each pruned position filled with its region's preserved token (no training)
  deconvolution   generator (conv 2x2/2 + deconv 2x2/2) + head, trained by mercury_train.py
  meta tokens     Mercury: K learned tokens + head, trained by mercury_train.py
Writes benchmarks/results/mercury_table2.json.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mercury_common import GRID, MODELS, load_cache, model, save_json  # noqa: E402
from mercury_methods import duplicate_fill, server_flops  # noqa: E402
from mercury_train import device_side, kept_for, load_head, server_logits  # noqa: E402

RATE, SPLIT, DIM = 75, 3, 384


def main():
    torch.set_num_threads(2)
    c = load_cache()
    m = model()
    head = load_head(os.path.join(MODELS, "head_full.npz"))
    kept = kept_for("ours", RATE / 100, c, "test", m)
    with torch.no_grad():
        x = device_side(m, c["test_l1"], kept, SPLIT)
    k = GRID * GRID + 1 - x.shape[1]
    depth = len(m.blocks)
    rows = []

    def ev(name, xs, params=0, extra_flops=0.0):
        with torch.no_grad():
            acc = float((server_logits(m, xs, SPLIT, head).argmax(1).numpy() == c["test_y"]).mean())
        rows.append({"method": name, "accuracy": acc, "extra_params": params,
                     "server_gflops": (server_flops([xs.shape[1]] * (depth - SPLIT)) + extra_flops) / 1e9,
                     "trained": False})
        print(f"{name:14s} {100 * acc:.1f}%")

    ev("none", x)
    ev("zero padding", torch.cat([x, torch.zeros(x.shape[0], k, DIM)], 1))
    ev("duplication", duplicate_fill(x, kept, GRID))
    for name, fn in (("deconvolution", f"deconv_r{RATE}_s{SPLIT}.npz"), ("meta tokens", f"meta_r{RATE:02d}_s{SPLIT}.npz")):
        p = os.path.join(MODELS, fn)
        if not os.path.exists(p):
            print(f"{name}: {fn} missing (run mercury_train.py)")
            continue
        z = np.load(p)
        gen_flops = 0.0
        if name == "deconvolution":
            hid = int(z["gen_hidden"]) if "gen_hidden" in z else z["gen_down.weight"].shape[0]
            cells = (GRID // 2) ** 2
            gen_flops = 2.0 * cells * (DIM * hid * 4) * 2  # conv 2x2 + deconv 2x2 per coarse cell
        rows.append({"method": name, "accuracy": float(z["test_acc"]), "extra_params": int(z["extra_params"]),
                     "server_gflops": (server_flops([GRID * GRID + 1] * (depth - SPLIT)) + gen_flops) / 1e9,
                     "trained": True, "n_train": int(z["n_train"]), "epochs": int(z["epochs"])})
        print(f"{name:14s} {100 * float(z['test_acc']):.1f}% (trained on {int(z['n_train'])} images)")
    save_json("mercury_table2.json", {"rate_pct": RATE, "split": SPLIT, "n_test": int(len(c["test_y"])), "rows": rows})
    print("\nmethod         | accuracy | extra params | server GFLOPs")
    for r in rows:
        print(f"{r['method']:14s} | {100 * r['accuracy']:7.1f}% | {r['extra_params']:12d} | {r['server_gflops']:.3f}")


if __name__ == "__main__":
    main()
