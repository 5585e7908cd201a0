"""Precompute frozen-backbone features once (torch, no grad, one thread by default).

Every image of a split, in a seeded random order (so any prefix is a seeded random subset; the
first 1000 test images are the old 1000-image test subset), is run through the frozen DINOv2 and
stored in chunks of CHUNK images: layer-1 tokens (fp16), layer-1 attention outputs (fp16) and the
final features (CLS beside the mean of the patch tokens, after the final LayerNorm; the CLS-only
feature is the first half). The run is resumable: finished chunks are kept, the progress line says
what is left. collab.vit.experiments.load_cache reads the chunks back.

    python benchmarks/mercury/cache.py                      # all 10k test, then all 60k train
    python benchmarks/mercury/cache.py --n-test 2000 --n-train 5000
    python benchmarks/mercury/cache.py --reverse            # a second process, on the other core
    python benchmarks/mercury/cache.py --img 224 --n-train 64 --n-test 0   # time 224 px only
"""
import argparse
import os
import pathlib
import time

import numpy as np
import torch

from collab.vit import experiments as ex
from collab.vit.data import load_fmnist, preprocess

S = ex.Settings.from_env(pathlib.Path(__file__).resolve().parents[2])


def run(m, imgs, img, bs=50, bf16=False):
    l1, ao, feat = [], [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for s in range(0, len(imgs), bs):
            h, att = m.layer1(torch.from_numpy(preprocess(imgs[s:s + bs], img)))
            y = m.run_blocks(h, 1, m.depth)
            l1.append(h.float().half().numpy()); ao.append(att.out.float().half().numpy())
            feat.append(m.features(y.float(), "cls+mean").float().numpy())
    return np.concatenate(l1), np.concatenate(ao), np.concatenate(feat)


def cache_split(m, split, n, img, reverse=False, bf16=False):
    x, y = load_fmnist(split)
    order = ex.split_order(len(x))[:n]
    chunks = range(0, len(order), ex.CHUNK)
    t0, done_now = time.time(), 0
    for i, c0 in (reversed(list(enumerate(chunks))) if reverse else enumerate(chunks)):
        path = ex.chunk_path(S, split, c0)
        if os.path.exists(path):
            continue
        idx = order[c0:c0 + ex.CHUNK]
        l1, ao, feat = run(m, x[idx], img, bf16=bf16)
        np.savez(path + ".tmp.npz", idx=idx, y=y[idx], l1=l1, ao=ao, feat=feat,
                 compute=np.str_("bfloat16 autocast" if bf16 else "float32"))
        os.replace(path + ".tmp.npz", path)
        done_now += len(idx)
        el = time.time() - t0
        left = sum(1 for c in chunks if not os.path.exists(ex.chunk_path(S, split, c)))
        print(f"cache {split}: chunk {i + 1}/{len(chunks)} [{el:.0f}s, {el / done_now * 1000:.1f} ms/image, "
              f"~{el / done_now * left * ex.CHUNK:.0f}s left]", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reverse", action="store_true",
                    help="train chunks last to first: a second process on another core meets the first one")
    ap.add_argument("--bf16", choices=("train", "none", "all"), default="train",
                    help="which splits run under bfloat16 autocast (AMX: ~2.5x faster on this CPU); the test "
                         "features stay float32 by default, so the head's test accuracy is the float32 one")
    ap.add_argument("--img", type=int, default=ex.IMG, help="only to time other resolutions (nothing is written)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.img != ex.IMG:
        from collab.vit.torch_vit import TorchViT
        from collab.vit.weights import load_weights
        m = TorchViT(load_weights(), grid=a.img // 14).eval()
        x, _ = load_fmnist("train")
        for bf16 in (False, True):
            run(m, x[:8], a.img, bf16=bf16)
            t = time.time()
            run(m, x[:a.n_train], a.img, bf16=bf16)
            print(f"{a.img} px: {(time.time() - t) / a.n_train * 1000:.1f} ms/image ({a.threads} thread"
                  f"{', bfloat16 autocast' if bf16 else ', float32'})")
        return
    os.makedirs(os.path.join(S.cache, "chunks"), exist_ok=True)
    m = ex.load_model()
    if not a.reverse:
        cache_split(m, "test", a.n_test, a.img, bf16=a.bf16 == "all")
    cache_split(m, "train", a.n_train, a.img, a.reverse, bf16=a.bf16 != "none")
    print("cache complete in", S.cache)


if __name__ == "__main__":
    main()
