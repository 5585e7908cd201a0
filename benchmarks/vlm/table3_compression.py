"""MindFusion Table III analog on collab-vlm-tiny: held-out VQA accuracy when the rows at the split
are compressed to 1/4 and 1/8 of their width for the image rows only, the text rows only, or
both (paper: VizWiz on LLaVA-1.5-7B).

    python benchmarks/vlm/table3_compression.py --n 100     # resumable

  image-rR  the trained image-row codec (collab.vlm.codec_train) through the real split: FC
            codes (float16) on the wire, the server (VlmTask) decodes before the tail
  text-rR   the LLM's trained text-row codec (models/llm, collab.llm.train.codec: trained on
            text context rows at the same split point) on every text row but row 0 (the
            attention-sink row of the chat template's first token, never compressed by Eq. 1)
  both-rR   both codecs at once
  textctx-r8  the text codec on the text BEFORE the image only (system prompt, "<img>"; the
            question and assistant prefix exact: the rows Eq. 1 would compress in a text prompt)
Rows of text and image sit on both sides of the image, so text-only and both need two spans
and two codecs in one payload: they are applied on the device (encode, float16 codes,
decode: what the server would reconstruct) and the rows then travel exact; their bytes are
counted as codes (vqa_systems.SimulatedCodes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vqa_systems import RESULTS, add_common_arguments, Harness, SimulatedCodes, exact, fc_policy, load_codecs  # noqa: E402

PAPER = {  # Table III (VizWiz, overall accuracy): baseline, then ratio -> accuracy
    "baseline": 50.07, "image+text": {"0.25": 41.39, "0.125": 46.76}, "text": {"0.25": 41.2, "0.125": 46.76},
    "image": {"0.25": 51.07, "0.125": 50.91},
}


def text_codec(full, at, ratio):
    from collab.llm.artifact import ArtifactError
    from collab.llm.fcnet import find_artifact, load_net

    p = find_artifact("codec", at, ratio)
    if p is None:
        return None, f"no LLM text codec for split {at} ratio {ratio}"
    try:
        return load_net(p, kind="codec", model=full, split_at=at), str(p)
    except ArtifactError as e:
        return None, f"{p}: {e}"


def simulated(spans_of):
    def make(s, before, after, img):
        return {"policy": SimulatedCodes(spans_of(len(before))), "image_bytes": None}
    return make


def reuse(h, path):
    """Copy Table IV's vanilla / R / R-r4 results (same n, seed, split) as vanilla / image-r8 /
    image-r4: the same systems on the same questions."""
    import json

    p = Path(path)
    if not p.exists():
        return
    d = json.loads(p.read_text())
    if (d.get("n"), d.get("seed"), d.get("split_at")) != (h.n, h.seed, h.at):
        return
    for src, dst in (("vanilla", "vanilla"), ("R", "image-r8"), ("R-r4", "image-r4")):
        if src in d.get("results", {}) and dst not in h.res:
            h.res[dst] = dict(d["results"][src], reused_from=f"{p.name}:{src}")


def plot(res: dict, path: str, n: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    base = res.get("vanilla", {}).get("accuracy")
    groups = ["both", "text", "image"]
    for j, r in enumerate((4, 8)):
        vals = [res.get(f"{g}-r{r}", {}).get("accuracy", float("nan")) * 100 for g in groups]
        bars = ax.bar([i + 0.38 * j for i in range(3)], vals, width=0.36, label=f"1/{r} width")
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, (0 if v != v else v) + 1, f"{v:.1f}", ha="center", fontsize=7)
    if base is not None:
        ax.axhline(base * 100, color="k", ls="--", label="no compression")
    ax.set_xticks([i + 0.19 for i in range(3)], ["image + text", "text only", "image only"])
    ax.set_ylabel(f"held-out VQA accuracy (%), n={n}")
    ax.set_title("Table III analog (collab-vlm-tiny, split at 15)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(ap, "vlm_table3.json")
    ap.add_argument("--reuse", default=str(RESULTS / "vlm_table4.json"),
                    help="take vanilla / image-r8 / image-r4 from table4_ablation.py's JSON (its vanilla / R / "
                         "R-r4: the same systems) when it holds them for the same questions")
    ap.add_argument("--only", default=None, help="comma-separated systems to run now (default all)")
    a = ap.parse_args(argv)
    codecs = load_codecs(a.at, (8, 4), None)
    h = Harness(a.n, a.seed, a.at, a.threads, a.out, codecs, a.merge_from)
    img = {576 // k: net for k, net in h.task._fc_codecs().by_k.items()}
    h.meta.update(paper=PAPER, image_codecs={r: str(p) for r, p in codecs.items()}, text_codecs={})
    reuse(h, a.reuse)
    only = set(a.only.split(",")) if a.only else None
    run = lambda name, *x: (only is None or name in only) and h.run(name, *x)  # noqa: E731
    run("vanilla", exact)
    for r in (4, 8):
        txt, src = text_codec(h.full, h.at, r)
        h.meta["text_codecs"][r] = src
        if r in img:
            run(f"image-r{r}", fc_policy(img[r], "f16"))
        if txt is not None:
            run(f"text-r{r}", simulated(lambda nb, t=txt: [(1, nb, t), (nb + 64, 0, t)]))
        if txt is not None and r == 8:  # Eq. 1's text beta: the text before the image only (question exact)
            run(f"textctx-r{r}", simulated(lambda nb, t=txt: [(1, nb, t)]))
        if txt is not None and r in img:
            run(f"both-r{r}", simulated(lambda nb, t=txt, i=img[r]: [(1, nb, t), (nb, nb + 64, i), (nb + 64, 0, t)]))
    if "vanilla" not in h.res:
        h.save()
        return 0
    print(f"\n{'strategy':<10}{'1/4':>8}{'1/8':>8}   paper (VizWiz) 0.25 / 0.125")
    base = h.res["vanilla"]["accuracy"]
    print(f"{'baseline':<10}{base:>8.2f}{base:>8.2f}   {PAPER['baseline']}")
    for g, pk in (("both", "image+text"), ("text", "text"), ("image", "image")):
        v = [h.res.get(f"{g}-r{r}", {}).get("accuracy") for r in (4, 8)]
        print(f"{g:<10}" + "".join(f"{x:>8.2f}" if x is not None else f"{'-':>8}" for x in v) +
              f"   {PAPER[pk]['0.25']} / {PAPER[pk]['0.125']}")
    return h.finish(plot)


if __name__ == "__main__":
    raise SystemExit(main())
