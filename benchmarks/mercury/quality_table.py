"""Mercury's measured accuracy as a planner quality table (collab.quality/1).

Reads what accuracy.py measured (benchmarks/results/mercury_accuracy.json: accuracy per pruning
rate with and without the meta-token reconstruction, split after block 1) and the trained
artifacts' own test accuracies (models/mercury/meta_r*_s3/s6: deeper splits) and Table II's
kept-tokens-only row (mercury_table2.json: 75 % without reconstruction at split 3), and
writes one entry per (split, rate, reconstruction) with the bytes the device sends (the kept
tokens in float16, CLS included: collab.vit.runtime.MercuryDevice without a codec). The
reference at each split is the unpruned model sending all 65 tokens in float16.

Split numbering follows the planner's ViT profiles (`collab profile --numpy-vit 8`): pieces on
the device = embed + blocks, so Mercury's "split after block S" is split S + 1, the same as the
SLICER table of benchmarks/codec/frontier.py.

    python benchmarks/mercury/quality_table.py      # -> models/mercury/dinov2-s-112.quality.json
    python benchmarks/mercury/quality_table.py --full-test benchmarks/results/mercury_full_test.json
                                                    # the same from the re-evaluation on all 10k
    collab plan --quality-table models/mercury/dinov2-s-112.quality.json --split 2 --items 1 \
        --link fixed:8 --rtt-ms 20 --max-loss 5      # the pruning rate for that link and bound
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRID, DIM = 8, 384


def kept_bytes(rate_pct: int) -> int:
    """float16 bytes of the kept tokens: CLS + the patches Algorithm 1 keeps (K = rate * 64 pruned)."""
    pruned = int(round(rate_pct / 100 * GRID * GRID))
    return (1 + GRID * GRID - pruned) * DIM * 2


def from_full_test(full_test_json, models_dir):
    """accuracy.py's shape ({full_model_acc, n_test, curves}) from verify.py --json's re-evaluation
    on the whole test set: the reference is the unpruned model under the same compute as the
    pruned entries (norecon:ours:0); the meta-token entries come from the artifacts where they
    were measured on the same images (train.py with MERCURY_N_TEST = n), else from the JSON."""
    ft = json.load(open(full_test_json))
    checks, n = ft["checks"], int(ft["setup"]["n_test"])
    curves = {"ours w/o reconstruction": {}, "ours w/ reconstruction": {}}
    for name, v in checks.items():
        kind, _, rest = name.partition(":")
        if kind == "norecon" and rest.startswith("ours:"):
            curves["ours w/o reconstruction"][rest.split(":")[1]] = v["acc"]
    meta = {}
    for f in sorted(glob.glob(os.path.join(models_dir, "meta_r*_s*.npz"))):
        z = np.load(f)
        if str(z["method"]) == "ours":
            got = float(z["test_acc"]) if int(z["n_test"]) == n else checks.get(f"meta:{os.path.basename(f)}", {}).get("acc")
            if got is not None:
                meta[os.path.basename(f)] = (int(z["split"]), int(z["rate_pct"]), got)
    t2 = checks.get("table2:none")
    return {"full_model_acc": checks["norecon:ours:0"]["acc"], "n_test": n, "curves": curves,
            "_meta": meta, "_table2_none": None if t2 is None else t2["acc"], "_source": full_test_json}


def build(accuracy_json, models_dir, full_test_json=None):
    from collab.planner.quality import QualityTable
    from collab.vit.profile import numpy_vit_model_name, numpy_vit_model_sha256

    acc = from_full_test(full_test_json, models_dir) if full_test_json else json.load(open(accuracy_json))
    full = float(acc["full_model_acc"])
    src = os.path.relpath(acc.get("_source", accuracy_json), ROOT)
    entries = {}

    def add(split_blocks, policy, cfg, rate, quality, source):
        key = (split_blocks, policy, json.dumps(cfg, sort_keys=True))
        entries[key] = {"split": split_blocks + 1, "policy": policy, "config": cfg, "reference": policy == "exact",
                        "bytes_per_item": float(kept_bytes(rate)), "quality": float(quality),
                        "extra": {"blocks_on_device": split_blocks, "source": source}}

    curves = acc["curves"]
    for name, reconstruct in (("ours w/ reconstruction", True), ("ours w/o reconstruction", False)):
        for rate, a in curves.get(name, {}).items():
            if int(rate) > 0:
                add(1, "mercury", {"rate_pct": int(rate), "reconstruct": reconstruct}, int(rate), a, src)
    if "_meta" in acc:
        for f, (s, r, a) in acc["_meta"].items():
            add(s, "mercury", {"rate_pct": r, "reconstruct": True}, r, a, f)
        if acc["_table2_none"] is not None:   # Table II's kept-tokens-only row (75 % at split 3)
            add(3, "mercury", {"rate_pct": 75, "reconstruct": False}, 75, acc["_table2_none"], src)
    for f in ([] if "_meta" in acc else sorted(glob.glob(os.path.join(models_dir, "meta_r*_s*.npz")))):
        z = np.load(f)
        if str(z["method"]) != "ours":
            continue
        s, r = int(z["split"]), int(z["rate_pct"])
        add(s, "mercury", {"rate_pct": r, "reconstruct": True}, r, float(z["test_acc"]), os.path.basename(f))
    t2 = os.path.join(os.path.dirname(accuracy_json), "mercury_table2.json")
    if "_meta" not in acc and os.path.exists(t2):   # Table II's kept-tokens-only row: 75 % without reconstruction at split 3
        t = json.load(open(t2))
        none = [r for r in t["rows"] if r["method"] == "none"]
        if none and t.get("n_test") == acc["n_test"]:
            add(int(t["split"]), "mercury", {"rate_pct": int(t["rate_pct"]), "reconstruct": False},
                int(t["rate_pct"]), none[0]["accuracy"], "benchmarks/results/mercury_table2.json")
    for s in sorted({k[0] for k in entries}):
        add(s, "exact", {}, 0, full, "models/mercury/head_full.npz")
    return QualityTable.from_dict({
        "schema": "collab.quality/1", "system": "mercury",
        "model": {"name": numpy_vit_model_name(GRID), "sha256": numpy_vit_model_sha256()},
        "metric": {"name": "top1", "unit": "fraction", "higher_is_better": True,
                   "description": f"top-1 on the seeded {int(acc['n_test'])}-image Fashion-MNIST test subset of "
                                  "benchmarks/mercury"},
        "item": "image (kept tokens x 384, float16)",
        "measured": {"by": "benchmarks/mercury/verify.py --json + train.py" if "_meta" in acc else
                     "benchmarks/mercury/accuracy.py + train.py",
                     "command": "python benchmarks/mercury/quality_table.py"
                                + (f" --full-test {src}" if "_meta" in acc else ""),
                     "items": "Fashion-MNIST test images", "n": int(acc["n_test"]),
                     "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "entries": list(entries.values())})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--accuracy", default=os.path.join(ROOT, "benchmarks", "results", "mercury_accuracy.json"))
    p.add_argument("--models", default=os.path.join(ROOT, "models", "mercury"))
    p.add_argument("--full-test", metavar="JSON",
                   help="take the accuracies from verify.py --json's re-evaluation on the whole test set "
                        "(e.g. benchmarks/results/mercury_full_test.json) instead of --accuracy")
    p.add_argument("--out", default=os.path.join(ROOT, "models", "mercury", "dinov2-s-112.quality.json"))
    args = p.parse_args(argv)
    t = build(args.accuracy, args.models, args.full_test)
    t.save(args.out)
    for e in sorted(t.entries, key=lambda e: (e.split, e.bytes_per_item)):
        print(f"split {e.split} {e.label():<40} {e.bytes_per_item:>7.0f} B  top-1 {100 * e.quality:5.1f} %  "
              f"loss {t.loss(e):5.1f} pp")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
