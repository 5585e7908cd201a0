"""Held-out VQA accuracy of collab-vlm-tiny (Table IV analog, partial): the unsplit VLM run by
llama.cpp's mtmd helper (through llama-cpp-python), collab's own unsplit run (device-only:
native encoder + one FULL session), the split with exact rows (R = identity) and the split with
the SLICER codec on the prompt rows before the question (image rows included), exact match.

Questions: collab.vlm.vqa templates over Fashion-MNIST TEST images (training used train
images only). The split runs device (head) and server (tail) in this process over an
emulated link with no delay: bytes are counted, times are not the point here.

    python benchmarks/vlm/vqa_eval.py --n 100
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import numpy as np

from collab.bench_io import save_json
from collab.llm.models import default_model_path
from collab.llm.protocol import RowPolicy
from collab.llm.server import LlmTask, prepare_parts
from collab.net.link import LinkClient
from collab.vit.data import load_fmnist
from collab.vlm.models import mmproj_path
from collab.vlm.mtmd import UnsplitVlm
from collab.vlm.split import VlmDevice
from collab.vlm.vqa import exact_match, make_set


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--at", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--projector", default=None)
    ap.add_argument("--systems", default="unsplit,device-only,split-exact,split-slicer")
    ap.add_argument("--out", default="benchmarks/results/vlm_vqa_eval.json")
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from an existing --out JSON")
    a = ap.parse_args(argv)
    if a.plot_only:
        plot(json.loads(open(a.out).read()), a.out.removesuffix(".json") + ".png")
        return 0
    x, y = load_fmnist("test")
    samples = make_set(y, a.n, a.seed)
    full = default_model_path()
    head, tail, at = prepare_parts(full, a.at)
    mm = mmproj_path(a.projector)
    systems = a.systems.split(",")
    res = {}
    dev = client = None
    if any(s.startswith("split") or s == "device-only" for s in systems):
        dev = VlmDevice(mm, head=head, full=full, n_threads=a.threads)
        client = LinkClient([LlmTask(head=head, tail=tail, n_threads=a.threads, n_ctx=512)])
    for sysname in systems:
        t0 = time.time()
        hits, per_t, bytes_up, answers = 0, defaultdict(lambda: [0, 0]), [], []
        if sysname == "unsplit":
            vlm = UnsplitVlm(mm, full, n_threads=a.threads)
        for k, s in enumerate(samples):
            img = x[s.image]
            if sysname == "unsplit":
                ans = vlm.ask(img, s.question, max_tokens=8)["answer"]
            elif sysname == "device-only":  # collab's own unsplit run: native encoder + FULL session
                ans = dev.ask(img, s.question, mode="device-only", max_tokens=8).text.strip()
            else:
                _, after = dev.layout(s.question)
                pol = RowPolicy.exact() if sysname == "split-exact" else RowPolicy(keep_last=len(after))
                g = dev.ask(img, s.question, mode="roundtrip", client=client, max_tokens=8, policy=pol)
                ans = g.text.strip()
                bytes_up.append(g.extra["prefill_payload"])
            ok = exact_match(ans, s.answer)
            hits += ok
            per_t[s.template][0] += ok
            per_t[s.template][1] += 1
            answers.append(ans)
            if (k + 1) % 10 == 0:
                print(f"{sysname}: {k + 1}/{len(samples)} acc {hits / (k + 1):.3f} ({time.time() - t0:.0f} s)", flush=True)
        if sysname == "unsplit":
            vlm.close()
        res[sysname] = dict(accuracy=hits / len(samples), per_template={t: v[0] / v[1] for t, v in per_t.items()},
                            prefill_bytes_median=float(np.median(bytes_up)) if bytes_up else None,
                            answers=answers)
        print(f"{sysname}: accuracy {hits / len(samples):.3f}  " +
              "  ".join(f"{t} {v[0]}/{v[1]}" for t, v in sorted(per_t.items())))
    for ref in ("unsplit", "device-only"):
        if ref in res and "split-exact" in res:
            same = sum(p == q for p, q in zip(res[ref]["answers"], res["split-exact"]["answers"]))
            print(f"split-exact answers identical to {ref}: {same}/{len(samples)}")
            res[f"split_exact_identical_to_{ref}"] = same
    doc = dict(n=len(samples), seed=a.seed, split_at=at, mmproj=str(mm), questions=[s.to_dict() for s in samples],
               results=res)
    save_json(a.out, doc)
    plot(json.loads(json.dumps(doc)), a.out.removesuffix(".json") + ".png")
    return 0


def plot(doc: dict, path: str) -> None:
    """Accuracy per system, overall and per question template."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = {k: v for k, v in doc["results"].items() if isinstance(v, dict)}
    systems = list(res)
    temps = sorted({t for r in res.values() for t in r["per_template"]})
    fig, ax = plt.subplots(figsize=(8, 4))
    w = 0.8 / (len(temps) + 1)
    for j, key in enumerate(["overall"] + temps):
        vals = [res[s]["accuracy"] if key == "overall" else res[s]["per_template"].get(key, 0) for s in systems]
        ax.bar([i + j * w for i in range(len(systems))], vals, width=w, label=key)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(systems))], systems)
    ax.set_ylabel("exact-match accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"collab-vlm-tiny held-out VQA (n={doc['n']}, split at {doc['split_at']})")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
