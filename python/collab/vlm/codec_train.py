"""Train MindFusion's FC codec (Eq. 1-2) for collab-vlm-tiny's IMAGE rows at split point l.

    nice -n 10 python -m collab.vlm.codec_train --at 15 --ratio 8 --minutes 15

The nets, their two stages and the CLFN export are collab.llm.train's (Codec, fit_stage,
sample_stage, write_artifact); what differs for a VLM is where the rows come from:

  collect  (native, no torch) for each training question on a Fashion-MNIST TRAIN image the
           device's own head (mtmd image encode, head layers [0, l) over text | image rows |
           text, the split's chunks) gives the rows entering layer l for the prompt and the
           full model's greedy answer y-hat, whose tokens the head then reads too; cached
           (float16) in $COLLAB_CACHE/vlm/codec-data-l<at>-n<N>.npz, resumable;
  fit      the image rows of every sample, standardised MSE (the LLM codec's fit stage);
  eq2      Eq. 2: cross-entropy of y-hat through the frozen tail (torch mirror of the GGUF)
           with the image rows replaced by their reconstruction, text rows exact (Eq. 1).

The artifact carries meta {"rows": "image", "projector_sha256": ...}: collab.vlm.codec
refuses it for another projector (other image rows) and the LLM's text codecs for images.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from .models import _cache_dir, projector_path

__all__ = ["collect", "main"]


def projector_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def collect(n: int, at: int, *, seed: int = 1, threads: int = 1, model=None, projector=None, out_dir=None,
            max_tokens: int = 8, log=print) -> dict:
    """{"rows": (sum of rows, d) float16, "meta": (n, 5) int32 [offset, n_before, n_image,
    n_after, n_answer], "answer": concatenated y-hat token ids} over n training questions."""
    from ..llm.models import default_model_path
    from ..llm.server import prepare_parts
    from ..vit.data import load_fmnist
    from .models import mmproj_path
    from .split import VlmDevice
    from .vqa import make_set

    full = Path(model) if model else default_model_path()
    path = Path(out_dir or _cache_dir()) / f"codec-data-l{at}-n{n}-s{seed}.npz"
    if path.exists():
        z = np.load(path)
        return {k: z[k] for k in ("rows", "meta", "answer")}
    head, _, _ = prepare_parts(full, at)
    dev = VlmDevice(mmproj_path(projector), head=head, full=full, n_threads=threads)
    x, y = load_fmnist("train")
    samples = make_set(y, n, seed)
    part = path.with_name(path.name + ".part.npz")
    rows, meta, answer, off = [], [], [], 0
    if part.exists():
        z = np.load(part)
        rows, meta, answer = [z["rows"]], [m for m in z["meta"]], [z["answer"]]
        off = int(z["rows"].shape[0])
    t0 = time.time()
    for k in range(len(meta), n):
        s = samples[k]
        before, after = dev.layout(s.question)
        g = dev.ask(x[s.image], s.question, mode="device-only", max_tokens=max_tokens)
        ans = np.asarray(g.tokens, np.int32)
        img = dev.vision.encode(x[s.image])
        with dev.head.session("head", n_ctx=512, n_threads=threads) as hs:
            parts = [hs.decode(before), hs.decode_rows(img), hs.decode(after)]
            if len(ans) > 1:
                parts.append(hs.decode(ans[:-1]))
        r = np.concatenate(parts).astype(np.float16)
        rows.append(r)
        meta.append(np.array([off, len(before), img.shape[0], len(after), len(ans)], np.int32))
        answer.append(ans)
        off += r.shape[0]
        if (k + 1) % 50 == 0 or k + 1 == n:
            rows, answer = [np.concatenate(rows)], [np.concatenate(answer)]
            np.savez(part, rows=rows[0], meta=np.stack(meta), answer=answer[0])
            log(f"[collect] {k + 1}/{n} questions ({time.time() - t0:.0f} s)")
    out = {"rows": np.concatenate(rows), "meta": np.stack(meta), "answer": np.concatenate(answer)}
    np.savez(path, **out)
    part.unlink(missing_ok=True)
    return out


def image_rows(data: dict) -> np.ndarray:
    """Every sample's image rows, float32."""
    return np.concatenate([data["rows"][o + b:o + b + m] for o, b, m, _, _ in data["meta"]]).astype(np.float32)


def _records(data: dict) -> list:
    ans_off = np.concatenate([[0], np.cumsum(data["meta"][:, 4])])
    out = []
    for i, (o, b, m, a, na) in enumerate(data["meta"]):
        n_prompt = b + m + a
        out.append({"rows": slice(o, o + n_prompt + max(0, na - 1)), "lo": b, "hi": b + m, "n_prompt": n_prompt,
                    "answer": data["answer"][ans_off[i]:ans_off[i + 1]]})
    return out


def eq2_loss(m, net, data, rec, at: int):
    """Eq. 2 for one question: CE of y-hat through the frozen tail, image rows reconstructed."""
    import torch
    import torch.nn.functional as F

    rows = torch.as_tensor(data["rows"][rec["rows"]].astype(np.float32))
    lo, hi = rec["lo"], rec["hi"]
    rows = torch.cat([rows[:lo], net(rows[lo:hi]), rows[hi:]])
    logits = m.tail(rows, at, logits_from=rec["n_prompt"] - 1)
    return F.cross_entropy(logits, torch.as_tensor(rec["answer"], dtype=torch.long))


def artifact_name(at: int, ratio: int) -> str:
    return f"collab-vlm-tiny.image-codec-{at}-r{ratio}.clfn"


def train(args) -> Path:
    import torch

    from ..llm.models import default_model_path
    from ..llm.train import common
    from ..llm.train.nets import Codec, stats

    common.set_threads(args.threads)
    at, ratio = int(args.at), int(args.ratio)
    log = lambda msg: print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)  # noqa: E731
    data = collect(args.n, at, seed=args.seed, threads=args.threads, projector=args.projector, log=log)
    R = torch.as_tensor(image_rows(data))
    recs = _records(data)
    m = common.mirror(args.model)
    out = Path(args.out or Path("models/vlm") / artifact_name(at, ratio))
    ck = common.Checkpoint(Path(args.ckpt) if args.ckpt else _cache_dir() / (out.name + ".ckpt"))
    idx = np.random.default_rng(0).permutation(len(R))
    va, tr = idx[:max(1, len(R) // 20)], torch.as_tensor(idx[max(1, len(R) // 20):])
    net = Codec(m.n_embd, m.n_embd // ratio, stats(R[tr]))
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    stage, step, hist = "fit", 0, {"fit": [], "eq2": []}
    state = None if args.fresh else ck.load()
    if state and state.get("at") == at and state.get("ratio") == ratio:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        stage, step, hist = state["stage"], state["step"], state["hist"]
        log(f"resumed at {stage} step {step}")

    def save(at_step, force=False):
        ck.maybe_save({"at": at, "ratio": ratio, "net": net.state_dict(), "opt": opt.state_dict(), "stage": stage,
                       "step": at_step, "hist": hist}, force)

    def val_fit():
        with torch.no_grad():
            rv = R[va]
            e = net(rv) - rv
            return float((e / net.norm.s).pow(2).mean()), float((e.norm(dim=1) / rv.norm(dim=1)).mean())

    tag = f"vlm-image-codec-{at}-r{ratio}"
    if stage == "fit":
        common.fit_stage(net, opt, lambda b: ((net(R[tr[b]]) - R[tr[b]]) / net.norm.s).pow(2).mean(), len(tr),
                         steps=args.fit_steps, start=step, batch=args.batch, lr=args.lr, val=val_fit,
                         hist=hist["fit"], save=save, tag=f"{tag} fit")
        stage, step = "eq2", 0
        opt = torch.optim.AdamW(net.parameters(), lr=args.lr * 0.1, weight_decay=1e-4)
        save(0, True)
    if stage == "eq2" and args.eq2_steps > 0:
        step = common.sample_stage(opt, lambda rec: eq2_loss(m, net, data, rec, at), recs, steps=args.eq2_steps,
                                   start=step, minutes=args.minutes, hist=hist["eq2"], save=save, tag=f"{tag} eq2",
                                   seed=2)
    v, rel = val_fit()
    meta = {"recipe": "collab.vlm.codec_train", "rows": "image", "objective": "fit (standardised MSE) then Eq. 2",
            "ratio": ratio, "projector_sha256": projector_digest(projector_path() if args.projector is None
                                                                   else args.projector),
            "image_size": 112, "questions": int(len(recs)), "image_rows": int(len(R)), "fit_steps": args.fit_steps,
            "eq2_steps_done": step if stage == "eq2" else 0, "val_mse_std": v, "val_rel_err": rel, "history": hist,
            "compressed_positions": "the image rows (between <img> and </img>)"}
    return common.write_artifact(net, out, at=at, n_layer=m.n_layer, model=args.model or default_model_path(),
                                 meta=meta, tag=tag, summary=f"val std-MSE {v:.4f}, rel err {rel:.4f}")


def add_arguments(p) -> None:
    p.add_argument("--at", type=int, default=15, help="split point l (default 15, the VLM split's)")
    p.add_argument("--ratio", type=int, default=8, choices=(2, 4, 8, 16), help="d / code size")
    p.add_argument("--n", type=int, default=800, help="training questions (Fashion-MNIST train images)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--model", default=None)
    p.add_argument("--projector", default=None)
    p.add_argument("--out", default=None, help="artifact (default models/vlm/collab-vlm-tiny.image-codec-L-rR.clfn)")
    p.add_argument("--ckpt", default=None, help="checkpoint (default: $COLLAB_CACHE/vlm/<artifact>.ckpt)")
    p.add_argument("--fit-steps", type=int, default=1500)
    p.add_argument("--eq2-steps", type=int, default=2000)
    p.add_argument("--minutes", type=float, default=12.0, help="stop Eq. 2 after this long (0: no limit)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--collect-only", action="store_true", help="only cache the training rows")
    p.add_argument("--fresh", action="store_true")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="train the FC codec (Eq. 1-2) for collab-vlm-tiny's image rows")
    add_arguments(ap)
    a = ap.parse_args(argv)
    if a.collect_only:
        collect(a.n, a.at, seed=a.seed, threads=a.threads, projector=a.projector)
        return 0
    train(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
