"""MindFusion Table II analog on collab-vlm-tiny: TTFT, prefill and decode tok/s of device-only,
server-only and the split (R + D, and R with per-token round trips) over a WiFi-like link
(RTT 100 ms) and an LTE trace, device and server pinned to different cores.

    python benchmarks/vlm/table2_latency.py --rounds 5 --tokens 16

Set-up: the server is `collab vlm serve` (tail + head copy + image-row codecs) in its own
process pinned with taskset to core 1; the device is this process pinned to core 0 (the same
sched_setaffinity taskset does); one compute thread each. Requests go over real gRPC on
loopback and every message is logged (direction, time, bytes); the links are then applied by
re-timing each logged request on them (collab.llm.timeline, as benchmarks/llm/bench.py does
for its LTE rows): compute gaps as measured, transfers as the link needs, RTT/2 each way.
  device-only   image encode + full model on core 0 (no network)
  server-only   the same on core 1 (a worker process under taskset), the image (PNG) + question
                up and the tokens down re-timed on the link (the server streams tokens)
  split R+D     mode shortcut: device encodes + head + FC codes of the image rows (1/8,
                float16); the server decodes them, runs the tail and decodes alone (D)
  split R       mode roundtrip: the same rows, every new token goes back to the device's head
Rounds are interleaved (each round runs every system once); medians and min-max over rounds.
Both sides are the same CPU here (the paper's device is a phone, its server a GPU), so the
split cannot be faster than server-only in compute: what carries over is the structure.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "llm"))
from bench import _Recorder, _timing, _traces  # noqa: E402

PAPER = {  # Table II: TTFT (s), generation (decode) tok/s, pre-filling tok/s
    "Mobile iPhone 15 Pro (device-only)": (32.0, 5.38, 30.08),
    "Edge Apple M2 (server-only)": (5.6, 17.41, 135.56),
    "Cloud Nvidia A100 (server-only)": (0.26, 129.40, 2315.05),
    "MindFusion iPhone 15 Pro + M2, LAN 91 ms": (5.91, 16.22, 103.21),
    "MindFusion iPhone 15 Pro + A100, Internet": (4.07, 128.53, 151.10),
}
SYSTEMS = ("device-only", "server-only", "split R+D", "split R")


def _png(img_u8) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(img_u8).save(b, format="PNG")
    return b.getvalue()


def _worker(a) -> int:
    """server-only compute: device-only runs on this (pinned) process; token times as JSON."""
    from collab.llm.models import default_model_path
    from collab.vit.data import load_fmnist
    from collab.vlm.models import mmproj_path
    from collab.vlm.split import VlmDevice

    x, _ = load_fmnist("test")
    dev = VlmDevice(mmproj_path(), full=default_model_path(), n_threads=a.threads)
    dev.warm_up()
    dev.ask(x[a.index], a.question, mode="device-only", max_tokens=2)
    for _ in range(a.rounds):
        g = dev.ask(x[a.index], a.question, mode="device-only", max_tokens=a.tokens, ignore_eog=True)
        print(json.dumps({"times": g.token_times, "prompt": g.prompt_tokens}), flush=True)
    return 0


def _links(trace_dir):
    from collab.net.trace import FixedRateLink

    wifi = FixedRateLink(50e6, "wifi-50Mbit")
    out = [("wifi RTT 100 ms", wifi, wifi, 100.0)]
    tr, err = _traces(trace_dir, True)
    if tr:
        name, up, down = tr[0]
        out.append((f"LTE {name} RTT 60 ms", up, down, 60.0))
    else:
        print(f"no LTE trace: {err}", file=sys.stderr)
    return out


def _row(times, prompt):
    t = _timing(times)
    return {"ttft_s": t["ttft_s"], "decode_tok_s": t["tok_s"], "prefill_tok_s": prompt / t["ttft_s"],
            "n_tokens": t["n_tokens"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--index", type=int, default=0, help="Fashion-MNIST test image")
    ap.add_argument("--question", default="What is this item?")
    ap.add_argument("--at", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ratio", type=int, default=8)
    ap.add_argument("--traces", default=None, help="mahimahi trace directory (default shared/traces)")
    ap.add_argument("--device-cpu", type=float, default=None,
                    help="cap the device at this fraction of a core (cgroup CPU quota): a device slower than "
                         "its server, as a phone against a GPU box (default: no cap)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vlm_table2.json"))
    ap.add_argument("--worker-server-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker_server_only:
        return _worker(a)

    from collab.bench_io import save_json
    from collab.llm.cli import _free_port
    from collab.llm.models import default_model_path
    from collab.llm.server import prepare_parts
    from collab.llm.timeline import replay_arrivals, retime
    from collab.net.link import message_bytes
    from collab.transport import Client
    from collab.vit.data import load_fmnist
    from collab.vlm.codec import find_image_codec, image_row_policy, load_image_codec
    from collab.vlm.models import mmproj_path
    from collab.vlm.split import VlmDevice

    from collab.bench_io import pin_device_core

    dev_core, srv_core = pin_device_core()
    from collab.bench_io import limit_device_cpu, server_preexec

    device_cpu = limit_device_cpu(a.device_cpu)
    full = default_model_path()
    head, _, at = prepare_parts(full, a.at)
    codec_path = find_image_codec(at, a.ratio)
    if codec_path is None:
        raise SystemExit(f"no image codec for split {at} ratio {a.ratio}: python -m collab.vlm.codec_train")
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    srv = subprocess.Popen(["taskset", "-c", str(srv_core), sys.executable, "-m", "collab.cli", "vlm", "serve",
                            "--at", str(at), "--threads", str(a.threads), "--port", str(port)],
                           env=env, stdout=subprocess.DEVNULL, preexec_fn=server_preexec())
    client = Client(f"127.0.0.1:{port}")
    try:
        client.wait_ready(timeout=300)
        x, _ = load_fmnist("test")
        img = x[a.index]
        dev = VlmDevice(mmproj_path(), head=head, full=full, n_threads=a.threads)
        codec = load_image_codec(codec_path, model=head, split_at=at)
        before, after = dev.layout(a.question)
        pol = image_row_policy(codec, before, after, "f16")
        dev.warm_up()
        for mode in ("shortcut", "roundtrip"):  # first requests load the nets / page in the weights
            dev.ask(img, a.question, mode=mode, client=client, max_tokens=2, policy=pol)
        worker = subprocess.Popen(["taskset", "-c", str(srv_core), sys.executable, __file__, "--worker-server-only",
                                   "--rounds", str(a.rounds), "--tokens", str(a.tokens), "--index", str(a.index),
                                   "--question", a.question, "--threads", str(a.threads)],
                                  env=env, stdout=subprocess.PIPE, text=True, preexec_fn=server_preexec())
        server_only = [json.loads(line) for line in worker.stdout]
        worker.wait()
        up_bytes = message_bytes("prompt", _png(img) + a.question.encode(), {})
        rec = _Recorder(client)
        runs = []
        for r in range(a.rounds):
            for name in SYSTEMS[::1 if r % 2 == 0 else -1]:
                t0 = time.time()
                if name == "device-only":
                    g = dev.ask(img, a.question, mode="device-only", max_tokens=a.tokens, ignore_eog=True)
                    runs.append({"system": name, "round": r, "prompt": g.prompt_tokens, "times": g.token_times})
                elif name == "server-only":
                    so = server_only[r]
                    runs.append({"system": name, "round": r, "prompt": so["prompt"], "times": so["times"],
                                 "events": [("up", 0.0, up_bytes)] + [("down", t, 40) for t in so["times"]]})
                else:
                    mode = "shortcut" if name == "split R+D" else "roundtrip"
                    g = dev.ask(img, a.question, mode=mode, client=rec, max_tokens=a.tokens, policy=pol,
                                ignore_eog=True)
                    runs.append({"system": name, "round": r, "prompt": g.prompt_tokens, "times": g.token_times,
                                 "events": rec.events, "bytes_up": g.bytes_up, "bytes_down": g.bytes_down,
                                 "prefill_payload": g.extra["prefill_payload"]})
                print(f"round {r} {name}: {time.time() - t0:.2f} s", flush=True)
    finally:
        client.close()
        srv.terminate()
        srv.wait(timeout=30)

    links = [("loopback (measured)", None, None, 0.0)] + _links(a.traces)
    table = {}
    for lname, up, down, rtt in links:
        for name in SYSTEMS:
            rows = []
            for run in (x for x in runs if x["system"] == name):
                times = run["times"]
                if up is not None and "events" in run:
                    times = (replay_arrivals(run["events"], up, down, rtt) if name == "server-only" else
                             retime(run["events"], run["times"], up, down, rtt))
                rows.append(_row(times, run["prompt"]))
            s = {k: {"median": statistics.median(r[k] for r in rows), "min": min(r[k] for r in rows),
                     "max": max(r[k] for r in rows)} for k in ("ttft_s", "decode_tok_s", "prefill_tok_s")}
            if name.startswith("split"):
                s["bytes_up"] = statistics.median(x["bytes_up"] for x in runs if x["system"] == name)
                s["prefill_payload"] = statistics.median(x["prefill_payload"] for x in runs if x["system"] == name)
            table[f"{lname} | {name}"] = s
    print(f"\n{'link | system':<44}{'TTFT ms':>18}{'prefill tok/s':>16}{'decode tok/s':>16}")
    for k, s in table.items():
        print(f"{k:<44}{s['ttft_s']['median'] * 1e3:>10.0f} [{s['ttft_s']['min'] * 1e3:.0f}-"
              f"{s['ttft_s']['max'] * 1e3:.0f}]{s['prefill_tok_s']['median']:>12.1f}{s['decode_tok_s']['median']:>16.1f}")
    ratios = {}
    for lname, *_ in links:
        med = lambda sysn, key: table[f"{lname} | {sysn}"][key]["median"]  # noqa: E731
        ratios[lname] = {
            "TTFT split R+D / device-only": med("split R+D", "ttft_s") / med("device-only", "ttft_s"),
            "TTFT split R+D / server-only": med("split R+D", "ttft_s") / med("server-only", "ttft_s"),
            "decode split R+D / device-only": med("split R+D", "decode_tok_s") / med("device-only", "decode_tok_s"),
            "decode split R+D / server-only": med("split R+D", "decode_tok_s") / med("server-only", "decode_tok_s"),
            "decode split R+D / split R": med("split R+D", "decode_tok_s") / med("split R", "decode_tok_s"),
        }
        print(lname, {k: round(v, 3) for k, v in ratios[lname].items()})
    save_json(a.out, dict(rounds=a.rounds, tokens=a.tokens, question=a.question, image=a.index, split_at=at,
                          codec=str(codec_path), cores={"device": dev_core, "server": srv_core}, device_cpu=device_cpu,
                          loadavg=os.getloadavg(), table=table, ratios=ratios, paper=PAPER, runs=runs))
    plot(table, links, str(Path(a.out).with_suffix(".png")))
    print(f"wrote {a.out} and {Path(a.out).with_suffix('.png')}")
    return 0


def plot(table, links, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, lab in zip(axs, ("ttft_s", "prefill_tok_s", "decode_tok_s"),
                            ("TTFT (s)", "prefill tok/s", "decode tok/s")):
        for j, (lname, *_) in enumerate(links):
            vals = [table[f"{lname} | {s}"][key]["median"] for s in SYSTEMS]
            ax.bar([i + 0.27 * j for i in range(len(SYSTEMS))], vals, width=0.25, label=lname)
        ax.set_xticks([i + 0.27 for i in range(len(SYSTEMS))], SYSTEMS, rotation=20, fontsize=8)
        ax.set_title(lab)
    axs[0].legend(fontsize=7)
    fig.suptitle("Table II analog (collab-vlm-tiny; device core 0, server core 1; links re-timed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
