"""A task that runs an ONNX model (e.g. the server-side tail of a split model) with onnxruntime.

    collab serve --task vit-tail=collab.transport.onnx_task:OnnxHandler \\
                 --task-arg vit-tail.model=tail.onnx --task-arg vit-tail.input=codec

Request payload:
    input=codec  a collab codec frame (the device's compressed intermediate feature)
    input=raw    the input tensor's bytes; meta "shape" (comma-separated) and "dtype" (numpy name)
Response payload: the model's first output as raw bytes in `output_dtype` (default float16),
meta "shape" and "dtype". Decode/encode time is reported separately from compute.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from ..errors import InvalidArgument
from .handlers import TIMING_DECODE, TIMING_ENCODE, TaskHandler

_DTYPES = {"float32", "float16", "uint8", "int64", "int32"}


def parse_shape(s: str):
    try:
        shape = tuple(int(v) for v in s.split(","))
    except ValueError:
        raise InvalidArgument(f"meta 'shape' must be comma-separated integers, got {s!r}") from None
    if not shape or any(d <= 0 for d in shape) or len(shape) > 8:
        raise InvalidArgument(f"bad shape {s!r}")
    return shape


class OnnxHandler(TaskHandler):
    name = "onnx"

    def __init__(self, model: str, input: str = "codec", threads: int = 1, output_dtype: str = "float16",
                 max_elements: int = 1 << 26):
        import onnxruntime as ort
        if input not in ("codec", "raw"):
            raise InvalidArgument(f"input must be 'codec' or 'raw', got {input!r}")
        if output_dtype not in ("float16", "float32"):
            raise InvalidArgument(f"output_dtype must be float16 or float32, got {output_dtype!r}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = [d if isinstance(d, int) else None for d in inp.shape]
        self.mode, self.output_dtype, self.max_elements = input, np.dtype(output_dtype), int(max_elements)
        self.requests = 0
        self._lock = threading.Lock()

    def _check_shape(self, shape):
        if len(shape) != len(self.input_shape) or any(
                want is not None and want != got for want, got in zip(self.input_shape, shape)):
            raise InvalidArgument(f"input shape {shape} does not fit the model's {self.input_shape}")

    def infer(self, payload, meta):
        t0 = time.perf_counter()
        if self.mode == "codec":
            from .. import codec
            x = codec.decode(payload, max_elements=self.max_elements)
        else:
            dtype = meta.get("dtype", "float32")
            if dtype not in _DTYPES:
                raise InvalidArgument(f"unsupported dtype {dtype!r}")
            shape = parse_shape(meta.get("shape", ""))
            n = int(np.prod(shape))
            if n > self.max_elements or n * np.dtype(dtype).itemsize != len(payload):
                raise InvalidArgument(f"payload of {len(payload)} bytes does not hold {dtype}{list(shape)}")
            x = np.frombuffer(payload, dtype=dtype).reshape(shape)
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        self._check_shape(x.shape)
        t1 = time.perf_counter()
        y = self.session.run(None, {self.input_name: x})[0]
        t2 = time.perf_counter()
        out = np.ascontiguousarray(y, dtype=self.output_dtype).tobytes()
        t3 = time.perf_counter()
        with self._lock:
            self.requests += 1
        return out, {"shape": ",".join(map(str, y.shape)), "dtype": self.output_dtype.name,
                     TIMING_DECODE: repr(t1 - t0), TIMING_ENCODE: repr(t3 - t2)}
