"""OnnxHandler: an ONNX model served as a task (raw tensors and codec frames)."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import collab.codec  # noqa: E402
from collab.transport import InprocClient, InvalidRequest  # noqa: E402
from collab.transport.onnx_task import OnnxHandler  # noqa: E402


@pytest.fixture
def model(tmp_path, rng):
    w = rng.standard_normal((16, 4)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    p = tmp_path / "mm.onnx"
    onnx.save(m, str(p))
    return str(p), w


def test_raw_input(model, rng):
    path, w = model
    c = InprocClient({"mm": OnnxHandler(path, input="raw", output_dtype="float32")})
    x = rng.standard_normal((3, 16)).astype(np.float32)
    out, meta, tim = c.infer("mm", x.tobytes(), {"shape": "3,16", "dtype": "float32"})
    y = np.frombuffer(out, np.float32).reshape(3, 4)
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-5)
    assert meta["shape"] == "3,4" and meta["dtype"] == "float32" and tim["decode"] > 0  # the task reports it
    for bad in ({"shape": "3,15", "dtype": "float32"}, {"shape": "3,16", "dtype": "complex64"},
                {"shape": "x", "dtype": "float32"}, {"shape": "-3,16", "dtype": "float32"}):
        with pytest.raises(InvalidRequest):
            c.infer("mm", x.tobytes(), bad)


def test_codec_input(model, rng):
    path, w = model
    c = InprocClient({"mm": OnnxHandler(path)})
    x = rng.standard_normal((5, 16)).astype(np.float32)
    frame = collab.codec.encode(x, 0.5)
    out, meta, _ = c.infer("mm", frame)
    y = np.frombuffer(out, np.float16).reshape(5, 4).astype(np.float32)
    ref = collab.codec.decode(frame) @ w
    np.testing.assert_allclose(y, ref, rtol=2e-3, atol=2e-2)
    with pytest.raises(InvalidRequest):
        c.infer("mm", frame[:-3])
    with pytest.raises(InvalidRequest):  # wrong feature width for the model
        c.infer("mm", collab.codec.encode(rng.standard_normal((2, 8)).astype(np.float32), 0.0))
