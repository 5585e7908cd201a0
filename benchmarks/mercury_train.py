"""Recipe for models/mercury/: full-model head and per-(rate, split) meta tokens + head.

    python benchmarks/mercury_cache.py          # once: frozen-backbone features (build/)
    python benchmarks/mercury_train.py          # default configs (see CONFIGS)
    python benchmarks/mercury_train.py --configs ours:75:1,topk:75:1 --epochs 2

A config is method:rate%:split with method in
    ours    regional pruning + meta tokens M (Mercury)
    topk    attention top-k pruning + meta tokens (reconstruction on the ATS-like baseline)
    deconv  regional pruning + deconvolution generator (Table II alternative)
Training freezes the transformer and trains M (or the generator) and the linear head with
cross-entropy on N_META cached training images (Mercury Sec. III-C, Eq. 19).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mercury_common import (CACHE, GRID, IMG, MODELS, N_META, N_TEST, N_TRAIN, SEED, load_cache, model,  # noqa: E402
                            progress)
from mercury_methods import DeconvGenerator, gather, kept_ours, kept_topk, n_params  # noqa: E402

CONFIGS = "ours:75:1,ours:50:1,topk:75:1,ours:25:1,topk:50:1,ours:75:3,deconv:75:3,ours:50:3,ours:75:6"


def cls_attention(m, split: str, idx):
    """Layer-1 CLS attention (B, N), mean over heads, cached in build/."""
    p = os.path.join(CACHE, f"cls_attn_{split}.npy")
    if os.path.exists(p):
        a = np.load(p)
        if len(a) == len(idx):
            return a
    from collab.vit.data import load_fmnist, preprocess
    x, _ = load_fmnist(split)
    out = []
    batches = range(0, len(idx), 100)
    with torch.no_grad():
        for s in progress(batches, len(batches), f"layer-1 CLS attention ({split})"):
            h = m.embed(torch.from_numpy(preprocess(x[idx[s:s + 100]], IMG)))
            _, _, _, a = m.blocks[0](h, need_attn=True)
            out.append(a.mean(1)[:, 0, 1:].numpy())
    a = np.concatenate(out)
    np.save(p, a)
    return a


def device_side(m, l1, kept, split, bs=200):
    """Kept layer-1 tokens through blocks 1..split-1 (the device part after pruning)."""
    outs = []
    with torch.no_grad():
        for s in range(0, len(l1), bs):
            x = gather(torch.from_numpy(l1[s:s + bs].astype(np.float32)), kept[s:s + bs])
            x, _ = m.run_blocks(x, 1, split)
            outs.append(x)
    return torch.cat(outs)


def kept_for(method, rate, c, split_name, m):
    if method in ("ours", "deconv", "zero", "dup", "none"):
        return kept_ours(c[f"{split_name}_ao"].astype(np.float32), rate)
    if method == "topk":
        return kept_topk(cls_attention(m, split_name, c[f"{split_name}_idx"]), rate)
    raise ValueError(method)


def server_logits(m, x, split, head, meta=None, gen=None, kept=None, bs=100):
    outs = []
    for s in range(0, len(x), bs):
        xb = x[s:s + bs]
        if meta is not None:
            xb = torch.cat([xb, meta.expand(xb.shape[0], -1, -1)], 1)
        if gen is not None:
            xb = gen(xb, kept[s:s + bs], GRID)
        y, _ = m.run_blocks(xb, split, len(m.blocks))
        outs.append(head(m.features(y)))
    return torch.cat(outs)


def train_full_head(c):
    """Linear head on the full model's CLS features (full batch Adam, seconds)."""
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
    np.savez(path, head_w=lin.weight.detach().numpy().T.astype(np.float32),
             head_b=lin.bias.detach().numpy().astype(np.float32), **extra)


def load_head(path):
    z = np.load(path)
    lin = torch.nn.Linear(z["head_w"].shape[0], z["head_w"].shape[1])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(z["head_w"].T)); lin.bias.copy_(torch.from_numpy(z["head_b"]))
    for p in lin.parameters():
        p.requires_grad_(False)
    return lin


def train_config(m, c, full_head, method, rate_pct, split, epochs, lr):
    rate = rate_pct / 100
    torch.manual_seed(SEED)
    tr_kept = kept_for(method, rate, c, "train", m)[:N_META]
    te_kept = kept_for(method, rate, c, "test", m)
    xtr = device_side(m, c["train_l1"][:N_META], tr_kept, split)
    xte = device_side(m, c["test_l1"], te_kept, split)
    ytr = torch.from_numpy(c["train_y"][:N_META])
    k = GRID * GRID + 1 - xtr.shape[1]
    head = torch.nn.Linear(full_head.in_features, 10)
    with torch.no_grad():
        head.weight.copy_(full_head.weight); head.bias.copy_(full_head.bias)
    params = [{"params": head.parameters(), "lr": lr / 10}]
    meta = gen = None
    if method in ("ours", "topk"):
        flat = xtr[:, 1:].reshape(-1, xtr.shape[-1])
        mu, sd = flat.mean(0), flat.std(0)
        # random init around the token statistics (mean + 0.1 std noise): converges in few steps
        meta = torch.nn.Parameter((mu + 0.1 * sd * torch.randn(k, xtr.shape[-1]))[None])
        params.append({"params": [meta], "lr": lr * float(sd.mean())})
        extra = k * xtr.shape[-1]
    else:
        gen = DeconvGenerator(xtr.shape[-1])
        params.append({"params": gen.parameters(), "lr": lr / 10})
        extra = n_params(gen)
    opt = torch.optim.Adam(params)
    bs = 25
    steps = epochs * ((len(xtr) + bs - 1) // bs)
    it = 0
    t0 = time.time()
    g = torch.Generator().manual_seed(SEED)
    for ep in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for s in range(0, len(xtr), bs):
            b = perm[s:s + bs]
            logits = server_logits(m, xtr[b], split, head, meta, gen, tr_kept[b.numpy()], bs=bs)
            loss = F.cross_entropy(logits, ytr[b])
            opt.zero_grad(); loss.backward(); opt.step()
            it += 1
            el = time.time() - t0
            sys.stdout.write(f"\r{method} {rate_pct}% split {split}: epoch {ep + 1}/{epochs} step {it}/{steps} "
                             f"loss {loss.item():.3f} [{el:.0f}s, {el / it * (steps - it):.0f}s left]")
            sys.stdout.flush()
    sys.stdout.write("\n")
    with torch.no_grad():
        acc = float((server_logits(m, xte, split, head, meta, gen, te_kept).argmax(1).numpy() == c["test_y"]).mean())
    print(f"  test accuracy {acc:.4f} ({len(xte)} images), extra parameters {extra}")
    name = f"meta_r{rate_pct:02d}_s{split}.npz" if method == "ours" else f"{method}_r{rate_pct:02d}_s{split}.npz"
    extra_arrays = {"meta": meta.detach()[0].numpy().astype(np.float32)} if meta is not None else {}
    if gen is not None:  # 3 MB of generator weights: kept out of models/ (build/ cache), shapes recorded
        np.savez(os.path.join(CACHE, f"deconv_gen_r{rate_pct:02d}_s{split}.npz"),
                 **{k_: v.detach().numpy() for k_, v in gen.state_dict().items()})
        extra_arrays["gen_hidden"] = np.int64(gen.down.out_channels)
    save_head(os.path.join(MODELS, name), head, rate_pct=rate_pct, split=split, method=method, test_acc=acc,
              extra_params=extra, n_train=len(xtr), n_test=len(xte), epochs=epochs, **extra_arrays)
    return acc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=CONFIGS)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-existing", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(MODELS, exist_ok=True)
    c = load_cache()
    print(f"subsets: train {len(c['train_y'])} (meta-token training uses {N_META}), test {len(c['test_y'])}; "
          f"{IMG}px -> {GRID}x{GRID} grid")
    lin, acc, tr = train_full_head(c)
    print(f"full model (frozen DINOv2 ViT-S/14 + linear head): test accuracy {acc:.4f}, train {tr:.4f}")
    save_head(os.path.join(MODELS, "head_full.npz"), lin, rate_pct=0, split=0, method="full", test_acc=acc,
              n_train=N_TRAIN, n_test=N_TEST, extra_params=0)
    m = model()
    full_head = load_head(os.path.join(MODELS, "head_full.npz"))
    for cfg in a.configs.split(","):
        method, r, s = cfg.split(":")
        name = f"meta_r{int(r):02d}_s{s}.npz" if method == "ours" else f"{method}_r{int(r):02d}_s{s}.npz"
        if a.skip_existing and os.path.exists(os.path.join(MODELS, name)):
            print("exists:", name)
            continue
        train_config(m, c, full_head, method, int(r), int(s), a.epochs, a.lr)


if __name__ == "__main__":
    main()
