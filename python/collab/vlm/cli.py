"""`collab vlm`: collab-vlm-tiny (DINOv2 ViT-S/14 + projector + SmolLM2-135M) split over gRPC.

  collab vlm demo     a Fashion-MNIST test image + a question: server process (tail) + this
                      process as the device (mtmd image encode + head); answer, bytes, times
  collab vlm ask      PNG/JPEG files + a question through the split; a loopback server is
                      started unless --server is given; --json prints one line per image
"""
from __future__ import annotations

import json
import os
import subprocess
import sys


def _add_common(p):
    p.add_argument("--model", default=None, help="full text GGUF (default: the embedded SmolLM2)")
    p.add_argument("--at", type=int, default=None, help="split point l (head = layers [0, l)); default L/2")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per side (default 2)")
    p.add_argument("--workdir", default=None, help="where split parts are cached (default ~/.cache/collab/llm)")
    p.add_argument("--projector", default=None, help="trained projector .npz (default ./models/vlm/projector.npz, else the one shipped with collab)")
    p.add_argument("--mode", default="roundtrip", choices=["roundtrip", "kv-handoff"])
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--keep-last", type=int, default=None,
                   help="SLICER-compress all but the last N prompt rows (image rows included); default exact")


def add_arguments(p, name: str = "vlm"):
    sub = p.add_subparsers(dest="vlm_command", metavar="ACTION")
    d = sub.add_parser("demo", help="a Fashion-MNIST image + question answered over gRPC (split)")
    _add_common(d)
    d.add_argument("--index", type=int, default=0, help="Fashion-MNIST test image index")
    d.add_argument("--question", default="What is this item?")
    a = sub.add_parser("ask", help="answer a question about image files through the split")
    _add_common(a)
    a.add_argument("--question", required=True)
    a.add_argument("--json", action="store_true", help="one JSON line per image")
    a.add_argument("--server", default=None, help="host:port of a running `collab llm serve` (same model and --at)")
    a.add_argument("images", nargs="+", metavar="IMAGE")


def _policy(args):
    from ..llm.protocol import RowPolicy

    return RowPolicy.exact() if args.keep_last is None else RowPolicy(keep_last=args.keep_last)


def _setup(args, log):
    """(device, client, stop) with a loopback server process unless args.server is set."""
    from ..llm.cli import _free_port, transport_available
    from ..llm.models import default_model_path
    from ..llm.server import prepare_parts
    from ..transport import Client
    from .models import mmproj_path
    from .split import VlmDevice

    full = args.model or default_model_path()
    head, _tail, at = prepare_parts(full, args.at, args.workdir)
    mmproj = mmproj_path(args.projector)
    log(f"model: {full} split at {at}; mmproj {mmproj}")
    dev = VlmDevice(mmproj, head=head, full=full, n_threads=args.threads, policy=_policy(args))
    proc = None
    addr = getattr(args, "server", None)
    if not addr:
        if not transport_available():
            raise SystemExit("collab.transport (grpcio) is not installed: give --server or install grpcio")
        port = _free_port()
        cmd = [sys.executable, "-m", "collab.cli", "llm", "serve", "--model", str(full), "--at", str(at),
               "--port", str(port), "--threads", str(args.threads)]
        if args.workdir:
            cmd += ["--workdir", args.workdir]
        proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL)
        addr = f"127.0.0.1:{port}"
    client = Client(addr)
    try:
        client.wait_ready(timeout=120)
    except Exception:
        if proc is not None:
            proc.terminate()
        raise
    log(f"server: {'process pid %d on ' % proc.pid if proc else ''}{addr} (gRPC); device: pid {os.getpid()}")

    def stop():
        try:
            client.close()
        except Exception:
            pass
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)

    return dev, client, stop


def _demo(args) -> int:
    import numpy as np

    from ..llm.cli import _fmt_bytes
    from ..vit.data import load_fmnist
    from .vqa import NAMES

    x, y = load_fmnist("test")
    if not 0 <= args.index < len(x):
        print(f"--index must be in [0, {len(x)})", file=sys.stderr)
        return 2
    dev, client, stop = _setup(args, print)
    try:
        img = np.asarray(x[args.index])
        dev.warm_up()
        g = dev.ask(img, args.question, mode=args.mode, client=client, max_tokens=args.max_tokens)
        ref = dev.ask(img, args.question, mode="device-only", max_tokens=args.max_tokens)
    finally:
        stop()
    ex = g.extra
    print(f"\nimage: Fashion-MNIST test #{args.index} (label: {NAMES[int(y[args.index])]})")
    print(f"question: {args.question}\nanswer ({args.mode}): {g.text.strip()}\n")
    print(f"  prompt positions   {g.prompt_tokens} ({ex['image_rows']} image rows)")
    print(f"  image encode       {ex['encode_s'] * 1e3:8.1f} ms  (mtmd, on the device)")
    print(f"  time to 1st token  {g.ttft_s * 1e3:8.1f} ms")
    print(f"  total              {g.total_s * 1e3:8.1f} ms")
    print(f"  device compute     {g.device_s * 1e3:8.1f} ms   server compute {g.server_s * 1e3:.1f} ms")
    print(f"  bytes up           {_fmt_bytes(g.bytes_up)}  (prefill rows {_fmt_bytes(ex['prefill_payload'])} "
          f"of {_fmt_bytes(ex['prefill_raw'])} raw f32)")
    print(f"  bytes down         {_fmt_bytes(g.bytes_down)}   round trips {g.round_trips}")
    print(f"\nunsplit (device-only) answer: {ref.text.strip()}; split tokens identical: "
          f"{'yes' if ref.tokens == g.tokens else 'no'}")
    return 0


def _ask(args) -> int:
    from ..errors import InvalidArgument
    from .mtmd import decode_image

    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    dev, client, stop = _setup(args, log)
    rc = 0
    try:
        for path in args.images:
            try:
                with open(path, "rb") as f:
                    img = decode_image(f.read())
                g = dev.ask(img, args.question, mode=args.mode, client=client, max_tokens=args.max_tokens)
                rec = {"image": path, "answer": g.text.strip(), "bytes_up": g.bytes_up,
                       "ttft_ms": round(g.ttft_s * 1e3, 1)}
            except (OSError, InvalidArgument) as e:
                rec = {"image": path, "error": str(e)}
                rc = 1
            if args.json:
                print(json.dumps(rec), flush=True)
            elif "error" in rec:
                print(f"{path}: error: {rec['error']}")
            else:
                print(f"{path}: {rec['answer']}  ({rec['bytes_up']} B up, TTFT {rec['ttft_ms']} ms)")
    finally:
        stop()
    return rc


def run(args) -> int:
    cmd = getattr(args, "vlm_command", None)
    if cmd is None:
        print("usage: collab vlm {demo,ask} ...", file=sys.stderr)
        return 2
    return _demo(args) if cmd == "demo" else _ask(args)
