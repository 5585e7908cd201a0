"""The split VLM's device as an app links it (the one-call C API, collab_vlm_device_ask) beside
the Python device (collab.vlm.split.VlmDevice) a Python caller would otherwise use: the same
held-out VQA questions, the same `collab vlm serve` process over gRPC, the same image bytes
(PNG) in. Reports whether the answers are token for token the same, accuracy, bytes up, and
the median time to first token and device compute of each (ratios native / Python).

The server is pinned with taskset to core 1 and this process (both devices) to core 0; one
compute thread each; the two devices alternate question by question.

    python benchmarks/vlm/native_device.py --n 40
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time

import numpy as np

from collab.bench_io import save_json


def _png(a) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(a, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--mode", default="kv-handoff", choices=("kv-handoff", "shortcut", "roundtrip"))
    ap.add_argument("--ratio", type=int, default=8, choices=(0, 4, 8), help="image codec 1/R (0: exact rows)")
    ap.add_argument("--code-dtype", default="f16", choices=("f16", "int8", "f32"))
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/vlm_native_device.json")
    ap.add_argument("--plot-only", action="store_true")
    a = ap.parse_args(argv)
    if a.plot_only:
        plot(json.loads(open(a.out).read()), a.out.removesuffix(".json") + ".png")
        return 0
    from collab.llm.cli import _free_port
    from collab.llm.models import default_model_path
    from collab.llm.server import prepare_parts
    from collab.transport import Client
    from collab.vit.data import load_fmnist
    from collab.vlm.codec import find_image_codec, image_row_policy, load_image_codec
    from collab.vlm.models import mmproj_path
    from collab.vlm.mtmd import decode_image
    from collab.vlm.native import NativeVlmDevice
    from collab.vlm.split import VlmDevice
    from collab.vlm.vqa import exact_match, make_set

    from collab.bench_io import pin_device_core

    dev_core, srv_core = pin_device_core()
    full = default_model_path()
    head, _, at = prepare_parts(full)
    mm = mmproj_path()
    cpath = find_image_codec(at, a.ratio) if a.ratio else None
    if a.ratio and cpath is None:
        raise SystemExit(f"no image codec for split {at} at 1/{a.ratio}")
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    srv = subprocess.Popen(["taskset", "-c", str(srv_core), sys.executable, "-m", "collab.cli", "vlm", "serve",
                            "--at", str(at), "--threads", "1", "--port", str(port), "--load-nets"],
                           env=env, stdout=subprocess.DEVNULL)
    client = Client(f"127.0.0.1:{port}")
    rows = []
    try:
        client.wait_ready(timeout=600)
        x, y = load_fmnist("test")
        samples = make_set(y, a.n, a.seed)
        py = VlmDevice(mm, head=head, n_threads=1, n_ctx=512)
        codec = load_image_codec(cpath, model=head, split_at=at) if cpath else None
        nat = NativeVlmDevice(head, mm, codec=cpath, mode=a.mode, code_dtype=a.code_dtype,
                              max_tokens=a.max_tokens, n_threads=1)
        warm = _png(x[0])
        nat.ask(warm, "What is this item?", client)  # page in weights, first graphs, server nets
        py.ask(decode_image(warm), "What is this item?", mode=a.mode, client=client, max_tokens=2)
        t_start = time.time()
        for k, s in enumerate(samples):
            png = _png(x[s.image])
            rec = {"question": s.question, "gold": s.answer}
            for who in (("python", "native") if k % 2 == 0 else ("native", "python")):
                if who == "native":
                    r = nat.ask(png, s.question, client)
                    rec["native"] = dict(tokens=r.tokens, answer=r.text.strip(), ttft_s=r.ttft_s,
                                         device_s=r.encode_s + r.head_s, bytes_up=r.bytes_up)
                else:
                    t0 = time.perf_counter()
                    img = decode_image(png)
                    dec = time.perf_counter() - t0
                    pol = image_row_policy(codec, *py.layout(s.question), dtype=a.code_dtype) if codec else None
                    g = py.ask(img, s.question, mode=a.mode, client=client, max_tokens=a.max_tokens, policy=pol)
                    rec["python"] = dict(tokens=g.tokens, answer=g.text.strip(), ttft_s=g.ttft_s + dec,
                                         device_s=g.device_s + dec, bytes_up=g.bytes_up)
            rows.append(rec)
            if (k + 1) % 10 == 0:
                print(f"{k + 1}/{len(samples)} ({time.time() - t_start:.0f} s)", flush=True)
    finally:
        client.close()
        srv.terminate()
        srv.wait(timeout=30)
    summ = {}
    for who in ("python", "native"):
        summ[who] = dict(accuracy=float(np.mean([exact_match(r[who]["answer"], r["gold"]) for r in rows])),
                         ttft_ms_median=1e3 * float(np.median([r[who]["ttft_s"] for r in rows])),
                         device_ms_median=1e3 * float(np.median([r[who]["device_s"] for r in rows])),
                         bytes_up_median=float(np.median([r[who]["bytes_up"] for r in rows])))
    same = sum(r["native"]["tokens"] == r["python"]["tokens"] for r in rows)
    ratios = dict(ttft=summ["native"]["ttft_ms_median"] / summ["python"]["ttft_ms_median"],
                  device=summ["native"]["device_ms_median"] / summ["python"]["device_ms_median"])
    doc = dict(n=len(rows), seed=a.seed, split_at=at, mode=a.mode, ratio=a.ratio, code_dtype=a.code_dtype,
               max_tokens=a.max_tokens, pinning=f"device core {dev_core}, server core {srv_core}, 1 thread each",
               identical_tokens=same, summary=summ, ratios_native_over_python=ratios, rows=rows)
    save_json(a.out, doc)
    plot(doc, a.out.removesuffix(".json") + ".png")
    print(f"\n{'device':8s} {'acc':>6s} {'TTFT ms':>9s} {'device ms':>10s} {'bytes up':>9s}")
    for who, v in summ.items():
        print(f"{who:8s} {v['accuracy']:6.2f} {v['ttft_ms_median']:9.1f} {v['device_ms_median']:10.1f} "
              f"{v['bytes_up_median']:9.0f}")
    print(f"identical answers (tokens): {same}/{len(rows)}; native / python: TTFT {ratios['ttft']:.2f}, "
          f"device compute {ratios['device']:.2f}")
    return 0


def plot(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = doc["summary"]
    who = list(s)
    fig, ax = plt.subplots(1, 2, figsize=(8, 3.2))
    ax[0].bar(who, [s[w]["ttft_ms_median"] for w in who])
    ax[0].set_ylabel("median time to first token (ms)")
    ax[1].bar(who, [s[w]["device_ms_median"] for w in who], color="tab:orange")
    ax[1].set_ylabel("median device compute (ms)")
    fig.suptitle(f"VLM device: native one-call API vs Python (n={doc['n']}, {doc['mode']}, "
                 f"identical answers {doc['identical_tokens']}/{doc['n']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
