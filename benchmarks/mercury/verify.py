"""Check that the committed Mercury numbers still come out of the code: re-evaluate the committed
artifacts (models/mercury) and baselines on the cached test set and compare with the accuracies
recorded in the artifacts and in benchmarks/results/mercury_*.json. Cheaper than re-running every
script (no training, no timing).

    python benchmarks/mercury/verify.py                    # every check
    python benchmarks/mercury/verify.py --checks head,meta:meta_r75_s3.npz,tome:decay:18
    python benchmarks/mercury/verify.py --list
    MERCURY_N_TEST=10000 python benchmarks/mercury/verify.py --json benchmarks/results/mercury_full_test.json

Check names: head (full-model head on the cached CLS features), norecon:METHOD:RATE (pruning
without reconstruction, Fig. 10/13 curves), meta:FILE (meta tokens / heads of train.py),
table2:NAME (untrained Table II rows), tome:KIND:R (ToMe accuracies of latency.py).
Exit status 1 when a re-evaluated accuracy differs from a committed one. --json F also writes
every re-evaluated accuracy to F as it comes, with the committed numbers beside, and skips the
checks F already holds for the same test images: with a larger MERCURY_N_TEST than the committed
results' (all 10k test images) that re-measures every committed configuration on the larger set,
and the numbers then differ from the committed ones by design.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import pathlib
import sys
import time

import numpy as np
import torch

from collab.bench_io import save_json
from collab.vit import experiments as ex
from collab.vit.baselines import apply_tome, duplicate_fill, zero_fill

S = ex.Settings.from_env(pathlib.Path(__file__).resolve().parents[2])


def committed():
    """{check name: [(where, committed accuracy)]} from the committed JSON files and artifacts."""
    want = {}

    def add(name, where, v):
        want.setdefault(name, []).append((where, float(v)))

    res = lambda f: json.load(open(os.path.join(S.results, f)))  # noqa: E731
    acc = res("mercury_accuracy.json")
    add("head", "mercury_accuracy.json full_model_acc", acc["full_model_acc"])
    for method in ("ours", "topk"):
        for r, v in acc["curves"][f"{method} w/o reconstruction"].items():
            add(f"norecon:{method}:{r}", f"mercury_accuracy.json {method} w/o reconstruction {r}%", v)
        for r, v in acc["curves"][f"{method} w/ reconstruction"].items():
            f = f"meta_r{int(r):02d}_s1.npz" if method == "ours" else f"topk_r{int(r):02d}_s1.npz"
            add(f"meta:{f}", f"mercury_accuracy.json {method} w/ reconstruction {r}%", v)
    for p in sorted(glob.glob(os.path.join(S.models, "*.npz"))):
        z = np.load(p)
        f = os.path.basename(p)
        if str(z["method"]) == "full":
            add("head", f"{f} test_acc", z["test_acc"])
        elif "meta" in z:
            add(f"meta:{f}", f"{f} test_acc", z["test_acc"])
    t2 = res("mercury_table2.json")
    for row in t2["rows"]:
        if row["trained"]:
            if row["method"] == "meta tokens":
                add(f"meta:meta_r{t2['rate_pct']:02d}_s{t2['split']}.npz", "mercury_table2.json meta tokens",
                    row["accuracy"])
        else:
            add(f"table2:{row['method']}", f"mercury_table2.json {row['method']}", row["accuracy"])
    for key, v in res("mercury_tome_acc.json").items():
        if key.startswith("_"):   # the setup the accuracies were measured under
            continue
        add(f"tome:{key}", f"mercury_tome_acc.json {key}", v)
    return want


class Evaluator:
    def __init__(self):
        self.c = ex.load_cache(S)
        self.m = ex.load_model()
        self.full_head = ex.load_head(os.path.join(S.models, "head_full.npz"))
        self.y = self.c["test_y"]

    def head(self):
        # train.py measured the head in float32 on the float32 test features, even with MERCURY_BF16
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            return ex.accuracy(self.full_head(torch.from_numpy(self.c["test_feat"])), self.y)

    def norecon(self, method, rate):
        kept = ex.kept_for(method, int(rate) / 100, self.c, "test", self.m, S)
        with torch.no_grad():
            x = ex.device_side(self.m, self.c["test_l1"], kept, 1)
            return ex.accuracy(ex.server_logits(self.m, x, 1, self.full_head), self.y)

    def meta(self, f):
        p = os.path.join(S.models, f)
        z = np.load(p)
        split, method = int(z["split"]), str(z["method"])
        kept = ex.kept_for(method, int(z["rate_pct"]) / 100, self.c, "test", self.m, S)
        with torch.no_grad():
            x = ex.device_side(self.m, self.c["test_l1"], kept, split)
            return ex.accuracy(ex.server_logits(self.m, x, split, ex.load_head(p), torch.from_numpy(z["meta"])), self.y)

    def table2(self, name, rate=75, split=3):
        kept = ex.kept_for("ours", rate / 100, self.c, "test", self.m, S)
        x = ex.device_side(self.m, self.c["test_l1"], kept, split)
        k = ex.GRID * ex.GRID + 1 - x.shape[1]
        xs = {"none": lambda: x, "zero padding": lambda: zero_fill(x, k),
              "duplication": lambda: duplicate_fill(x, kept, ex.GRID, ex.REGION)}[name]()
        with torch.no_grad():
            return ex.accuracy(ex.server_logits(self.m, xs, split, self.full_head), self.y)

    def tome(self, kind, r):
        acc = ex.image_accuracy(apply_tome(self.m, int(r), kind), self.full_head, self.c, f"ToMe {kind} r={r}")
        self.m.clear_hooks()
        return acc

    def run(self, name):
        kind, *args = name.split(":")
        return getattr(self, kind)(*args)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checks", default="", help="comma-separated check names (default: all)")
    ap.add_argument("--list", action="store_true", help="print the check names and committed numbers")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the re-evaluated accuracies here as they come (resumable)")
    a = ap.parse_args()
    want = committed()
    names = [n for n in a.checks.split(",") if n] or list(want)
    unknown = [n for n in names if n not in want]
    if unknown:
        raise SystemExit(f"unknown checks {unknown}; --list shows them")
    if a.list:
        for n in names:
            print(n, want[n])
        return 0
    torch.set_num_threads(a.threads)
    ev = Evaluator()
    setup = {"n_test": int(len(ev.y)), "compute": "bfloat16 autocast" if S.bf16 else "float32"}
    out = {}
    if a.json and os.path.exists(a.json):
        out = json.load(open(a.json))
        if out.get("setup") != setup:   # measured on other images or in another precision
            out = {}
    out.update({"setup": setup, "checks": out.get("checks", {})})
    bad = 0
    for i, n in enumerate(names):
        t0 = time.time()
        if n in out["checks"]:
            got = out["checks"][n]["acc"]
        else:
            with S.autocast():
                got = ev.run(n)
            if a.json:
                out["checks"][n] = {"acc": got, "committed": want[n], "seconds": round(time.time() - t0, 1)}
                save_json(a.json, out)
        for where, v in want[n]:
            ok = abs(got - v) < 1e-9
            bad += not ok
            print(f"[{i + 1}/{len(names)}] {n:28s} {100 * got:6.2f}%  committed {100 * v:6.2f}% ({where}) "
                  f"{'OK' if ok else 'MISMATCH'}  [{time.time() - t0:.0f}s]", flush=True)
    print(f"{len(names)} checks, {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
