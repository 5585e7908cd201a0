"""Precompute frozen-backbone features once (torch, no grad): for a seeded Fashion-MNIST subset,
layer-1 tokens (fp16), layer-1 attention outputs (fp16) and the full model's CLS feature.

    python benchmarks/mercury/cache.py   (sizes: MERCURY_N_TRAIN / MERCURY_N_TEST)
"""
import os
import pathlib

import numpy as np
import torch

from collab.vit import experiments as ex
from collab.vit.data import load_fmnist, preprocess, subset

S = ex.Settings.from_env(pathlib.Path(__file__).resolve().parents[2])


def run(m, imgs, desc, bs=50):
    l1, ao, feat = [], [], []
    batches = range(0, len(imgs), bs)
    with torch.no_grad():
        for s in ex.progress(batches, len(batches), desc):
            h, att = m.layer1(torch.from_numpy(preprocess(imgs[s:s + bs], ex.IMG)))
            y = m.run_blocks(h, 1, m.depth)
            l1.append(h.half().numpy()); ao.append(att.out.half().numpy()); feat.append(m.features(y).numpy())
    return np.concatenate(l1), np.concatenate(ao), np.concatenate(feat)


def main():
    torch.set_num_threads(int(os.environ.get("MERCURY_THREADS", 2)))
    os.makedirs(S.cache, exist_ok=True)
    m = ex.load_model()
    out = {}
    for split, n in (("test", S.n_test), ("train", S.n_train)):
        x, y = load_fmnist(split)
        idx = subset(len(x), n, ex.SEED)
        l1, ao, feat = run(m, x[idx], f"cache {split} ({n} images)")
        out.update({f"{split}_idx": idx, f"{split}_y": y[idx], f"{split}_l1": l1, f"{split}_ao": ao,
                    f"{split}_feat": feat})
    np.savez(os.path.join(S.cache, "features.npz"), **out)
    print("wrote", os.path.join(S.cache, "features.npz"))


if __name__ == "__main__":
    main()
