"""Precompute frozen-backbone features once (torch, no grad): for a seeded Fashion-MNIST subset,
layer-1 tokens (fp16), layer-1 attention outputs (fp16) and the full model's CLS feature.
Usage: python benchmarks/mercury_cache.py   (sizes: MERCURY_N_TRAIN / MERCURY_N_TEST)"""
import os

import numpy as np
import torch

from mercury_common import CACHE, IMG, N_TEST, N_TRAIN, SEED, model, progress
from collab.vit.data import load_fmnist, preprocess, subset


def run(m, imgs, desc, bs=50):
    l1, ao, feat = [], [], []
    batches = range(0, len(imgs), bs)
    with torch.no_grad():
        for s in progress(batches, len(batches), desc):
            x = torch.from_numpy(preprocess(imgs[s:s + bs], IMG))
            h, a = m.layer1(x)
            y, _ = m.run_blocks(h, 1, len(m.blocks))
            l1.append(h.half().numpy()); ao.append(a.half().numpy()); feat.append(m.features(y).numpy())
    return np.concatenate(l1), np.concatenate(ao), np.concatenate(feat)


def main():
    torch.set_num_threads(int(os.environ.get("MERCURY_THREADS", 2)))
    os.makedirs(CACHE, exist_ok=True)
    m = model()
    out = {}
    for split, n in (("test", N_TEST), ("train", N_TRAIN)):
        x, y = load_fmnist(split)
        idx = subset(len(x), n, SEED)
        l1, ao, feat = run(m, x[idx], f"cache {split} ({n} images)")
        out.update({f"{split}_idx": idx, f"{split}_y": y[idx], f"{split}_l1": l1, f"{split}_ao": ao,
                    f"{split}_feat": feat})
    np.savez(os.path.join(CACHE, "features.npz"), **out)
    print("wrote", os.path.join(CACHE, "features.npz"))


if __name__ == "__main__":
    main()
