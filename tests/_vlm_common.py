"""Shared helpers for the collab.vlm tests: a tiny random mmproj + the tiny llama GGUF."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest

from _llm_common import tiny_model

_TMP = tempfile.TemporaryDirectory(prefix="collab-vlm-tests-")
TINY_EMBD = 64  # collab.llm.tiny's default width


def require_mtmd():
    try:
        from llama_cpp import mtmd_cpp  # noqa: F401
    except Exception as e:
        pytest.skip(f"llama-cpp-python without libmtmd: {e}")


@functools.lru_cache(maxsize=None)
def tiny_parts(n_out: int = TINY_EMBD, grid: int = 2, seed: int = 0):
    """(tower, projector, mmproj path): a 2-block width-32 ViT at 28 px, random weights."""
    from collab.vlm.mmproj import Projector, VisionTower, write_mmproj

    tower = VisionTower.random(width=32, heads=2, depth=2, patch=14, grid=grid, ffn=64, seed=seed)
    proj = Projector.random(tower.width, n_out, seed=seed + 1)
    path = Path(write_mmproj(Path(_TMP.name) / f"mmproj-{n_out}-{grid}-{seed}.gguf", tower, proj))
    return tower, proj, path


def tiny_llm() -> Path:
    return tiny_model(4, 0)


def reference_rows(tower, proj, img_u8: np.ndarray) -> np.ndarray:
    """numpy reference of what mtmd computes: ViT (tanh GELU as clip.cpp), CLS dropped,
    projector."""
    from collab.vit.runtime_model import NumpyViT, _layernorm
    from collab.vlm import reference
    from collab.vlm.mmproj import gelu_tanh, project

    flat = {"patch_w": tower.patch_w, "patch_b": tower.patch_b, "cls": tower.cls, "pos": tower.pos,
            "norm_w": tower.norm_w, "norm_b": tower.norm_b, "heads": tower.heads}
    for i, b in enumerate(tower.blocks):
        for k, v in b.items():
            flat[f"b{i}.{k}"] = v
    vit = NumpyViT(flat, tower.grid)
    import collab.vit.runtime_model as rm

    old = rm._gelu
    rm._gelu = gelu_tanh
    try:
        x = vit.run_blocks(vit.embed(reference.normalise(img_u8[None])), 0, vit.depth)
    finally:
        rm._gelu = old
    f = _layernorm(x, tower.norm_w, tower.norm_b)[0, 1:]
    return project(f, proj)
