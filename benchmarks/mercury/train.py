"""Recipe for models/mercury/: full-model head and per-(rate, split) meta tokens + head.

    python benchmarks/mercury/cache.py          # once: frozen-backbone features (build/)
    python benchmarks/mercury/train.py          # default configs (see CONFIGS)
    python benchmarks/mercury/train.py --configs ours:75:1,topk:75:1 --epochs 2

A config is method:rate%:split with method in
    ours    regional pruning + meta tokens M (Mercury)
    topk    attention top-k pruning + meta tokens (reconstruction on the ATS-like baseline)
    deconv  regional pruning + deconvolution generator (Table II alternative)
Training freezes the transformer and trains M (or the generator) and the linear head with
cross-entropy on the first MERCURY_N_META cached training images (Eq. 19, collab.vit.mercury.train_step).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import time

import numpy as np
import torch

from collab.vit import experiments as ex
from collab.vit import mercury
from collab.vit.baselines import DeconvGenerator, n_params

S = ex.Settings.from_env(pathlib.Path(__file__).resolve().parents[2])
CONFIGS = "ours:75:1,ours:50:1,topk:75:1,ours:25:1,ours:75:3,deconv:75:3,ours:50:3,ours:75:6"


def artifact(method, rate_pct, split):
    return f"meta_r{rate_pct:02d}_s{split}.npz" if method == "ours" else f"{method}_r{rate_pct:02d}_s{split}.npz"


def train_config(m, c, full_head, method, rate_pct, split, epochs, lr, cont=None, freeze_head=False,
                 n_val=0, val_every=400, minutes=None):
    """Eq. 19 for one configuration. cont: a models folder whose artifact of the same name the run
    starts from (its meta tokens and head); freeze_head trains M only; n_val > 0 holds out the last
    n_val of the MERCURY_N_META training images, validates every val_every steps and keeps the best
    state (never the test set); the run checkpoints into the cache folder at each validation and
    resumes from there, and stops after `minutes` with the best state so far."""
    rate = rate_pct / 100
    name = artifact(method, rate_pct, split)
    torch.manual_seed(ex.SEED)
    n_fit = S.n_meta - n_val
    with S.autocast():
        tr_kept = ex.kept_for(method, rate, c, "train", m, S)[:S.n_meta]
        te_kept = ex.kept_for(method, rate, c, "test", m, S)
        xall = ex.device_side(m, c["train_l1"][:S.n_meta], tr_kept, split)
        xte = ex.device_side(m, c["test_l1"], te_kept, split)
    xtr, xval = xall[:n_fit], xall[n_fit:]
    yall = torch.from_numpy(c["train_y"][:S.n_meta])
    ytr, yval = yall[:n_fit], c["train_y"][n_fit:S.n_meta]
    k = ex.GRID * ex.GRID + 1 - xtr.shape[1]
    start = full_head
    if cont is not None:
        if method not in ("ours", "topk"):
            raise SystemExit(f"continuing is for meta tokens only, not {method}")
        z = np.load(os.path.join(cont, name))
        start = ex.load_head(os.path.join(cont, name))
    head = torch.nn.Linear(full_head.in_features, 10)
    with torch.no_grad():
        head.weight.copy_(start.weight); head.bias.copy_(start.bias)
    head.requires_grad_(not freeze_head)
    params = [] if freeze_head else [{"params": head.parameters(), "lr": lr / 10}]
    meta = gen = None
    if method in ("ours", "topk"):
        meta = mercury.init_meta(xtr, k)
        if cont is not None:
            with torch.no_grad():
                meta.copy_(torch.from_numpy(z["meta"]))
        params.append({"params": [meta], "lr": lr * float(mercury.token_stats(xtr)[1].mean())})
        extra = k * xtr.shape[-1]
    else:
        gen = DeconvGenerator(xtr.shape[-1])
        with torch.no_grad():   # start from the mean token, as the meta tokens do (init_meta)
            gen.up.bias.copy_(mercury.token_stats(xtr)[0] / xtr[:, 1:].std())
        # 1.3M weights each moved by lr/10 per Adam step made the loss jump (3-12) and never settle
        params.append({"params": gen.parameters(), "lr": lr / 100})
        extra = n_params(gen)
    opt = torch.optim.Adam(params)
    trained = [p for g_ in params for p in g_["params"]]

    def val_acc():
        if not n_val:
            return None
        with torch.no_grad(), S.autocast():
            return ex.accuracy(ex.server_logits(m, xval, split, head, meta, gen, tr_kept[n_fit:]), yval)

    def snapshot():
        return [p.detach().clone() for p in trained]

    bs = 25
    per_epoch = (len(xtr) + bs - 1) // bs
    steps = epochs * per_epoch
    it = 0
    ckpt = os.path.join(S.cache, f"ckpt_{name[:-4]}_n{S.n_meta}.pt")
    if not (n_val and os.path.exists(ckpt)):   # a resumed run has its start in the checkpoint's history
        best = (val_acc(), snapshot())
        hist = [(0, best[0])]
        if n_val:
            print(f"{method} {rate_pct}% split {split}: validation accuracy at the start {best[0]:.4f} ({n_val} images)")
    else:
        st = torch.load(ckpt)
        with torch.no_grad():
            for p, v in zip(trained, st["params"]):
                p.copy_(v)
        opt.load_state_dict(st["opt"])
        it, best, hist = st["it"], (st["best_acc"], st["best"]), st["hist"]
        print(f"resumed at step {it}/{steps} (best validation {best[0]:.4f})")
    t0 = time.time()
    it0 = it
    g = torch.Generator().manual_seed(ex.SEED)
    for ep in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)   # drawn every epoch, so a resumed run sees the same order
        for s in range(0, len(xtr), bs):
            if ep * per_epoch + s // bs < it:
                continue
            if minutes is not None and time.time() - t0 > 60 * minutes:
                break
            b = perm[s:s + bs]
            kb = tr_kept[b.numpy()]
            fill = None if gen is None else (lambda xb, kb=kb: gen(xb, kb, ex.GRID))
            # one autocast context per step: autocast caches the low-precision copy of every trained
            # leaf (head, generator) until its context exits, so one context around the whole loop
            # would run every step, and the evaluation, with the initial weights
            with S.autocast():
                loss = mercury.train_step(m, xtr[b], ytr[b], split, head, opt, meta, fill)
            it += 1
            el = time.time() - t0
            sys.stdout.write(f"\r{method} {rate_pct}% split {split}: epoch {ep + 1}/{epochs} step {it}/{steps} "
                             f"loss {loss:.3f} [{el:.0f}s, {el / (it - it0) * (steps - it):.0f}s left]")
            sys.stdout.flush()
            if n_val and (it % val_every == 0 or it == steps):
                acc_v = val_acc()
                hist.append((it, acc_v))
                if acc_v > best[0]:
                    best = (acc_v, snapshot())
                print(f"\n  step {it}: validation {acc_v:.4f} (best {best[0]:.4f})")
                torch.save({"params": [p.detach() for p in trained], "opt": opt.state_dict(), "it": it,
                            "best_acc": best[0], "best": best[1], "hist": hist}, ckpt + ".tmp")
                os.replace(ckpt + ".tmp", ckpt)
    sys.stdout.write("\n")
    if n_val and hist[-1][0] != it:   # stopped by the time budget between two validations
        hist.append((it, val_acc()))
        if hist[-1][1] > best[0]:
            best = (hist[-1][1], snapshot())
    if n_val:   # the validated best, not the last step
        with torch.no_grad():
            for p, v in zip(trained, best[1]):
                p.copy_(v)
    with torch.no_grad(), S.autocast():
        acc = ex.accuracy(ex.server_logits(m, xte, split, head, meta, gen, te_kept), c["test_y"])
    print(f"  test accuracy {acc:.4f} ({len(xte)} images), extra parameters {extra}")
    extra_arrays = {"meta": meta.detach().numpy().astype(np.float32)} if meta is not None else {}
    if gen is not None:  # 3 MB of generator weights: kept out of models/ (build/ cache), shapes recorded
        np.savez(os.path.join(S.cache, f"deconv_gen_r{rate_pct:02d}_s{split}.npz"),
                 **{k_: v.detach().numpy() for k_, v in gen.state_dict().items()})
        extra_arrays["gen_hidden"] = np.int64(gen.down.out_channels)
    if n_val:
        extra_arrays.update(val_acc=best[0], n_val=n_val, val_history=np.array(hist, dtype=np.float64),
                            steps_run=it)
    if cont is not None:
        extra_arrays.update(continued_from_n_train=int(z["n_train"]), continued_from_epochs=int(z["epochs"]))
    ex.save_head(os.path.join(S.models, name), head, rate_pct=rate_pct, split=split,
                 method=method, test_acc=acc, extra_params=extra, n_train=len(xtr), n_test=len(xte), epochs=epochs,
                 pool=ex.POOL, lr=lr, head="frozen" if freeze_head else "trained",
                 **extra_arrays)
    return acc


def train_head(c):
    """The full model's head on every cached training feature; its accuracy on the test subset (the
    reference of every comparison) and on the whole cached test set; a CLS-only head beside it."""
    full = ex.load_cache(dataclasses.replace(S, n_test=S.n_test_all)) if S.n_test_all != S.n_test else c
    lin, acc, tr = ex.train_full_head(c)
    with torch.no_grad():
        acc_all = ex.accuracy(lin(torch.from_numpy(full["test_feat"])), full["test_y"])
    d = ex.DIM
    cls_only = {k: (v[:, :d] if k.endswith("_feat") else v) for k, v in c.items() if k.endswith(("_feat", "_y"))}
    lin_cls, acc_cls, _ = ex.train_full_head(cls_only)
    with torch.no_grad():
        acc_cls_all = ex.accuracy(lin_cls(torch.from_numpy(full["test_feat"][:, :d])), full["test_y"])
    print(f"full model (frozen DINOv2 ViT-S/14 + linear head on {ex.POOL}, {len(c['train_y'])} training images): "
          f"test accuracy {acc:.4f} ({len(c['test_y'])} images), {acc_all:.4f} ({len(full['test_y'])} images), "
          f"train {tr:.4f}; CLS only: {acc_cls:.4f} / {acc_cls_all:.4f}")
    ex.save_head(os.path.join(S.models, "head_full.npz"), lin, rate_pct=0, split=0, method="full", test_acc=acc,
                 n_train=len(c["train_y"]), n_test=len(c["test_y"]), extra_params=0, pool=ex.POOL,
                 test_acc_all=acc_all, n_test_all=len(full["test_y"]), train_acc=tr,
                 cls_only_test_acc=acc_cls, cls_only_test_acc_all=acc_cls_all)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=CONFIGS)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-existing", action="store_true")
    ap.add_argument("--head", choices=("train", "reuse"), default="train",
                    help="reuse: keep the models folder's head_full.npz (a second process training other configs)")
    ap.add_argument("--continue-from", metavar="DIR",
                    help="start each configuration from DIR's artifact of the same name (its M and head)")
    ap.add_argument("--freeze-head", action="store_true", help="train the meta tokens only (Eq. 19 without the head)")
    ap.add_argument("--val", type=int, default=0,
                    help="hold out the last VAL of the MERCURY_N_META images; keep the best validated state")
    ap.add_argument("--val-every", type=int, default=400, help="steps between validations (and checkpoints)")
    ap.add_argument("--minutes", type=float, help="stop each configuration after this long (best state so far)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(S.models, exist_ok=True)
    c = ex.load_cache(S)
    print(f"subsets: train {len(c['train_y'])} (meta-token training uses {S.n_meta}), test {len(c['test_y'])}; "
          f"{ex.IMG}px -> {ex.GRID}x{ex.GRID} grid")
    if a.head == "train":
        train_head(c)
    m = ex.load_model()
    full_head = ex.load_head(os.path.join(S.models, "head_full.npz"))
    for cfg in filter(None, a.configs.split(",")):
        method, r, s = cfg.split(":")
        if a.skip_existing and os.path.exists(os.path.join(S.models, artifact(method, int(r), int(s)))):
            print("exists:", artifact(method, int(r), int(s)))
            continue
        train_config(m, c, full_head, method, int(r), int(s), a.epochs, a.lr, cont=a.continue_from,
                     freeze_head=a.freeze_head, n_val=a.val, val_every=a.val_every, minutes=a.minutes)


if __name__ == "__main__":
    main()
