"""Shared by the expert benchmark scripts (imported from this folder): the evaluation split,
the model libraries, the paper's numbers, the results folder."""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from collab.expert.artifacts import Library, load_params
from collab.expert.cache import cache_dir
from collab.expert.model import Classifier
from collab.vit.data import load_fmnist

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
TAUS = (0.99, 0.9, 0.8, 0.7, 0.6, 0.5)

PAPER_TABLE2 = {"DeiT-3H": (80.16, 89.73), "DeiT-4H": (83.69, 91.92), "DeiT-6H": (88.36, 94.67),
                "DeiT-Base": (91.36, 96.55)}
# model -> S -> (target static, target progressive, overall static, overall progressive); generalist acc
PAPER_TABLE3 = {"DeiT-4H": {"gen": 83.69, 4: (86.30, 86.75, 78.94, 81.15), 6: (86.92, 87.53, 78.13, 80.89),
                            8: (87.18, 87.81, 78.47, 81.22)},
                "DeiT-6H": {"gen": 88.36, 4: (89.68, 89.96, 85.89, 87.39), 6: (89.91, 90.26, 86.09, 87.31),
                            8: (90.23, 90.66, 85.45, 87.16)}}
PAPER_TABLE4 = dict(zip(TAUS, (74.7, 46.2, 35.8, 27.8, 20.8, 13.3)))
PAPER_TABLE5 = {"CIFAR-100": (80.16, 89.73, 93.40, 9.57, 13.24), "ImageNet": (74.52, 84.62, 88.50, 10.10, 13.98)}
PAPER_FIGS = {
    "fig4": "specialist co-inference beats generalist co-inference of the same size by up to 1.70% (4H) / "
            "1.14% (6H) for tau 0.99..0.6; beats edge-only and near-edge-only by 0.12-1.70% (4H)",
    "fig5": "vs edge-only: 4H latency -7..-12% at +5..35% energy; 6H tau=0.9: -37% latency, +4% energy; "
            "6H tau 0.8..0.5: -40..-45% latency and -11..-35% energy. vs near-edge-only: energy -3..-20% (4H), "
            "-14..-46% (6H), latency 2-3x higher; offloaded data -53.8..-86.7% for tau 0.9..0.5",
    "fig6": "normalised to the lightest edge model, the framework is on the accuracy/latency/energy Pareto front",
    "fig7": "accuracy gain per added latency / energy over edge-only is higher for medium experts than for "
            "generalist co-inference with a large generalist",
}


def cache_library() -> Library:
    """Every trained model (float32, the recipe's cache); `collab expert export` writes its manifest."""
    root = pathlib.Path(os.environ.get("COLLAB_EXPERT_CACHE", cache_dir()))
    return Library(root)


def committed_library() -> Library:
    """The served models: $COLLAB_EXPERT_MODELS, else the repository's models/expert."""
    env = os.environ.get("COLLAB_EXPERT_MODELS")
    return Library(pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[2] / "models" / "expert")


def test_split(lib: Library):
    """The recipe's held-out test subset (same seed), uint8 images and labels."""
    cfg = json.loads((lib.root / "config.json").read_text()) if (lib.root / "config.json").exists() else \
        {"seed": 0, "n_test": 3000}
    x, y = load_fmnist("test")
    idx = np.random.default_rng(cfg["seed"] + 1).permutation(len(y))[: cfg["n_test"]]
    return x[idx], y[idx]


def classifier(path, lib: Library, threads: int = 1) -> Classifier:
    return Classifier(load_params(path), lib.grid, threads=threads, name=pathlib.Path(path).stem)


def logits_of(clf: Classifier, x, batch: int = 100):
    return np.concatenate([clf.classify(x[i:i + batch]) for i in range(0, len(x), batch)])


def topk_acc(logits, y, k):
    top = np.argsort(-logits, 1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(1).mean())


def n_params(path) -> int:
    p = load_params(path)
    return int(sum(v.size for v in p.values() if np.ndim(v)))
