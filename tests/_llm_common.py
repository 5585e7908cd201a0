"""Shared fixtures for the collab.llm tests: skips with reasons, cached splits."""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import pytest


def require_llama():
    from collab.llm import runtime

    if not runtime.available():
        pytest.skip("collab was built without llama.cpp (COLLAB_LLAMA=OFF or llama-cpp-python missing)")


def smollm2_or_skip() -> Path:
    from collab.llm.models import ModelNotFound, smollm2_path

    try:
        return smollm2_path()
    except ModelNotFound as e:
        pytest.skip(f"SmolLM2 not installed: {e}")


_TMP = tempfile.TemporaryDirectory(prefix="collab-llm-tests-")
os.environ.setdefault("COLLAB_CACHE_DIR", _TMP.name)  # split parts never land in ~/.cache


@functools.lru_cache(maxsize=None)
def smollm2_split(points: tuple) -> dict:
    """{at: (head, tail)} for SmolLM2, split once per test session (the gguf reader is slow)."""
    from collab.llm import split_gguf

    pairs = split_gguf(smollm2_or_skip(), Path(_TMP.name) / "smollm2", list(points))
    return dict(zip(points, pairs))


@functools.lru_cache(maxsize=None)
def tiny_model(n_layer: int = 4, seed: int = 0) -> Path:
    from collab.llm.tiny import write_tiny_gguf

    return write_tiny_gguf(Path(_TMP.name) / f"tiny-{n_layer}-{seed}.gguf", n_layer=n_layer, seed=seed)


@functools.lru_cache(maxsize=None)
def tiny_split(n_layer: int, at: int, seed: int = 0):
    from collab.llm import split_gguf

    return split_gguf(tiny_model(n_layer, seed), Path(_TMP.name) / f"tiny-{n_layer}-{seed}", at)


def tiny_task_and_device(n_ctx: int = 256, **task_kwargs):
    """(LlmTask, Device) on the 4-layer tiny model split at 2."""
    from collab.llm.device import Device
    from collab.llm.server import LlmTask

    head, tail = tiny_split(4, 2)
    return LlmTask(head=head, tail=tail, n_ctx=n_ctx, **task_kwargs), Device(head=head, full=tiny_model(4), n_ctx=n_ctx)
