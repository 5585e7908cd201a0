"""Rebuild every Ask-the-Expert model, stage by stage, resumable (torch; training only).

    python -m collab.expert.train.recipe [--cache DIR] [--only STAGE ...] [--set KEY=VALUE ...] [--plan]

Stages (each writes <cache>/runs/<stage>/final.npz + metrics.json; a stage that has them is
skipped; a stage that stopped mid-way resumes from its last epoch checkpoint):
  teacher            M_D: DINOv2 ViT-S/14 (6 heads) fine-tuned on the teacher subset
  tokens             block-11 inputs of M_D on the student/test subsets (cache for the teachers M_I)
  spec-S<s>-<set>    M_I: M_D with its last block, final norm and head re-trained with the
                     progressive weights (Eq. 1-2) on D_I, from the cached tokens
  gen-<h>H           generalist student: pruned from M_D to h heads, hard-distilled (w = 1)
  edge-<h>H          the served edge model: gen-<h>H's pruned start distilled longer (n_edge, edge_epochs)
  base-<h>H          the experts' common start: M_D pruned to h heads, distilled like edge-<h>H
  exp-S<s>-<set>-<h>H-progressive | -static
                     expert m_I: from base-<h>H, Eq. 3 with the hard decisions of M_I and omega(t)
                     ramping 1 -> W (progressive) or omega = W throughout (static). (The paper prunes
                     every expert from its own M_I; six recoveries from pruning did not fit 2 shared
                     cores: pruned-from-M_I experts reached 49-51% overall after 3000 image-steps.)
  gen-<h>H           for h = an expert size: from base-<h>H with the same extra budget, w = 1, M_D labels
Expert sizes: expert_heads (the served S = 3 library and the S = 2 / 3 / 4 sweep of Table 3) and
more_expert_heads (an S = 3 library of that size, progressive first, then its static baselines).
Sizes (defaults fit a shared 2-core CPU): 56x56 px input (4x4 patches + CLS), teacher subset
8000 train images (1 epoch), student subset its first 1500 (2 epochs; the edge model and the
experts' starts: 4000 x 4 / x 3), 3000 test images, batch 32, no augmentation (so teacher
decisions can be cached).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time

import numpy as np
import torch

from collab.vit.data import load_fmnist, preprocess
from collab.vit.torch_vit import TorchViT
from collab.vit.weights import load_weights

from ..cache import cache_dir
from ..partitions import PARTITIONS, classes_of, expert_sets, set_name
from .distill import sample_weights, weighted_hard_distill_loss
from .masked import VitClassifier
from .prune import importance, prune

CFG = dict(size=56, n_teacher=8000, n_student=1500, n_test=3000, batch=32, teacher_epochs=1,
           spec_epochs=2, student_epochs=2, w_max=14.0, edge_heads=2, expert_heads=3,
           gen_heads=(2, 3, 4), imp_batches=4, split_block=11, seed=0, n_edge=4000, edge_epochs=4,
           n_tokens=2000, n_eval=1000, base_epochs=3, more_expert_heads=(4,))


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


class Data:
    def __init__(self, cfg):
        xtr, ytr = load_fmnist("train")
        xte, yte = load_fmnist("test")
        perm = np.random.default_rng(cfg["seed"]).permutation(len(ytr))
        self.idx_teacher = perm[: cfg["n_teacher"]]
        self.idx_test = np.random.default_rng(cfg["seed"] + 1).permutation(len(yte))[: cfg["n_test"]]
        self.x = xtr[self.idx_teacher]
        self.y = ytr[self.idx_teacher]
        self.xt = xte[self.idx_test]
        self.yt = yte[self.idx_test]
        self.n_student = cfg["n_student"]
        self.size = cfg["size"]

    def images(self, x, idx):
        return torch.from_numpy(preprocess(x[idx], self.size))


def to_flat(model: VitClassifier) -> dict:
    """numpy params in collab.vit.runtime_model.NumpyViT's flat layout + head_w (in, out), head_b."""
    b = model.body
    f = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    p = {"patch_w": f(b.patch_embed.weight), "patch_b": f(b.patch_embed.bias), "cls": f(b.cls),
         "pos": f(b.pos), "norm_w": f(b.norm.weight), "norm_b": f(b.norm.bias),
         "heads": np.array(model.heads), "head_w": f(model.head.weight).T.copy(), "head_b": f(model.head.bias)}
    for i, blk in enumerate(b.blocks):
        for ln in ("ln1", "ln2"):
            p[f"b{i}.{ln}_w"] = f(getattr(blk, ln).weight)
            p[f"b{i}.{ln}_b"] = f(getattr(blk, ln).bias)
        for name in ("q", "k", "v", "o", "fc1", "fc2"):
            p[f"b{i}.{name}_w"] = f(getattr(blk, name).weight).T.copy()
            p[f"b{i}.{name}_b"] = f(getattr(blk, name).bias)
        p[f"b{i}.ls1"] = f(blk.ls1)
        p[f"b{i}.ls2"] = f(blk.ls2)
    return p


def from_flat(p: dict, grid: int) -> VitClassifier:
    body = TorchViT.from_numpy_params({k: v for k, v in p.items() if not k.startswith("head_")}, grid)
    m = VitClassifier(body, p["head_b"].shape[0])
    with torch.no_grad():
        m.head.weight.copy_(torch.from_numpy(np.ascontiguousarray(p["head_w"].T)))
        m.head.bias.copy_(torch.from_numpy(p["head_b"]))
    return m


class Stage:
    def __init__(self, root, name):
        self.name = name
        self.dir = root / "runs" / name
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def done(self):
        return (self.dir / "final.npz").exists() and (self.dir / "metrics.json").exists()

    def claim(self) -> bool:
        """False when another live recipe process is training this stage (parallel runs)."""
        import os
        f = self.dir / "claim"
        if f.exists():
            try:
                pid = int(f.read_text())
                if pid != os.getpid():
                    os.kill(pid, 0)
                    log(f"[{self.name}] trained by process {pid}; skipping")
                    return False
            except (ValueError, ProcessLookupError):
                pass
        f.write_text(str(os.getpid()))
        return True

    def load_flat(self):
        with np.load(self.dir / "final.npz") as z:
            return {k: z[k] for k in z.files}

    def metrics(self):
        return json.loads((self.dir / "metrics.json").read_text())


def lr_at(step, total, base, warm_frac=0.05):
    warm = max(1, int(total * warm_frac))
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def fit(stage, model, groups, inputs, y, epochs, batch, *, teacher_y=None, in_target=None,
        schedule="none", w_max=1.0, clip=None, seed=0):
    """Train with per-epoch checkpoints. inputs(idx) -> forward kwargs. groups: [(params, lr)]."""
    n = len(y)
    steps = n // batch
    total = steps * epochs
    opt = torch.optim.AdamW([{"params": p, "lr": lr} for p, lr in groups], weight_decay=0.05)
    bases = [lr for _, lr in groups]
    start_epoch, before = 0, 0.0
    ck = stage.dir / "ckpt.pt"
    if ck.exists():
        st = torch.load(ck, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        start_epoch = st["epoch"]
        before = st.get("elapsed", 0.0)  # training seconds of the interrupted run(s)
        log(f"[{stage.name}] resuming after epoch {start_epoch}/{epochs}")
    yt = torch.from_numpy(y)
    tyt = None if teacher_y is None else torch.from_numpy(teacher_y)
    tgt = torch.zeros(n, dtype=torch.bool) if in_target is None else torch.from_numpy(in_target)
    t_start = time.time()
    done_steps = 0
    for ep in range(start_epoch, epochs):
        model.train()
        perm = np.random.default_rng(seed * 1000 + ep).permutation(n)
        run_loss = 0.0
        for s in range(steps):
            g = ep * steps + s
            for pg, base in zip(opt.param_groups, bases):
                pg["lr"] = lr_at(g, total, base)
            idx = perm[s * batch:(s + 1) * batch]
            w = sample_weights(tgt[idx], ep + s / steps, epochs, w_max, schedule)
            loss = weighted_hard_distill_loss(model(**inputs(idx)), yt[idx],
                                              None if tyt is None else tyt[idx], w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            run_loss += loss.item()
            done_steps += 1
            if (s + 1) % 25 == 0 or s + 1 == steps:
                el = time.time() - t_start
                rate = done_steps * batch / el
                left = ((epochs - ep) * steps - s - 1) * batch / rate
                log(f"[{stage.name}] epoch {ep + 1}/{epochs} step {s + 1}/{steps} loss {run_loss / (s + 1):.4f} "
                    f"{rate:.1f} img/s eta {left / 60:.1f} min")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": ep + 1,
                    "elapsed": before + time.time() - t_start}, ck)
    return before + time.time() - t_start


@torch.no_grad()
def predict(model, inputs, n, batch=100):
    model.eval()
    out = [model(**inputs(np.arange(i, min(n, i + batch)))) for i in range(0, n, batch)]
    return torch.cat(out).numpy().astype(np.float32)


def finish(stage, model, data, test_inputs, extra, train_s, n_eval=None):
    """Saves the model and its test metrics; n_eval: only the first n_eval test images (the
    benchmarks re-evaluate every model on the whole split with ONNX Runtime)."""
    n = len(data.yt) if n_eval is None else min(int(n_eval), len(data.yt))
    logits = predict(model, test_inputs, n)
    np.save(stage.dir / "test_logits.npy", logits)
    top = np.argsort(-logits, 1, kind="stable")
    yt = data.yt[:n]
    m = {"stage": stage.name, "top1": float((top[:, 0] == yt).mean()), "n_eval": n,
         "top2": float((top[:, :2] == yt[:, None]).any(1).mean()),
         "train_seconds": round(train_s, 1), **extra}
    np.savez(stage.dir / "final.npz", **to_flat(model))
    (stage.dir / "metrics.json").write_text(json.dumps(m, indent=1))
    log(f"[{stage.name}] done: top1 {m['top1']:.4f} top2 {m['top2']:.4f} ({train_s / 60:.1f} min)")
    return m


class Recipe:
    def __init__(self, root, cfg):
        self.root, self.cfg = root, cfg
        self.data = Data(cfg)
        self.grid = cfg["size"] // 14
        self.n_tokens = max(cfg["n_tokens"], cfg["n_student"])  # images with cached tokens / teacher decisions
        d = self.data
        self.img_train = lambda idx: {"images": d.images(d.x, idx)}  # noqa: E731
        self.img_test = lambda idx: {"images": d.images(d.xt, idx)}  # noqa: E731

    def stage(self, name):
        return Stage(self.root, name)

    # ---- teacher M_D
    def teacher(self):
        st = self.stage("teacher")
        if not st.done:
            c = self.cfg
            model = VitClassifier(TorchViT(load_weights(), grid=self.grid))
            head = list(model.head.parameters())
            body = [p for n, p in model.named_parameters() if not n.startswith("head.")]
            t = fit(st, model, [(body, 3e-5), (head, 1e-3)], self.img_train, self.data.y,
                    c["teacher_epochs"], c["batch"], seed=1)
            finish(st, model, self.data, self.img_test, {"heads": 6, "n_train": len(self.data.y),
                                                         "epochs": c["teacher_epochs"]}, t)
        return from_flat(st.load_flat(), self.grid)

    # ---- cached block inputs of M_D for the specialist teachers
    def tokens(self, teacher):
        path = self.root / "runs" / "tokens.npz"
        if not path.exists():
            log("[tokens] caching teacher tokens at block", self.cfg["split_block"])
            teacher.eval()
            k = self.cfg["split_block"]
            out = {}
            with torch.no_grad():
                for name, x in (("train", self.data.x[: self.n_tokens]), ("test", self.data.xt)):
                    parts = []
                    for i in range(0, len(x), 100):
                        z = teacher.body.embed(self.data.images(x, np.arange(i, min(len(x), i + 100))))
                        parts.append(teacher.body.run_blocks(z, 0, k).numpy().astype(np.float16))
                        if (i // 100) % 10 == 0:
                            log(f"[tokens] {name} {i}/{len(x)}")
                    out[name] = np.concatenate(parts)
                out["teacher_y"] = predict(teacher, lambda idx: {"tokens": torch.from_numpy(
                    out["train"][idx].astype(np.float32)), "start": k}, self.n_tokens).argmax(1)
            np.savez(path, **out)
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def in_target(self, s, key, y):
        return np.isin(y, classes_of(s, key))

    # ---- specialist teachers M_I
    def spec_teacher(self, teacher, tok, s, key):
        st = self.stage(f"spec-S{s}-{set_name(key)}")
        c = self.cfg
        k = c["split_block"]
        tr = lambda idx: {"tokens": torch.from_numpy(tok["train"][idx].astype(np.float32)), "start": k}  # noqa: E731
        te = lambda idx: {"tokens": torch.from_numpy(tok["test"][idx].astype(np.float32)), "start": k}  # noqa: E731
        if not st.done and not st.claim():
            self.wait_done(st.name)
        if not st.done:
            model = copy.deepcopy(teacher)
            for p in model.parameters():
                p.requires_grad_(False)
            train_p = [p for n, p in model.named_parameters()
                       if n.startswith((f"body.blocks.{k}.", "body.norm.", "head."))]
            for p in train_p:
                p.requires_grad_(True)
            y = self.data.y[: self.n_tokens]
            t = fit(st, model, [(train_p, 5e-5)], tr, y, c["spec_epochs"], c["batch"],
                    in_target=self.in_target(s, key, y), schedule="progressive",
                    w_max=c["w_max"], seed=2)
            m = finish(st, model, self.data, te, {"S": s, "set": list(key)}, t)
            np.save(st.dir / "train_pred.npy", predict(model, tr, self.n_tokens).argmax(1))
            self.add_target_acc(st, s, key)
        model = from_flat(st.load_flat(), self.grid)
        return model, np.load(st.dir / "train_pred.npy")

    def add_target_acc(self, st, s, key):
        m = st.metrics()
        logits = np.load(st.dir / "test_logits.npy")
        yt = self.data.yt[: len(logits)]
        sel = self.in_target(s, key, yt)
        m["target_top1"] = float((logits[sel].argmax(1) == yt[sel]).mean())
        (st.dir / "metrics.json").write_text(json.dumps(m, indent=1))

    # ---- students
    def pruned_start(self, st, teacher, heads, n, tgt=None):
        """<stage>/pruned.npz: the teacher pruned to `heads` by loss-based importance."""
        c = self.cfg
        y = self.data.y[:n]
        w_imp = c["w_max"] if tgt is not None else 1.0
        student_path = st.dir / "pruned.npz"
        if not student_path.exists():
            rng = np.random.default_rng(7)

            def batches():
                for _ in range(c["imp_batches"]):
                    idx = rng.choice(n, c["batch"], replace=False)
                    w = torch.ones(len(idx)) if tgt is None else torch.where(
                        torch.from_numpy(tgt[idx]), torch.tensor(w_imp), torch.tensor(1.0))
                    yield self.data.images(self.data.x, idx), torch.from_numpy(y[idx]), w
            log(f"[{st.name}] importance over {c['imp_batches']} x {c['batch']} images")
            imp = importance(teacher, batches(), lambda lg, yy, w: weighted_hard_distill_loss(lg, yy, None, w))
            np.savez(student_path, **to_flat(prune(teacher, imp, heads)))
        return student_path

    def student(self, name, teacher, teacher_y, heads, *, s=None, key=None, schedule="none", init=None):
        """init: a stage whose final model is the start (else the teacher pruned here)."""
        st = self.stage(name)
        if st.done or not st.claim():
            return None
        c = self.cfg
        n = self.data.n_student
        y = self.data.y[:n]
        tgt = self.in_target(s, key, y) if key is not None else None
        if init is None:
            start = self.pruned_start(st, teacher, heads, n, tgt)
        else:
            start = self.wait_done(init).dir / "final.npz"
        with np.load(start) as z:
            model = from_flat({k: z[k] for k in z.files}, self.grid)
        t = fit(st, model, [(list(model.parameters()), 2e-4)], self.img_train, y, c["student_epochs"],
                c["batch"], teacher_y=teacher_y[:n], in_target=tgt, schedule=schedule,
                w_max=c["w_max"], clip=1.0, seed=3)
        extra = {"heads": heads, "n_train": n, "epochs": c["student_epochs"], "schedule": schedule,
                 "init": init or "pruned teacher"}
        if key is not None:
            extra.update(S=s, set=list(key))
        finish(st, model, self.data, self.img_test, extra, t, c["n_eval"])
        if key is not None:
            self.add_target_acc(st, s, key)
        return st.metrics()

    def link(self, name, src_name, **meta):
        """Stage `name` = the finished stage `src_name` (same training run): its files, hard-linked."""
        import os
        st, src = self.stage(name), self.stage(src_name)
        if st.done:
            return
        for f in ("final.npz", "test_logits.npy"):
            if (src.dir / f).exists() and not (st.dir / f).exists():
                os.link(src.dir / f, st.dir / f)
        (st.dir / "metrics.json").write_text(json.dumps({**src.metrics(), **meta, "stage": name,
                                                         "same_as": src_name}, indent=1))
        log(f"[{name}] = {src_name} (same classes, heads and schedule)")

    def wait_done(self, name, poll_s=20.0):
        st = self.stage(name)
        while not st.done:
            log(f"waiting for stage {name} (another process trains it)")
            time.sleep(poll_s)
        return st

    def long_generalist(self, teacher, heads, name, epochs):
        """A generalist distilled longer from M_D's hard labels on n_edge images: the served edge
        model (edge-<h>H, from gen-<h>H's pruned start) and the experts' common start (base-<h>H)."""
        st = self.stage(name)
        if st.done or not st.claim():
            return None
        c = self.cfg
        n = min(c["n_edge"], len(self.data.y))
        ty_path = self.stage(f"edge-{c['edge_heads']}H").dir / "teacher_y.npy"  # shared M_D decisions
        if not ty_path.exists():
            log(f"[{st.name}] teacher decisions on {n} images")
            np.save(ty_path, predict(teacher, self.img_train, n).argmax(1))
        src = self.pruned_start(self.stage(f"gen-{heads}H") if name.startswith("edge-") else st, teacher, heads,
                                self.data.n_student)
        with np.load(src) as z:
            model = from_flat({k: z[k] for k in z.files}, self.grid)
        y = self.data.y[:n]
        t = fit(st, model, [(list(model.parameters()), 2e-4)], self.img_train, y, epochs, c["batch"],
                teacher_y=np.load(ty_path)[:n], clip=1.0, seed=4)
        finish(st, model, self.data, self.img_test, {"heads": heads, "n_train": n, "epochs": epochs,
                                                     "schedule": "none", "init": "pruned teacher"}, t, c["n_eval"])
        return st.metrics()

    def run(self, only=None):
        c = self.cfg
        want = lambda tag: only is None or any(tag.startswith(o) for o in only)  # noqa: E731
        teacher = self.teacher()
        tok = self.tokens(teacher)
        ty = tok["teacher_y"]
        for st in stage_plan(c):
            if not want(st["name"]):
                continue
            kind, h = st["kind"], st["heads"]
            if kind == "long":  # the edge model or an expert size's common start
                self.long_generalist(teacher, h, st["name"], c[st["epochs"]])
            elif kind == "gen":
                self.student(st["name"], teacher, ty, h, init=st["init"])
            elif st["same_as"] and self.stage(st["same_as"]).done:
                self.link(st["name"], st["same_as"], S=st["S"], set=list(st["set"]))
            else:
                spec, spec_y = self.spec_teacher(teacher, tok, st["S"], st["set"])
                self.student(st["name"], spec, spec_y, h, s=st["S"], key=st["set"], schedule=st["schedule"],
                             init=st["init"])
        log("recipe complete")


def stage_plan(c) -> list:
    """The student stages in training order (after teacher and tokens; the specialist teachers
    M_I are trained on demand before their first expert), most needed first: the edge model, the
    served S = 3 library and its same-size generalist, the static baselines, the rest of the S
    sweep, then the other expert sizes' S = 3 libraries."""
    eh, xh = c["edge_heads"], c["expert_heads"]
    more = [h for h in c["more_expert_heads"] if h != xh]
    sizes = (xh, *more)
    plan = [{"name": f"gen-{eh}H", "kind": "gen", "heads": eh, "init": None},
            {"name": f"edge-{eh}H", "kind": "long", "heads": eh, "epochs": "edge_epochs"}]

    def base(h):
        return {"name": f"base-{h}H", "kind": "long", "heads": h, "epochs": "base_epochs"}

    def gen(h):
        # an expert-size generalist continues from the experts' start with the same extra budget
        # and uniform weights: the controlled baseline of Table 3; other sizes: pruned from M_D
        return {"name": f"gen-{h}H", "kind": "gen", "heads": h, "init": f"base-{h}H" if h in sizes else None}

    def experts(s, h, schedules, keys=None):
        return [{"name": f"exp-S{s}-{set_name(k)}-{h}H-{sch}", "kind": "exp", "heads": h, "S": s, "set": k,
                 "classes": classes_of(s, k), "schedule": sch, "init": f"base-{h}H"}
                for k in (keys or expert_sets(s, 2)) for sch in schedules]
    singles = [k for k in expert_sets(3, 2) if len(k) == 1]
    pairs = [k for k in expert_sets(3, 2) if len(k) > 1]
    plan += [base(xh)] + experts(3, xh, ["progressive"]) + [gen(xh)]
    plan += experts(3, xh, ["static"], singles + pairs)
    for s in (2, 4):
        plan += experts(s, xh, ["progressive", "static"])
    for h in more:
        plan += [base(h)] + experts(3, h, ["progressive"]) + [gen(h)] + experts(3, h, ["static"])
    plan += [gen(h) for h in c["gen_heads"] if h not in (eh, *sizes)]
    # the same class set under another S (e.g. "tops" at S = 2, 3 and 4) is the same training run
    # (same data, seeds, target mask, and a specialist teacher trained the same way): train the
    # first, link the others to it
    first = {}
    for st in plan:
        if st["kind"] == "exp":
            st["same_as"] = first.setdefault((st["classes"], st["heads"], st["schedule"]), st["name"])
            if st["same_as"] == st["name"]:
                st["same_as"] = None
    return plan


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=None, help="artifact directory (default: $COLLAB_CACHE/expert)")
    ap.add_argument("--only", nargs="*", default=None, help="stage name prefixes to run (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plan", action="store_true", help="list the stages in training order (done ones marked) and exit")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a size, e.g. n_student=2000")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = dict(CFG)
    for kv in a.set:
        k, v = kv.split("=", 1)
        if k not in cfg:
            sys.exit(f"unknown setting {k!r}; known: {sorted(cfg)}")
        cfg[k] = type(cfg[k])(float(v)) if not isinstance(cfg[k], tuple) else tuple(int(x) for x in v.split(",") if x)
    import pathlib
    root = pathlib.Path(a.cache) if a.cache else cache_dir()
    if a.plan:
        for st in [{"name": "teacher"}] + stage_plan(cfg):
            if a.only is None or any(st["name"].startswith(o) for o in a.only) or st["name"] == "teacher":
                fin = root / "runs" / st["name"]
                print(("done " if (fin / "final.npz").exists() and (fin / "metrics.json").exists() else "     ")
                      + st["name"])
        return 0
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(cfg, indent=1))
    log("config", json.dumps(cfg))
    Recipe(root, cfg).run(a.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
