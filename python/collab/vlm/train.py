"""Train the projector of collab-vlm-tiny (torch; training only) with SmolLM2 frozen.

Two stages, both resumable from checkpoints in the work directory:

1. alignment (no LLM in the loop, seconds): every image row is regressed onto the token
   embedding of the first token of the item's name, so the LLM starts from image rows that
   already look like words;
2. end to end: the frozen SmolLM2 (a torch mirror of the GGUF, dequantized) reads
   [text before | projected rows | text after | answer] and the answer tokens' cross entropy
   trains the projector only (no LoRA).

Features come from the ggml encoder in mtmd itself (tanh GELU, F16 patch convolution), so
the projector trains on exactly what it sees at inference. Output: the projector as .npz.

    nice -n 15 python -m collab.vlm.train --work build/vlm --n-train 2000 --steps 400
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from ..llm.models import smollm2_path
from ..vit.data import load_fmnist
from ..vit.weights import PATCH
from .mmproj import Projector, VisionTower, feature_tap, write_mmproj
from .mtmd import LlamaModel, MtmdVision, Prompt, to_model_size
from .vqa import NAMES, make_set


def _mirror_cls():
    # the torch mirror of a llama GGUF lives with the MindFusion training code
    from ..llm.train.mirror import LlamaMirror

    return LlamaMirror


def features(work: str, split: str, n: int, size: int, seed: int, log=print) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (n, G*G, 384) float16, labels, image indices) cached in work/feat-*.npz.

    The features are what the projector's LayerNorm hands on, computed by mtmd's ggml
    encoder itself through a feature-tap projector (collab.vlm.mmproj.feature_tap)."""
    path = os.path.join(work, f"feat-{split}-{n}-{size}-{seed}.npz")
    if os.path.exists(path):
        z = np.load(path)
        return z["f"], z["y"], z["idx"]
    x, y = load_fmnist(split)
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    tower = VisionTower.dinov2(size)
    llm = LlamaModel(smollm2_path(), n_threads=1)
    tap = write_mmproj(os.path.join(work, "tap.gguf"), tower, feature_tap(tower.width, llm.n_embd))
    vis = MtmdVision(tap, llm, n_threads=1)
    part = path + ".part.npy"
    done = np.load(part) if os.path.exists(part) else np.zeros((0, (size // PATCH) ** 2, tower.width), np.float16)
    rows = [done]
    t = time.time()
    for k in range(len(done), n):
        rows.append(vis.encode(to_model_size(x[idx[k]], size))[None, :, :tower.width].astype(np.float16))
        if (k + 1) % 50 == 0 or k + 1 == n:
            rows = [np.concatenate(rows)]
            np.save(part, rows[0])
            log(f"features {split}: {k + 1}/{n} ({time.time() - t:.0f} s)")
    vis.close()
    f = np.concatenate(rows)
    np.savez(path, f=f, y=y[idx], idx=idx)
    if os.path.exists(part):
        os.remove(part)
    return f, y[idx], idx


class TorchProjector:
    """torch twin of collab.vlm.mmproj.Projector (tanh GELU, LayerNorm eps 1e-5)."""

    def __init__(self, n_in: int, n_out: int, seed: int = 0):
        import torch

        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.LayerNorm(n_in, eps=1e-5), torch.nn.Linear(n_in, n_out),
                                       torch.nn.GELU(approximate="tanh"), torch.nn.Linear(n_out, n_out))

    def __call__(self, x):
        return self.net(x)

    def export(self) -> Projector:
        ln, l1, _, l2 = self.net
        g = lambda t: t.detach().float().numpy().copy()  # noqa: E731
        return Projector(ln_w=g(ln.weight), ln_b=g(ln.bias), w1=g(l1.weight), b1=g(l1.bias), w2=g(l2.weight), b2=g(l2.bias))


def save_projector(path: str, p: Projector, **meta) -> None:
    np.savez(path, ln_w=p.ln_w, ln_b=p.ln_b, w1=p.w1, b1=p.b1, w2=p.w2, b2=p.b2, meta=json.dumps(meta))


def load_projector(path: str) -> Projector:
    z = np.load(path)
    return Projector(*(z[k].astype(np.float32) for k in ("ln_w", "ln_b", "w1", "b1", "w2", "b2")))


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description="train collab-vlm-tiny's projector (frozen SmolLM2)")
    ap.add_argument("--work", default="build/vlm")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--align-epochs", type=int, default=30)
    ap.add_argument("--steps", type=int, default=400, help="end-to-end samples (one per step)")
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="models/vlm")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    log = lambda m: print(time.strftime("%H:%M:%S"), m, flush=True)  # noqa: E731
    feats, labels, _ = features(a.work, "train", a.n_train, a.size, a.seed, log)
    mirror = _mirror_cls().from_gguf(smollm2_path())
    d = mirror.n_embd
    llm = LlamaModel(smollm2_path())
    proj = TorchProjector(feats.shape[-1], d, a.seed)
    opt = torch.optim.Adam(proj.net.parameters(), lr=a.lr)
    ckpt = os.path.join(a.work, "projector.pt")
    state = {"stage": 1, "epoch": 0, "step": 0, "losses": []}
    if os.path.exists(ckpt):
        c = torch.load(ckpt)
        proj.net.load_state_dict(c["net"])
        opt.load_state_dict(c["opt"])
        state = c["state"]
        log(f"resumed at {state['stage']=} {state['epoch']=} {state['step']=}")

    def save():
        torch.save({"net": proj.net.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt + ".tmp")
        os.replace(ckpt + ".tmp", ckpt)

    # stage 1: rows -> embedding of the item's first name token
    name_tok = [llm.tokenize(n)[0] for n in NAMES]
    emb = mirror.embed(name_tok).float()
    F = torch.from_numpy(feats.astype(np.float32))
    Y = torch.from_numpy(labels)
    while state["stage"] == 1 and state["epoch"] < a.align_epochs:
        perm = torch.randperm(len(F))
        tot = 0.0
        for i in range(0, len(F), 64):
            b = perm[i:i + 64]
            out = proj(F[b])
            loss = ((out - emb[Y[b]][:, None, :]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss) * len(b)
        state["epoch"] += 1
        log(f"align epoch {state['epoch']}/{a.align_epochs}: mse {tot / len(F):.4f}")
        save()
    if state["stage"] == 1:
        state["stage"] = 2
        for g in opt.param_groups:
            g["lr"] = a.lr / 3
        save()
    # stage 2: answers through the frozen LLM
    tower = VisionTower.dinov2(a.size)
    tmp_mmproj = write_mmproj(os.path.join(a.work, "tok.gguf"), tower, Projector.random(tower.width, d))
    vis = MtmdVision(tmp_mmproj, llm)
    samples = make_set(labels, len(labels), a.seed + 1)
    cache = {}
    t0 = time.time()
    while state["step"] < a.steps:
        s = samples[state["step"] % len(samples)]
        if s.question not in cache:
            pr = Prompt(vis, s.question)
            cache[s.question] = (pr.before, pr.after)
            pr.close()
        before, after = cache[s.question]
        ans = llm.tokenize(s.answer) + [2]  # <|im_end|> ends the answer
        x = torch.cat([mirror.embed(before), proj(F[s.image]), mirror.embed(after + ans[:-1])], 0)
        logits = mirror.tail(x, 0, logits_from=x.shape[0] - len(ans))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(ans)) / a.accum
        loss.backward()
        state["losses"].append(float(loss) * a.accum)
        state["step"] += 1
        if state["step"] % a.accum == 0:
            opt.step()
            opt.zero_grad()
        if state["step"] % 20 == 0 or state["step"] == a.steps:
            recent = np.mean(state["losses"][-20:])
            log(f"step {state['step']}/{a.steps}: loss {recent:.3f} ({(time.time() - t0) / 20:.2f} s/step)")
            t0 = time.time()
            save()
            p = proj.export()
            save_projector(os.path.join(a.out, "projector.npz"), p, step=state["step"], size=a.size, n_train=a.n_train)
    p = proj.export()
    save_projector(os.path.join(a.out, "projector.npz"), p, step=state["step"], size=a.size, n_train=a.n_train)
    log(f"wrote {a.out}/projector.npz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
