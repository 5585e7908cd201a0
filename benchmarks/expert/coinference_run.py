"""The measured run behind Figs. 4-7: edge-only, near-edge-only, generalist co-inference and
specialist co-inference (ours) over the real gRPC path, for tau in {0.99, 0.9, ..., 0.5}.

- Server: `collab serve` in a subprocess pinned to core 1, hosting the expert library ("expert",
  S=3, committed int8 experts), the same-size generalist behind every key ("gen3", 3H) and the
  large generalist ("gen6", the 6-head teacher from the cache) for the Fig. 7 comparison.
- Device: this process, pinned to core 0, runs the committed edge model (2H, fp16) with
  collab.expert.device.ExpertDevice and a real collab.Client on loopback.
- Link: loopback has no bandwidth limit, so the time a fixed-rate link (default 20 Mbit/s,
  10 ms RTT; collab.net's simulator) needs for each batch's request and reply bytes is added to
  the measured round trip.
- Accuracy: every held-out image (3000) is answered through the server once per library (the
  routed expert depends on the top-k set, not on tau), then acc(tau) is exact for every tau.
  Latency / energy: a stream of --n images in batches of --batch, per tau and scenario; medians
  of per-batch values. Energy: collab.expert.energy (stated watts x measured times + radio J/B).

    python benchmarks/expert/coinference_run.py [--n 640] [--link fixed:20] [--rtt-ms 10]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from collab.bench_io import save_json
from collab.expert import energy
from collab.expert.device import ExpertDevice
from collab.expert.routing import route, softmax
from collab.net import as_link, transfer_time
from collab.transport import Client

from common import RESULTS, TAUS, cache_library, classifier, committed_library, logits_of, test_split


def start_server(lib, big_path, core):
    port_file = tempfile.mktemp(prefix="expert-port-")
    cmd = ["taskset", "-c", str(core), sys.executable, "-m", "collab.cli", "serve", "--port", "0",
           "--port-file", port_file, "--workers", "4", "--log-level", "WARNING",
           "--task", "expert=collab.expert.server:library_task", "--task-arg", f"expert.library={lib.root}",
           "--task-arg", "expert.S=3",
           "--task", "gen3=collab.expert.server:library_task", "--task-arg", f"gen3.library={lib.root}",
           "--task-arg", "gen3.S=gen-3H"]
    if big_path:
        cmd += ["--task", "gen6=collab.expert.server:library_task", "--task-arg", f"gen6.library={big_path}",
                "--task-arg", "gen6.S=gen-6H"]
    proc = subprocess.Popen(cmd)
    for _ in range(600):
        if os.path.exists(port_file):
            port = open(port_file).read().strip()
            os.unlink(port_file)
            return proc, f"127.0.0.1:{port}"
        if proc.poll() is not None:
            raise SystemExit("server did not start")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start within 60 s")


def expert_preds(client, task, x, keys, chunk=128):
    """What the server's library answers for every image routed by its key (one pass)."""
    pred = np.zeros(len(x), np.int64)
    for key in sorted(set(keys)):
        idx = np.array([i for i, k in enumerate(keys) if k == key])
        for s in range(0, len(idx), chunk):
            part = idx[s:s + chunk]
            out, _, _ = client.infer(task, x[part].tobytes(), {"experts": ",".join(map(str, key)),
                                                               "shape": f"{len(part)},28,28"})
            pred[part] = np.frombuffer(out, np.float32).reshape(len(part), -1).argmax(1)
    return pred


def batch_cost(r_edge_s, r_wait_s, up, down, server_s, nreq, link, rtt_ms, prof):
    link_s = 0.0
    if nreq:
        link_s = (transfer_time(up, 0.0, link, rtt_ms) + transfer_time(down, 0.0, link)) / 1e3
    lat = r_edge_s + r_wait_s + link_s
    e_dev = energy.device_energy(prof["device"], prof["radio"], compute_s=r_edge_s, wait_s=r_wait_s + link_s,
                                 bytes_up=up, bytes_down=down)
    e_srv = energy.server_energy(prof["server"], compute_s=server_s, idle_s=0.0)
    return {"latency_s": lat, "link_s": link_s, "device_j": e_dev, "server_j": e_srv, "system_j": e_dev + e_srv,
            "bytes_up": up, "bytes_down": down}


def summarize(rows, n_images):
    keys = rows[0].keys()
    med = {k: float(np.median([r[k] for r in rows])) for k in keys}
    tot = {f"total_{k}": float(np.sum([r[k] for r in rows])) for k in ("bytes_up", "bytes_down", "device_j", "system_j")}
    per = {"per_image_latency_s": float(np.sum([r["latency_s"] for r in rows])) / n_images}
    return {"median_batch": med, **tot, **per}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=640)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--link", default="fixed:20")
    ap.add_argument("--rtt-ms", type=float, default=10.0)
    ap.add_argument("--device-profile", default="orin-nano")
    ap.add_argument("--server-profile", default="agx-orin")
    ap.add_argument("--radio", default="wifi")
    ap.add_argument("--out", default=str(RESULTS / "coinference.json"))
    a = ap.parse_args()
    lib = committed_library()
    try:
        big = cache_library()
        big_ok = "gen-6H" in big.names()
    except Exception:
        big, big_ok = None, False
    prof = {"device": energy.profile(a.device_profile), "server": energy.profile(a.server_profile),
            "radio": energy.profile(a.radio, energy.RADIOS)}
    link = as_link(a.link)
    os.sched_setaffinity(0, {0})
    proc, addr = start_server(lib, big.root if big_ok else None, core=1)
    client = Client(addr, timeout=60)
    try:
        client.wait_ready(30)
        x, y = test_split(lib)
        edge = classifier(lib.edge_path(), lib)
        part = lib.partition_of("3")
        logits = logits_of(edge, x)
        conf = softmax(logits).max(1)
        _, edge_pred, keys = route(logits, tau=1.0, k=lib.k, partition_of=part)
        libs = {"expert": "specialist co-inference (ours, 3H experts)", "gen3": "generalist co-inference (3H)"}
        if big_ok:
            libs["gen6"] = "generalist co-inference (6H teacher)"
        t0 = time.perf_counter()
        preds = {t: expert_preds(client, t, x, keys) for t in libs}
        print(f"accuracy pass over gRPC: {time.perf_counter() - t0:.1f} s")
        acc = {"edge-only 2H": float((edge_pred == y).mean()),
               "edge-only 3H / near-edge-only 3H": float((preds["gen3"] == y).mean())}
        if big_ok:
            acc["near-edge-only 6H"] = float((preds["gen6"] == y).mean())
        curves = {t: {str(tau): float((np.where(conf >= tau, edge_pred, preds[t]) == y).mean()) for tau in TAUS}
                  for t in libs}
        alpha = {str(tau): float((conf < tau).mean()) for tau in TAUS}
        # ---- latency / energy on a stream
        xs = x[: a.n]
        nb = range(0, len(xs), a.batch)
        timing = {}
        gen3_local = classifier(lib.generalist("3H"), lib)
        for name, clf in (("edge-only 2H", edge), ("edge-only 3H", gen3_local)):
            rows = []
            for i in nb:
                t = time.perf_counter()
                clf.classify(xs[i:i + a.batch])
                rows.append(batch_cost(time.perf_counter() - t, 0.0, 0, 0, 0.0, 0, link, a.rtt_ms, prof))
            timing[name] = summarize(rows, len(xs))
        for task, name in (("gen3", "near-edge-only 3H"), ("gen6", "near-edge-only 6H")):
            if task not in libs:
                continue
            rows = []
            for i in nb:
                b = xs[i:i + a.batch]
                t = time.perf_counter()
                out, _, tim = client.infer(task, b.tobytes(), {"experts": "0", "shape": f"{len(b)},28,28"})
                rows.append(batch_cost(0.0, time.perf_counter() - t, b.nbytes, len(out), tim["server"], 1, link,
                                       a.rtt_ms, prof))
            timing[name] = summarize(rows, len(xs))
        for task in libs:
            for tau in TAUS:
                dev = ExpertDevice(edge, part, tau=tau, k=lib.k, client=client, task=task, deadline_s=30.0)
                rows, fb = [], 0
                for i in nb:
                    r = dev.classify(xs[i:i + a.batch])
                    fb += int(r.fell_back)
                    rows.append(batch_cost(r.edge_s, r.offload_s, r.bytes_up, r.bytes_down, r.server_s, r.requests,
                                           link, a.rtt_ms, prof))
                dev.close()
                timing[f"{task}@{tau}"] = {**summarize(rows, len(xs)), "fallback_batches": fb}
                print(f"{task} tau={tau}: median batch {timing[f'{task}@{tau}']['median_batch']['latency_s'] * 1e3:.1f} ms")
        stats = client.infer("expert", b"", {"op": "stats"})[0].decode()
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
    save_json(a.out, {"config": vars(a), "libraries": libs, "n_accuracy": int(len(y)), "n_stream": int(len(xs)),
                      "accuracy_constant": acc, "accuracy_curves": curves, "alpha": alpha, "timing": timing,
                      "energy_model": energy.describe(), "server_expert_stats": stats,
                      "machine": "x86 CPU cores stand in for both devices: device on core 0, server on core 1, "
                                 "both shared with other jobs"})


if __name__ == "__main__":
    main()
