"""A ViT classifier (DINOv2 layout, any head count) run with ONNX Runtime; no torch.

Why ONNX Runtime on the device: it is what a phone integrator ships (ORT Mobile on Android/iOS,
with NNAPI / CoreML / XNNPACK execution providers), the graph is a standard file a vendor
toolchain can compile, and on this CPU it is several times faster than the numpy ViT. The
graph is built here from the parameter dict with onnx.helper (no exporter, no torch); the
numpy ViT of collab.vit.runtime_model is the reference it is tested against.

Parameters: the flat layout of collab.vit.runtime_model.NumpyViT (linear weights (in, out))
plus head_w (C, classes), head_b (classes,).
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ..errors import InvalidArgument
from ..vit.data import preprocess
from ..vit.runtime_model import NumpyViT

OPSET = 17


def param_bytes(params: dict) -> int:
    return int(sum(v.size * 4 for v in params.values() if isinstance(v, np.ndarray) and v.ndim > 0))


def build_onnx(params: dict, grid: int) -> bytes:
    """Serialized ONNX graph: images (B, 3, 14 g, 14 g) float32 -> logits (B, classes) float32."""
    from onnx import TensorProto, helper, numpy_helper

    heads = int(params["heads"])
    dim = params["cls"].shape[0]
    depth = sum(1 for k in params if k.endswith(".q_w"))
    d = dim // heads
    nodes, inits = [], []

    def const(name, arr):
        # np.ascontiguousarray would turn a 0-d array into shape (1,)
        inits.append(numpy_helper.from_array(np.array(arr, order="C"), name))
        return name

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def linear(x, w, b, out):
        return node("Add", [node("MatMul", [x, const(w, params[w])], out + "_mm"), const(b, params[b])], out)

    def layernorm(x, w, b, out):
        return node("LayerNormalization", [x, const(w, params[w]), const(b, params[b])], out, axis=-1, epsilon=1e-6)

    p = params
    conv = node("Conv", ["images", const("patch_w", p["patch_w"]), const("patch_b", p["patch_b"])], "patches",
                kernel_shape=[p["patch_w"].shape[-1]] * 2, strides=[p["patch_w"].shape[-1]] * 2)
    flat = node("Reshape", [conv, const("shape_bcn", np.array([0, dim, -1], np.int64))], "patches_flat")
    tok = node("Transpose", [flat], "patch_tokens", perm=[0, 2, 1])
    # CLS for every batch row: Expand (1, 1, C) to (B, 1, C)
    bdim = node("Slice", [node("Shape", ["images"], "img_shape"), const("s0", np.array([0], np.int64)),
                          const("s1", np.array([1], np.int64))], "batch_dim")
    cls_shape = node("Concat", [bdim, const("one_c", np.array([1, dim], np.int64))], "cls_shape", axis=0)
    cls = node("Expand", [const("cls", p["cls"].reshape(1, 1, dim).astype(np.float32)), cls_shape], "cls_b")
    x = node("Add", [node("Concat", [cls, tok], "tokens", axis=1), const("pos", p["pos"])], "x_emb")
    scale = const("attn_scale", np.array(1.0 / math.sqrt(d), np.float32))
    split_shape = const("shape_bthd", np.array([0, 0, heads, d], np.int64))
    merge_shape = const("shape_btc", np.array([0, 0, dim], np.int64))
    half, inv_sqrt2, one = (const("half", np.array(0.5, np.float32)),
                            const("inv_sqrt2", np.array(1 / math.sqrt(2), np.float32)),
                            const("one", np.array(1.0, np.float32)))
    for i in range(depth):
        b = f"b{i}."
        h = layernorm(x, b + "ln1_w", b + "ln1_b", b + "ln1")
        q = node("Transpose", [node("Reshape", [linear(h, b + "q_w", b + "q_b", b + "q"), split_shape], b + "q4")],
                 b + "qh", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(h, b + "k_w", b + "k_b", b + "k"), split_shape], b + "k4")],
                 b + "kt", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(h, b + "v_w", b + "v_b", b + "v"), split_shape], b + "v4")],
                 b + "vh", perm=[0, 2, 1, 3])
        a = node("Softmax", [node("Mul", [node("MatMul", [q, k], b + "qk"), scale], b + "logit")], b + "attn", axis=-1)
        ctx = node("Reshape", [node("Transpose", [node("MatMul", [a, v], b + "av")], b + "avt", perm=[0, 2, 1, 3]),
                               merge_shape], b + "ctx")
        ao = linear(ctx, b + "o_w", b + "o_b", b + "ao")
        x = node("Add", [x, node("Mul", [ao, const(b + "ls1", p[b + "ls1"])], b + "ls1x")], b + "x1")
        h2 = linear(layernorm(x, b + "ln2_w", b + "ln2_b", b + "ln2"), b + "fc1_w", b + "fc1_b", b + "fc1")
        erf = node("Erf", [node("Mul", [h2, inv_sqrt2], b + "gs")], b + "erf")
        g = node("Mul", [node("Mul", [h2, half], b + "gh"), node("Add", [erf, one], b + "e1")], b + "gelu")
        m = linear(g, b + "fc2_w", b + "fc2_b", b + "fc2")
        x = node("Add", [x, node("Mul", [m, const(b + "ls2", p[b + "ls2"])], b + "ls2x")], b + "x2")
    x = layernorm(x, "norm_w", "norm_b", "final_norm")
    feat = node("Gather", [x, const("zero", np.array(0, np.int64))], "cls_feat", axis=1)
    logits = linear(feat, "head_w", "head_b", "logits")
    s = grid * p["patch_w"].shape[-1]
    graph = helper.make_graph(
        nodes, "collab_expert_vit",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 3, s, s])],
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["B", p["head_b"].shape[0]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="collab.expert")
    model.ir_version = 8
    return model.SerializeToString()


def numpy_logits(params: dict, grid: int, images: np.ndarray) -> np.ndarray:
    """Reference: the numpy ViT of collab.vit.runtime_model plus the linear head."""
    vit = NumpyViT({k: v for k, v in params.items() if not k.startswith("head_")}, grid)
    x = vit.run_blocks(vit.embed(images), 0, vit.depth)
    return (vit.features(x) @ params["head_w"] + params["head_b"]).astype(np.float32)


class Classifier:
    """An ONNX Runtime session of one ViT classifier; thread-safe (ORT sessions are).

    image_size: 28 * f; classify() takes uint8 (B, 28, 28) Fashion-MNIST images and does the
    preprocessing (nearest upsampling, grey -> RGB, ImageNet normalisation)."""

    def __init__(self, params: dict, grid: int, *, threads: int = 1, name: str = ""):
        import onnxruntime as ort
        if "heads" not in params or "head_w" not in params:
            raise InvalidArgument("parameters miss 'heads' or the classifier head")
        self.name = name
        self.grid = int(grid)
        self.patch = params["patch_w"].shape[-1]
        self.num_classes = int(params["head_b"].shape[0])
        self.heads = int(params["heads"])
        self.nbytes = param_bytes(params)
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(build_onnx(params, self.grid), so, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self.grid * self.patch

    def logits(self, images: np.ndarray) -> np.ndarray:
        """images float32 (B, 3, S, S) already preprocessed."""
        s = self.image_size
        if images.ndim != 4 or images.shape[1:] != (3, s, s):
            raise InvalidArgument(f"images must be (B, 3, {s}, {s}), got {images.shape}")
        return self.session.run(None, {"images": np.ascontiguousarray(images, np.float32)})[0]

    def classify(self, images_u8: np.ndarray) -> np.ndarray:
        """uint8 (B, 28, 28) -> logits float32 (B, classes)."""
        x = check_images(images_u8)
        return self.logits(preprocess(x, self.image_size))


def check_images(images) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) or x.shape[0] < 1:
        raise InvalidArgument(f"images must be uint8 (B, 28, 28) with B >= 1, got {x.dtype} {x.shape}")
    return x


def random_params(heads: int = 1, depth: int = 2, grid: int = 2, num_classes: int = 10, seed: int = 0) -> dict:
    """A small random ViT classifier in the flat layout (width 64 * heads), for tests and smoke runs."""
    rng = np.random.default_rng(seed)
    dim, mlp, patch = 64 * heads, 256 * heads, 14
    r = lambda *s: (rng.standard_normal(s) * 0.05).astype(np.float32)  # noqa: E731
    p = {"patch_w": r(dim, 3, patch, patch), "patch_b": r(dim), "cls": r(dim), "pos": r(1 + grid * grid, dim),
         "norm_w": 1 + r(dim), "norm_b": r(dim), "heads": np.array(heads),
         "head_w": r(dim, num_classes) * 20, "head_b": r(num_classes)}
    for i in range(depth):
        b = f"b{i}."
        p.update({b + "ln1_w": 1 + r(dim), b + "ln1_b": r(dim), b + "ln2_w": 1 + r(dim), b + "ln2_b": r(dim),
                  b + "ls1": 1 + r(dim), b + "ls2": 1 + r(dim), b + "fc1_w": r(dim, mlp), b + "fc1_b": r(mlp),
                  b + "fc2_w": r(mlp, dim), b + "fc2_b": r(dim)})
        for n in "qkvo":
            p[b + n + "_w"], p[b + n + "_b"] = r(dim, dim), r(dim)
    return p
