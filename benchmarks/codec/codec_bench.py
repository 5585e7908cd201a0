"""SLICER codec benchmark: native collab vs the numpy reference, the same pipeline in torch,
and what users send today (raw fp16, fp16 + zstd). Prints a table, writes JSON (and a PNG).

    python benchmarks/codec/codec_bench.py            # full run -> benchmarks/results/codec_bench.{json,png}
    python benchmarks/codec/codec_bench.py --quick    # fewer cases and repetitions -> codec_bench_quick.*

Features are synthetic but shaped like the real thing: heavy-tailed activations (Student-t,
3 degrees of freedom, with rare large outliers as in LLM hidden states) for the given shapes.
Throughput = fp32 bytes of the tensor / time (encode: input; decode: output).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import sys
import time

import numpy as np

import collab
import collab.codec as codec
from collab.bench_io import pyplot, save_json, save_png
from collab.reference import slicer as ref

RESULTS = pathlib.Path(__file__).resolve().parent.parent / "results"

SHAPES = {"vit-s": (197, 384), "vit-b": (197, 768), "llm-prefill": (512, 576), "llm-token": (1, 4096),
          "cnn": (256, 56, 56)}
SPARSITIES = (0.5, 0.75, 0.9)
CODEC_KW = dict(blocks=(2, 2), qbits=(8, 4))


def features(rng, shape):
    x = rng.standard_t(3, size=shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, max(1, flat.size // 1000))] *= 30
    return x


def timeit(fn, min_time, max_reps=200):
    """Median time of fn() over repetitions lasting at least min_time seconds in total."""
    fn()  # warm-up (allocations, caches)
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def rel_err(x, y):
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return float(np.linalg.norm(y - x) / max(np.linalg.norm(x), 1e-30))


def bench_case(rng, name, shape, s, args, torch_mod, zstd):
    x = features(rng, shape)
    nbytes = x.size * 4
    rows = []

    def row(method, enc_t, dec_t, size, err, **extra):
        rows.append(dict(case=name, shape=list(shape), sparsity=s, method=method,
                         encode_MBps=nbytes / enc_t / 1e6 if enc_t else None,
                         decode_MBps=nbytes / dec_t / 1e6 if dec_t else None,
                         encode_ms=enc_t * 1e3 if enc_t else None, decode_ms=dec_t * 1e3 if dec_t else None,
                         bytes=size, ratio_vs_fp32=nbytes / size, rel_err=err, **extra))

    frame = codec.encode(x, s, **CODEC_KW)
    y = codec.decode(frame)
    info = codec.inspect(frame)
    for threads in args.threads:
        enc = timeit(lambda: codec.encode(x, s, threads=threads, **CODEC_KW), args.min_time)
        dec = timeit(lambda: codec.decode(frame), args.min_time) if threads == 1 else None
        row(f"collab native ({threads}t)", enc, dec, len(frame), rel_err(x, y), index_code=info["index_code"])

    if args.reference:
        enc = timeit(lambda: ref.encode(x, s, **CODEC_KW), args.min_time, max_reps=5)
        dec = timeit(lambda: ref.decode(frame), args.min_time, max_reps=5)
        row("numpy reference", enc, dec, len(frame), rel_err(x, y))

    if torch_mod is not None:
        import torch_slicer
        tx = torch_mod.from_numpy(x)
        blob = torch_slicer.encode(tx, s, **CODEC_KW)
        ty = torch_slicer.decode(blob)
        enc = timeit(lambda: torch_slicer.encode(tx, s, **CODEC_KW), args.min_time)
        dec = timeit(lambda: torch_slicer.decode(blob), args.min_time)
        row("torch pipeline", enc, dec, len(blob), rel_err(x, ty.numpy()))

    half = x.astype(np.float16)
    raw = half.tobytes()
    enc = timeit(lambda: x.astype(np.float16).tobytes(), args.min_time)
    dec = timeit(lambda: np.frombuffer(raw, np.float16).astype(np.float32).reshape(shape), args.min_time)
    row("fp16 raw", enc, dec, len(raw), rel_err(x, half))
    if zstd is not None:
        cctx, dctx = zstd.ZstdCompressor(level=3), zstd.ZstdDecompressor()
        z = cctx.compress(raw)
        enc = timeit(lambda: cctx.compress(x.astype(np.float16).tobytes()), args.min_time)
        dec = timeit(lambda: np.frombuffer(dctx.decompress(z), np.float16).astype(np.float32), args.min_time)
        row("fp16 + zstd", enc, dec, len(z), rel_err(x, half))
        # What zstd does on the sparsified tensor (same survivors as collab, fp16 values).
        zs = cctx.compress(y.astype(np.float16).tobytes())
        row("ATKF'd fp16 + zstd", None, None, len(zs), rel_err(x, y.astype(np.float16)))
    return rows


def bench_cuda(args):
    """CUDA encode vs a device-to-device copy of the input (target: within 5x, >= 4M elements)."""
    if not collab.cuda_available():
        return dict(skipped="no CUDA device visible (or collab built without CUDA)")
    import torch

    out = []
    for shape in [(4096, 1024), (16, 512, 1024)]:
        x = torch.from_numpy(features(np.random.default_rng(0), shape)).cuda()
        torch.cuda.synchronize()

        def gpu_time(fn, reps=20):
            fn()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            torch.cuda.synchronize()
            return (time.perf_counter() - t0) / reps

        copy = gpu_time(lambda: x.clone())
        for s in SPARSITIES:
            enc = gpu_time(lambda: codec.encode(x, s, **CODEC_KW))
            out.append(dict(shape=list(shape), sparsity=s, encode_ms=enc * 1e3, d2d_copy_ms=copy * 1e3,
                            ratio_to_copy=enc / copy))
    return out


def print_table(rows):
    cols = ["case", "sparsity", "method", "encode_MBps", "decode_MBps", "bytes", "ratio_vs_fp32", "rel_err"]
    widths = [11, 8, 22, 11, 11, 9, 13, 8]
    print(" ".join(c[:w].ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        vals = []
        for c, w in zip(cols, widths):
            v = r.get(c)
            if v is None:
                s = "-"
            elif isinstance(v, float):
                s = f"{v:.3g}" if c in ("rel_err", "sparsity") else f"{v:.1f}"
            else:
                s = str(v)
            vals.append(s[:w].ljust(w))
        print(" ".join(vals))


def summarize(rows):
    """The issue's targets, computed from this run's rows."""
    out = {}
    by = {(r["case"], r["sparsity"], r["method"]): r for r in rows}
    for s in SPARSITIES:
        nat = by.get(("vit-b", s, "collab native (1t)"))
        if not nat:
            continue
        refr, tor = by.get(("vit-b", s, "numpy reference")), by.get(("vit-b", s, "torch pipeline"))
        two = by.get(("vit-b", s, "collab native (2t)"))
        out[f"vit-b s={s}"] = dict(
            encode_speedup_vs_numpy=refr and refr["encode_ms"] / nat["encode_ms"],
            encode_speedup_vs_torch=tor and tor["encode_ms"] / nat["encode_ms"],
            two_thread_encode_scaling=two and nat["encode_ms"] / two["encode_ms"],
            decode_GBps_one_core=nat["decode_MBps"] / 1e3)
    out["decode_GBps_one_core_min_over_cases"] = min(
        r["decode_MBps"] / 1e3 for r in rows if r["method"] == "collab native (1t)")
    return out


def plot(rows, path):
    plt = pyplot()
    if plt is None:
        return None
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if not m.startswith("ATKF")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in ((axes[0], "encode_MBps", "encode"), (axes[1], "decode_MBps", "decode")):
        for m in methods:
            pts = [(r["ratio_vs_fp32"], r[key]) for r in rows if r["method"] == m and r[key]]
            if pts:
                ax.scatter(*zip(*pts), label=m, s=18)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compression ratio vs fp32")
        ax.set_ylabel("MB/s (fp32 bytes)")
        ax.set_title(f"{title} throughput, one core unless noted")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    return str(save_png(fig, path, dpi=120))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="two shapes, short timing")
    ap.add_argument("--cases", nargs="*", choices=sorted(SHAPES), help="subset of shapes")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds of timing per measurement")
    ap.add_argument("--no-reference", dest="reference", action="store_false", help="skip the slow numpy reference")
    ap.add_argument("--no-torch", dest="torch", action="store_false")
    ap.add_argument("--out", help="JSON result (default: benchmarks/results/codec_bench.json, "
                                   "codec_bench_quick.json with --quick, so a quick check never "
                                   "replaces the full run's result)")
    args = ap.parse_args(argv)
    args.out = args.out or str(RESULTS / ("codec_bench_quick.json" if args.quick else "codec_bench.json"))
    cases = args.cases or (["vit-b", "llm-token"] if args.quick else list(SHAPES))
    if args.quick:
        args.min_time = min(args.min_time, 0.2)
    args.threads = sorted({1, min(2, os.cpu_count() or 1)})

    torch_mod = None
    if args.torch:
        try:
            import torch as torch_mod
            torch_mod.set_num_threads(1)  # single-thread comparison
        except ImportError:
            print("torch not installed: skipping the torch pipeline baseline")
    try:
        import zstandard as zstd
    except ImportError:
        zstd = None
        print("zstandard not installed: skipping fp16 + zstd")

    rng = np.random.default_rng(0)
    rows = []
    for name in cases:
        for s in SPARSITIES:
            print(f"... {name} {SHAPES[name]} s={s}", file=sys.stderr, flush=True)
            rows += bench_case(rng, name, SHAPES[name], s, args, torch_mod, zstd)
    print_table(rows)
    summary = summarize(rows)
    cuda = bench_cuda(args)
    print("\nsummary:", json.dumps(summary, indent=1))
    print("cuda:", json.dumps(cuda, indent=1))
    out = pathlib.Path(args.out)
    png = plot(rows, out)
    meta = dict(collab=collab.__version__, simd=collab.simd_level(), cpu=platform.processor() or platform.machine(),
                cores=os.cpu_count(), python=platform.python_version(), numpy=np.__version__,
                torch=getattr(torch_mod, "__version__", None), codec_params=CODEC_KW)
    save_json(out, dict(meta=meta, rows=rows, summary=summary, cuda=cuda, plot=png))


if __name__ == "__main__":
    main()
