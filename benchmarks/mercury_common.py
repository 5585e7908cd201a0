"""Shared helpers of the Mercury scripts: settings, feature cache, progress printing (torch)."""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("COLLAB_MERCURY_CACHE", os.path.join(ROOT, "build", "mercury_cache"))
MODELS = os.environ.get("COLLAB_MERCURY_MODELS", os.path.join(ROOT, "models", "mercury"))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
# Subset sizes (2 shared CPU cores): see notes/issue-5.md.
N_TRAIN = int(os.environ.get("MERCURY_N_TRAIN", 2000))     # head of the full model
N_META = int(os.environ.get("MERCURY_N_META", 500))        # meta-token / head training per rate
N_TEST = int(os.environ.get("MERCURY_N_TEST", 1000))
IMG = 112   # 8x8 grid of 14-px patches: divisible by the 2x2 region; 65 tokens keep CPU cost low
GRID = IMG // 14
SEED = 0


def progress(it, total, desc, every=1):
    t0 = time.time()
    for i, x in enumerate(it):
        yield x
        if (i + 1) % every == 0 or i + 1 == total:
            el = time.time() - t0
            eta = el / (i + 1) * (total - i - 1)
            sys.stdout.write(f"\r{desc}: {i + 1}/{total} [{el:.0f}s elapsed, {eta:.0f}s left]")
            sys.stdout.flush()
    sys.stdout.write("\n")


def save_json(name, obj):
    os.makedirs(RESULTS, exist_ok=True)
    p = os.path.join(RESULTS, name)
    with open(p, "w") as f:
        json.dump(obj, f, indent=1)
    print("wrote", p)
    return p


def load_cache():
    p = os.path.join(CACHE, "features.npz")
    if not os.path.exists(p):
        raise SystemExit(f"{p} missing: run python benchmarks/mercury_cache.py first")
    return dict(np.load(p))


def model():
    import torch
    from collab.vit.torch_vit import TorchViT
    from collab.vit.weights import load_weights
    torch.manual_seed(SEED)
    return TorchViT(load_weights(), grid=GRID).eval()
