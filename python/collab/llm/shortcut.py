"""MindFusion's decoding shortcut (Sec. IV-B, Eq. 3) at run time.

After prefill, the server embeds each newly generated token with the model's own token
embedding and maps it with a trained projection network straight into the tail's input
space, so decoding never goes back to the device. The projection is four fully connected
layers ``d -> d -> 4d -> d -> d`` with GELU between them and a skip connection::

    y = x + W4 g(W3 g(W2 g(W1 x + b1) + b2) + b3) + b4

The trained nets are CLFN files (collab.llm.artifact; recipe: collab.llm.train.shortcut)
run natively through ggml (collab.llm.fcnet). ``ShortcutProjection.default`` picks the
shipped net for a split point and checks that it was trained for this model;
``ShortcutProjection.identity`` (W4 = 0, y = x: the head's layers are skipped) remains as an
explicitly untrained fallback.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidArgument
from .artifact import KIND_SHORTCUT, FcNet

__all__ = ["ShortcutProjection", "TokenEmbedding"]

_MAX_EMBD = 1 << 15


class ShortcutProjection:
    """``__call__(x)`` maps token embeddings (n, d) to tail rows (n, d)."""

    def __init__(self, net, *, trained: bool, source: str = ""):
        self.net = net
        self.n_embd = int(net.n_embd)
        self.split_at = int(net.split_at)
        self.trained = bool(trained)
        self.source = str(source)

    @classmethod
    def identity(cls, n_embd: int, *, split_at: int = 0, seed: int = 0) -> "ShortcutProjection":
        """Untrained: small random W1..W3, W4 = 0, so y = x (the head's layers are skipped)."""
        if isinstance(n_embd, bool) or not isinstance(n_embd, int) or not 0 < n_embd <= _MAX_EMBD or n_embd % 2:
            raise InvalidArgument(f"n_embd must be even and in (0, {_MAX_EMBD}]")
        rng = np.random.default_rng(seed)
        d = n_embd
        dims = [d, d, 4 * d, d, d]
        t = {}
        for i in range(4):
            scale = 0.0 if i == 3 else dims[i] ** -0.5
            t[f"w{i + 1}"] = rng.standard_normal((dims[i + 1], dims[i])).astype(np.float32) * scale
            t[f"b{i + 1}"] = np.zeros(dims[i + 1], np.float32)
        net = FcNet(KIND_SHORTCUT, d, split_at, 0, b"\0" * 32, t, meta={"trained": False})
        return cls(net, trained=False, source="identity-init")

    @classmethod
    def load(cls, path, *, model=None, split_at: int | None = None, n_threads: int = 1) -> "ShortcutProjection":
        """A trained CLFN shortcut, run natively; model (GGUF) / split_at are checked when given."""
        from .fcnet import load_net

        net = load_net(path, kind="shortcut", model=model, split_at=split_at, n_threads=n_threads)
        return cls(net, trained=True, source=str(path))

    @classmethod
    def default(cls, model, split_at: int, n_embd: int) -> "ShortcutProjection":
        """The shipped trained net for this model and split point if there is one (the shipped
        nets are for the embedded SmolLM2), else the untrained identity()."""
        from .fcnet import find_artifact

        from .artifact import ArtifactError, FcNet, model_digest

        path = find_artifact("shortcut", split_at)
        if path is not None:
            shipped = FcNet.load(path)  # checksum and structure first: a corrupt file is an error
            if shipped.model_digest == model_digest(model) and shipped.n_embd == n_embd:
                return cls.load(path, model=model, split_at=split_at)
            if shipped.n_embd == n_embd and shipped.split_at != split_at:
                raise ArtifactError(f"{path} is for split point {shipped.split_at}")
        return cls.identity(n_embd, split_at=split_at)  # no trained net for this model and split

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_embd:
            raise InvalidArgument(f"shortcut input must be (n, {self.n_embd}), got {x.shape}")
        return self.net.project(x)


class TokenEmbedding:
    """Rows of a GGUF's token_embd.weight, dequantized on demand (gguf package)."""

    def __init__(self, gguf_path):
        import gguf

        self._gguf = gguf
        r = gguf.GGUFReader(str(gguf_path))
        t = next((t for t in r.tensors if t.name == "token_embd.weight"), None)
        if t is None:
            raise InvalidArgument(f"{gguf_path} has no token_embd.weight")
        self._t = t
        self.n_vocab = int(t.shape[1])
        self.n_embd = int(t.shape[0])

    def __call__(self, tokens) -> np.ndarray:
        ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if ids.size == 0 or ids.min() < 0 or ids.max() >= self.n_vocab:
            raise InvalidArgument(f"token ids must be in [0, {self.n_vocab})")
        data = self._t.data[ids]
        rows = self._gguf.quants.dequantize(np.asarray(data), self._t.tensor_type)
        return np.asarray(rows, dtype=np.float32).reshape(ids.size, self.n_embd)
