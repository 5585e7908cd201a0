"""Beyond the paper: Mercury's regional pruning, then the SLICER codec on the kept tokens.

At each split (after block 1 and block 3) every image's kept tokens (T' x 384) are encoded and
decoded with one payload codec (float16, per-tensor int8, SLICER at sparsity 0.5 / 0.75 with the
[8,4,2] bit allocation), and the server part classifies the decoded tokens: without
reconstruction (the full model's head) and with Mercury's meta tokens where train.py trained them
(the meta tokens were trained on float16 tokens, not on decoded ones). Rate 0 is SLICER alone,
float16 is Mercury alone. Latency = device and server compute measured by latency.py for the same
point (mercury_latency.json) + the codec's encode + decode time measured here (1 thread) + the
uplink time of the measured bytes on the same mahimahi traces as latency.py.

    MERCURY_N_TEST=2000 MERCURY_BF16=1 python benchmarks/mercury/with_codec.py [--n 1000] [--splits 1,3]

Resumable (each point is written at once). Writes benchmarks/results/mercury_with_codec.{json,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np
import torch

from collab.bench_codecs import roundtrip, slicer
from collab.bench_io import pyplot, save_json, save_png
from collab.vit import experiments as ex

S = ex.Settings.from_env(pathlib.Path(__file__).resolve().parents[2])
CODECS = [{"name": "fp16", "kind": "fp16"}, {"name": "int8", "kind": "int8"},
          slicer("SLICER s0.5 [8,4,2]", 0.5, (3, 3), (8, 4, 2)), slicer("SLICER s0.75 [8,4,2]", 0.75, (3, 3), (8, 4, 2))]
RATES = (0, 25, 50, 75)
BOUNDS_PP = (1, 3, 5, 10)


FAMILIES = ("Mercury alone", "int8 alone", "SLICER alone", "Mercury + int8", "Mercury + SLICER")


def family(rate, codec):
    kind = {"fp16": "", "int8": "int8"}.get(codec, "SLICER")
    if rate == 0:
        return f"{kind} alone" if kind else "none"
    return f"Mercury + {kind}" if kind else "Mercury alone"


def evaluate(m, c, head, split, rate, recon, cfg, n):
    kept = ex.kept_for("ours", rate / 100, {k: v[:n] for k, v in c.items() if k.startswith("test_")}, "test", m, S)
    meta = None
    if recon == "meta":
        z = np.load(os.path.join(S.models, f"meta_r{rate:02d}_s{split}.npz"))
        head = ex.load_head(os.path.join(S.models, f"meta_r{rate:02d}_s{split}.npz"))
        meta = torch.from_numpy(z["meta"])
    with torch.no_grad(), S.autocast():
        x = ex.device_side(m, c["test_l1"][:n], kept, split).numpy()
    dec = np.empty_like(x)
    nbytes = np.empty(n, np.int64)
    t0 = time.perf_counter()
    for i in range(n):
        dec[i], nbytes[i] = roundtrip(cfg, np.ascontiguousarray(x[i]))
    codec_ms = 1e3 * (time.perf_counter() - t0) / n
    with torch.no_grad(), S.autocast():
        acc = ex.accuracy(ex.server_logits(m, torch.from_numpy(dec), split, head, meta), c["test_y"][:n])
    return {"acc": acc, "bytes": float(nbytes.mean()), "codec_ms": codec_ms,
            "rel_err": float(np.linalg.norm(dec - x) / max(np.linalg.norm(x), 1e-30))}


def compute_ms(lat, split, rate, recon):
    """(device ms, server ms) latency.py measured for this point, or None."""
    want = "vanilla" if rate == 0 else ("Mercury" if recon == "meta" else "Mercury w/o reconstruction")
    for p in lat.get("points", []):
        if p["split"] == split and p["method"] == want and (rate == 0 or abs(p["param"] - rate / 100) < 1e-9):
            return p["device_ms"], p["server_ms"]
    return None


def frontier_table(res, split):
    """Per accuracy bound: the fewest bytes and the lowest latency each family reaches."""
    pts = [p for p in res["points"].values() if p["split"] == split]
    ref = next((p["acc"] for p in pts if p["rate"] == 0 and p["codec"] == "fp16"), None)
    rows = []
    for bound in BOUNDS_PP:
        row = {"max_drop_pp": bound}
        for fam in FAMILIES:
            ok = [p for p in pts if p["family"] == fam and ref is not None and 100 * (ref - p["acc"]) <= bound]
            b = min(ok, key=lambda p: p["bytes"]) if ok else None
            lat_ok = [p for p in ok if p.get("latency_ms") is not None]
            t = min(lat_ok, key=lambda p: p["latency_ms"]) if lat_ok else None
            row[fam] = {"bytes": b and b["bytes"], "bytes_point": b and b["label"],
                        "latency_ms": t and t["latency_ms"], "latency_point": t and t["label"]}
        rows.append(row)
    return ref, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None, help="test images (default: all cached, MERCURY_N_TEST)")
    ap.add_argument("--splits", default="1,3")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    c = ex.load_cache(S)
    n = min(a.n or len(c["test_y"]), len(c["test_y"]))
    m = ex.load_model()
    head = ex.load_head(os.path.join(S.models, "head_full.npz"))
    lat_p = os.path.join(S.results, "mercury_latency.json")
    lat = json.load(open(lat_p)) if os.path.exists(lat_p) else {}
    tr = ex.load_traces(S)
    out = os.path.join(S.results, "mercury_with_codec.json")
    res = json.load(open(out)) if os.path.exists(out) else {}
    setup = {"n_test": n, "head": float(np.load(os.path.join(S.models, "head_full.npz"))["test_acc"]),
             "compute": "bfloat16 autocast" if S.bf16 else "float32"}
    if res.get("setup") != setup:
        res = {"setup": setup, "points": {}}
    jobs = []
    for split in (int(s) for s in a.splits.split(",")):
        for cfg in CODECS:
            for rate in RATES:
                recons = ["none"] + (["meta"] if rate and os.path.exists(
                    os.path.join(S.models, f"meta_r{rate:02d}_s{split}.npz")) else [])
                jobs += [(split, rate, recon, cfg) for recon in recons]
    t0 = time.time()
    for i, (split, rate, recon, cfg) in enumerate(jobs):
        label = f"r{rate} {recon} {cfg['name']}" if rate else f"r0 {cfg['name']}"
        key = f"s{split}|{label}"
        if key not in res["points"]:
            p = evaluate(m, c, head, split, rate, recon, cfg, n)
            p.update({"split": split, "rate": rate, "recon": recon, "codec": cfg["name"], "label": label,
                      "family": family(rate, cfg["name"])})
            res["points"][key] = p
            with open(out + ".tmp", "w") as f:
                json.dump(res, f, indent=1)
            os.replace(out + ".tmp", out)
        el = time.time() - t0
        print(f"[{i + 1}/{len(jobs)}] split {split} {label}: {100 * res['points'][key]['acc']:.1f} % "
              f"{res['points'][key]['bytes']:.0f} B [{el:.0f}s]", flush=True)
    for p in res["points"].values():   # latency from latency.py's compute times (re-read each run)
        p["family"] = family(p["rate"], p["codec"])
        cm = compute_ms(lat, p["split"], p["rate"], p["recon"])
        tx, _ = ex.uplink_ms(tr, int(round(p["bytes"]))) if tr else (0.0, {})
        p["transfer_ms"] = tx
        p["latency_ms"] = None if cm is None else cm[0] + p["codec_ms"] + tx + cm[1]
    res["frontier"] = {}
    for split in sorted({p["split"] for p in res["points"].values()}):
        ref, rows = frontier_table(res, split)
        res["frontier"][str(split)] = {"reference_acc": ref, "rows": rows}
        print(f"\nsplit after block {split} (unpruned fp16 {100 * (ref or 0):.1f} %): fewest bytes / lowest latency "
              f"within a drop of")
        for r in rows:
            cells = [f"{fam}: {r[fam]['bytes'] and round(r[fam]['bytes'])} B ({r[fam]['bytes_point']}), "
                     f"{r[fam]['latency_ms'] and round(r[fam]['latency_ms'], 1)} ms"
                     for fam in FAMILIES]
            print(f"  {r['max_drop_pp']:>3} pp | " + " | ".join(cells))
    res["traces"] = sorted(tr)
    out_p = save_json(out, res)
    plt = pyplot()
    if plt is None:
        return
    splits = sorted({p["split"] for p in res["points"].values()})
    fig, axs = plt.subplots(len(splits), 2, figsize=(11, 4 * len(splits)), squeeze=False)
    for row, split in zip(axs, splits):
        for fam, mk in zip(FAMILIES + ("none",), "osD^v*"):
            ps = [p for p in res["points"].values() if p["split"] == split and p["family"] == fam]
            if not ps:
                continue
            row[0].scatter([p["bytes"] for p in ps], [100 * p["acc"] for p in ps], marker=mk, label=fam)
            pl = [p for p in ps if p["latency_ms"] is not None]
            if pl:
                row[1].scatter([p["latency_ms"] for p in pl], [100 * p["acc"] for p in pl], marker=mk, label=fam)
        row[0].set_xscale("log")
        row[0].set_xlabel("bytes per image on the uplink")
        row[1].set_xlabel("latency (ms): device + codec + uplink traces + server")
        for ax in row:
            ax.set_ylabel("top-1 accuracy (%)")
            ax.set_title(f"split after block {split} ({n} test images)")
            ax.legend(fontsize=7)
    save_png(fig, out_p)


if __name__ == "__main__":
    main()
