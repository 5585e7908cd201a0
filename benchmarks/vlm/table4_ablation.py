"""MindFusion Table IV analog on collab-vlm-tiny: held-out Fashion-MNIST VQA accuracy of the split
with and without the representation compression R (the trained image-row FC codec) and the
decoding shortcut D, against token-dropping baselines on the image rows at R's bytes, with the
compression ratio of the image features.

    python benchmarks/vlm/table4_ablation.py --n 100        # resumable: finished systems are kept

Systems (all split at l over an in-process emulated link; answers exact-matched):
  vanilla      split, exact rows (R = identity; answers identical to the unsplit VLM)
  D            the decoding shortcut (server decodes alone) with the VLM's own trained net
               (models/vlm, collab.vlm.shortcut) when it matches this model, split and projector,
               else the text LLM's (reported per row: "shortcut")
  R            image rows as trained FC codes at 1/8 width (float16 codes), text rows exact
  R+D          both
  R-int8, R-r4 the same codec with int8 codes, and the 1/4-width codec
  tome/fastv/prumerge-k: k = 64/8 image rows kept (float16), i.e. R's image bytes
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collab.vlm.vqa import normalise_answer  # noqa: E402
from vqa_systems import RESULTS, add_common_arguments, Harness, exact, fc_policy, load_codecs  # noqa: E402

PAPER = {  # Table IV, LLaVA-1.5-7B; VQA-v2 / GQA columns and the compression ratio of image features
    "Vanilla": {"VQAv2": 78.5, "GQA": 61.9, "ratio": "100%"},
    "ToMe": {"VQAv2": 57.1, "GQA": 48.6, "ratio": "-"},
    "FastV": {"VQAv2": 55.0, "GQA": 46.1, "ratio": "-"},
    "LLaVA-PruMerge": {"VQAv2": 56.2, "GQA": 48.8, "ratio": "11.1%"},
    "MindFusion (with D)": {"VQAv2": 78.53, "GQA": 61.93, "ratio": "100%"},
    "MindFusion (with R)": {"VQAv2": 78.0, "GQA": 61.45, "ratio": "12.5%"},
    "MindFusion (with R + D)": {"VQAv2": 77.96, "GQA": 61.42, "ratio": "12.5%"},
}
RAW_F16 = 64 * 576 * 2     # the image rows as float16 (the paper's activations): its ratio's 100%


def drop_systems(h: Harness, k: int):
    from collab.vit.runtime_model import NumpyViT
    from collab.vit.weights import load_weights
    from collab.llm.runtime import Model
    from collab.llm.server import prepare_parts
    from collab.vlm.drop import KeptImageRows, Layer2Attention, cls_attention, fastv_keep, prumerge, tome_merge
    from collab.vlm.mtmd import to_model_size

    head2, _, _ = prepare_parts(h.full, 2)
    head2 = Model(head2)
    l2 = Layer2Attention(h.full, 2)
    vit = NumpyViT.from_weights(load_weights(), 8)

    def fastv_scores(before, after, img):
        rows = h.dev.vision.encode(img)
        with head2.session("head", n_ctx=512, n_threads=h.dev.n_threads) as s:
            x = np.concatenate([s.decode(before), s.decode_rows(rows), s.decode(after)])
        return l2.probs(x)[len(before):len(before) + rows.shape[0]]

    def spec(before, f):
        return {"policy": KeptImageRows(len(before), k), "reduce": f, "image_bytes": k * 576 * 2}

    def tome(s, before, after, img):
        return spec(before, lambda x: tome_merge(x, k)[0])

    def fastv(s, before, after, img):
        sc = fastv_scores(before, after, img)
        return spec(before, lambda x: fastv_keep(x, sc, k)[0])

    def pm(s, before, after, img):
        att, keys = cls_attention(vit, to_model_size(img, 112))
        return spec(before, lambda x: prumerge(x, att, keys, k)[0])

    return {f"tome-{k}": tome, f"fastv-{k}": fastv, f"prumerge-{k}": pm}


def plot(res: dict, path: str, n: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res)
    acc = [res[k]["accuracy"] * 100 for k in names]
    ratio = [res[k]["image_bytes_median"] / RAW_F16 * 100 for k in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names)), 4))
    bars = ax.bar(names, acc, color=["#4c72b0" if not k.split("-")[0] in ("tome", "fastv", "prumerge") else "#dd8452"
                                     for k in names])
    for b, r in zip(bars, ratio):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.5, f"{r:.1f}%", ha="center", fontsize=7)
    ax.set_ylabel(f"held-out VQA accuracy (%), n={n}")
    ax.set_title("Table IV analog (collab-vlm-tiny)\nbar labels: image-feature bytes vs float16 rows", fontsize=10)
    plt.xticks(rotation=35, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(ap, "vlm_table4.json")
    ap.add_argument("--systems", default="vanilla,D,R,R+D,R-int8,R-r4,tome-8,fastv-8,prumerge-8")
    a = ap.parse_args(argv)
    codecs = load_codecs(a.at, (8, 4), None)
    prev_sc = json.loads(Path(a.out).read_text()).get("shortcut") if Path(a.out).exists() else None
    redo = [x for x in a.redo.split(",") if x]
    h = Harness(a.n, a.seed, a.at, a.threads, a.out, codecs, a.merge_from, redo, a.keep_as)
    nets = {576 // k: net for k, net in h.task._fc_codecs().by_k.items()}
    sc, _ = h.task._shortcut_parts()
    sc_text = (f"trained ({sc.source})" if sc.trained else "untrained identity (no shipped net for this model digest)")
    h.meta.update(image_codecs={r: str(p) for r, p in codecs.items()}, shortcut=sc_text, paper=PAPER)
    for name, r in h.res.items():  # which shortcut each D row decoded with (rows from before it was recorded: the
        if r.get("mode") == "shortcut" and "shortcut" not in r:  # file's shortcut then)
            r["shortcut"] = prev_sc
    systems = {"vanilla": (exact, "roundtrip"), "D": (exact, "shortcut")}
    if 8 in nets:
        systems.update({"R": (fc_policy(nets[8], "f16"), "roundtrip"), "R+D": (fc_policy(nets[8], "f16"), "shortcut"),
                        "R-int8": (fc_policy(nets[8], "int8"), "roundtrip")})
    if 4 in nets:
        systems["R-r4"] = (fc_policy(nets[4], "f16"), "roundtrip")
    want = a.systems.split(",")
    drops = {}
    for k in sorted({int(s.split("-")[1]) for s in want if s.split("-")[0] in ("tome", "fastv", "prumerge")}):
        drops.update(drop_systems(h, k))
    for name in want:
        if name in systems:
            make, mode = systems[name]
        elif name in drops:
            make, mode = drops[name], "roundtrip"
        else:
            h.log(f"{name}: not available (codec missing?)")
            continue
        r = h.run(name, make, mode=mode)
        if mode == "shortcut" and "shortcut" not in r:
            r["shortcut"] = sc_text
    van = h.res.get("vanilla")
    print(f"\n{'system':<20}{'acc':>7}{'prefix':>7}{'what':>6}{'foot':>6}{'upper':>6}{'is_a':>6}{'which':>6}"
          f"{'img KiB':>9}{'ratio f16':>10}{'ratio f32':>10}{'same as vanilla':>17}")
    for name, r in h.res.items():
        same = sum(p == q for p, q in zip(r["answers"], van["answers"])) if van else 0
        r["identical_to_vanilla"] = same
        # the gold answer followed by anything (D's failure mode: the answer does not stop)
        r["prefix_accuracy"] = sum(normalise_answer(p).startswith(normalise_answer(q.answer))
                                   for p, q in zip(r["answers"], h.samples)) / len(h.samples)
        r["ratio_vs_f16_rows"] = r["image_bytes_median"] / RAW_F16
        r["ratio_vs_f32_rows"] = r["image_bytes_median"] / (2 * RAW_F16)
        pt = r["per_template"]
        print(f"{name:<20}{r['accuracy']:>7.2f}{r['prefix_accuracy']:>7.2f}" + "".join(f"{pt.get(t, 0):>6.2f}" for t in
              ("what", "footwear", "upper", "is_a", "which")) +
              f"{r['image_bytes_median'] / 1024:>9.1f}{r['ratio_vs_f16_rows'] * 100:>9.1f}%"
              f"{r['ratio_vs_f32_rows'] * 100:>9.1f}%{same:>12}/{a.n}")
    return h.finish(plot)


if __name__ == "__main__":
    raise SystemExit(main())
