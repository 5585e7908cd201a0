"""Fashion-MNIST (Debian dataset-fashion-mnist) loading and ViT preprocessing, numpy only."""
from __future__ import annotations

import gzip
import os

import numpy as np

from ..errors import InvalidArgument

FMNIST_DIR = os.environ.get("COLLAB_FMNIST_DIR", "/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise InvalidArgument(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    off = 4 + 4 * ndim
    n = int(np.prod(dims))
    if len(data) - off != n:
        raise InvalidArgument(f"{path}: size does not match header")
    return np.frombuffer(data, np.uint8, count=n, offset=off).reshape(dims)


def load_fmnist(split: str, root: str | None = None):
    """(images uint8 (N, 28, 28), labels int64 (N,)) for split 'train' or 'test'."""
    root = root or FMNIST_DIR
    pre = {"train": "train", "test": "t10k"}.get(split)
    if pre is None:
        raise InvalidArgument("split must be 'train' or 'test'")
    x = _read_idx(os.path.join(root, f"{pre}-images-idx3-ubyte.gz"))
    y = _read_idx(os.path.join(root, f"{pre}-labels-idx1-ubyte.gz")).astype(np.int64)
    return x, y


def subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of size n."""
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])


def preprocess(images: np.ndarray, size: int = 112) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 3, size, size): nearest-neighbour upsampling by the
    integer factor size/28, grey to RGB, ImageNet normalisation."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise InvalidArgument(f"images must be (N, H, H), got {images.shape}")
    f = size // images.shape[1]
    if f * images.shape[1] != size:
        raise InvalidArgument(f"size {size} is not a multiple of {images.shape[1]}")
    x = images.astype(np.float32) / 255.0
    x = x.repeat(f, 1).repeat(f, 2)
    x = (x[:, None] - MEAN[None, :, None, None]) / STD[None, :, None, None]
    return np.ascontiguousarray(x, dtype=np.float32)
