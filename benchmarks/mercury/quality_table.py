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


def full_test_accuracy(artifact_path, checks, n):
    """A meta-token artifact's accuracy on the n test images of verify.py's re-evaluation: its own
    test_acc when train.py measured it on the same n images, else the re-evaluated one (checks,
    verify.py --json), else None."""
    if os.path.exists(artifact_path):
        z = np.load(artifact_path)
        if int(z["n_test"]) == n:
            return float(z["test_acc"])
    return checks.get(f"meta:{os.path.basename(artifact_path)}", {}).get("acc")


def _artifacts(models_dir):
    """(path, split, rate %) of the regional-pruning meta-token artifacts in models_dir."""
    for f in sorted(glob.glob(os.path.join(models_dir, "meta_r*_s*.npz"))):
        z = np.load(f)
        if str(z["method"]) == "ours":
            yield f, int(z["split"]), int(z["rate_pct"])


def from_accuracy(accuracy_json, models_dir):
    """(reference accuracy, n, rows, by, command) from accuracy.py's curves (split 1), the artifacts'
    own accuracies and Table II's kept-tokens-only row; a row is (split, rate %, reconstruct,
    accuracy, source)."""
    acc = json.load(open(accuracy_json))
    src = os.path.relpath(accuracy_json, ROOT)
    rows = [(1, int(rate), rec, a, src)
            for name, rec in (("ours w/ reconstruction", True), ("ours w/o reconstruction", False))
            for rate, a in acc["curves"].get(name, {}).items() if int(rate) > 0]
    rows += [(s, r, True, float(np.load(f)["test_acc"]), os.path.basename(f)) for f, s, r in _artifacts(models_dir)]
    t2 = os.path.join(os.path.dirname(accuracy_json), "mercury_table2.json")
    if os.path.exists(t2):   # Table II's kept-tokens-only row: 75 % without reconstruction at split 3
        t = json.load(open(t2))
        none = [r for r in t["rows"] if r["method"] == "none"]
        if none and t.get("n_test") == acc["n_test"]:
            rows.append((int(t["split"]), int(t["rate_pct"]), False, none[0]["accuracy"],
                         "benchmarks/results/mercury_table2.json"))
    return (float(acc["full_model_acc"]), int(acc["n_test"]), rows, "benchmarks/mercury/accuracy.py + train.py",
            "python benchmarks/mercury/quality_table.py")


def from_full_test(full_test_json, models_dir):
    """The same from verify.py --json's re-evaluation on the whole test set: the reference is the
    unpruned model under the same compute as the pruned entries (norecon:ours:0); the meta-token
    rows come from full_test_accuracy."""
    ft = json.load(open(full_test_json))
    checks, n = ft["checks"], int(ft["setup"]["n_test"])
    src = os.path.relpath(full_test_json, ROOT)
    rows = [(1, int(name.split(":")[2]), False, v["acc"], src) for name, v in checks.items()
            if name.startswith("norecon:ours:") and int(name.split(":")[2]) > 0]
    for f, s, r in _artifacts(models_dir):
        a = full_test_accuracy(f, checks, n)
        if a is not None:
            rows.append((s, r, True, a, os.path.basename(f)))
    if "table2:none" in checks:   # Table II's kept-tokens-only row (75 % at split 3)
        rows.append((3, 75, False, checks["table2:none"]["acc"], src))
    return (checks["norecon:ours:0"]["acc"], n, rows, "benchmarks/mercury/verify.py --json + train.py",
            f"python benchmarks/mercury/quality_table.py --full-test {src}")


def build(measured):
    """The collab.quality/1 table of from_accuracy's or from_full_test's result."""
    from collab.planner.quality import QualityTable
    from collab.vit.profile import numpy_vit_model_name, numpy_vit_model_sha256

    full, n, rows, by, command = measured
    entries = {}

    def add(split_blocks, policy, cfg, rate, quality, source):
        key = (split_blocks, policy, json.dumps(cfg, sort_keys=True))
        entries[key] = {"split": split_blocks + 1, "policy": policy, "config": cfg, "reference": policy == "exact",
                        "bytes_per_item": float(kept_bytes(rate)), "quality": float(quality),
                        "extra": {"blocks_on_device": split_blocks, "source": source}}

    for s, r, rec, a, source in rows:
        add(s, "mercury", {"rate_pct": r, "reconstruct": rec}, r, a, source)
    for s in sorted({k[0] for k in entries}):
        add(s, "exact", {}, 0, full, "models/mercury/head_full.npz")
    return QualityTable.from_dict({
        "schema": "collab.quality/1", "system": "mercury",
        "model": {"name": numpy_vit_model_name(GRID), "sha256": numpy_vit_model_sha256()},
        "metric": {"name": "top1", "unit": "fraction", "higher_is_better": True,
                   "description": f"top-1 on the seeded {n}-image Fashion-MNIST test subset of benchmarks/mercury"},
        "item": "image (kept tokens x 384, float16)",
        "measured": {"by": by, "command": command, "items": "Fashion-MNIST test images", "n": n,
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
    t = build(from_full_test(args.full_test, args.models) if args.full_test else
              from_accuracy(args.accuracy, args.models))
    t.save(args.out)
    for e in sorted(t.entries, key=lambda e: (e.split, e.bytes_per_item)):
        print(f"split {e.split} {e.label():<40} {e.bytes_per_item:>7.0f} B  top-1 {100 * e.quality:5.1f} %  "
              f"loss {t.loss(e):5.1f} pp")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
