"""`collab llm ...`: split LLM inference on llama.cpp (MindFusion, issue 4).

  collab llm demo      server process (tail) + this process as the device (head): SmolLM2
                       answers a prompt over loopback; prints timing and byte breakdown
  collab llm serve     host the "llm" task (tail + head copy) on a gRPC port
  collab llm bench     modes x RTTs (+ traces, + llama.cpp RPC baseline): table, JSON, PNG
  collab llm quality   compressed hidden states on MMLU prompts: top-1/top-5 agreement, ppl
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from ..errors import InvalidArgument


def _add_model_args(p):
    p.add_argument("--model", default=None, help="full GGUF (default: $COLLAB_LLM_MODEL or the embedded SmolLM2)")
    p.add_argument("--at", type=int, default=None, help="split point l (head = layers [0, l)); default L/2")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per side (default 2)")
    p.add_argument("--workdir", default=None, help="where split parts are cached (default ~/.cache/collab/llm)")


def add_arguments(p):
    sub = p.add_subparsers(dest="llm_command", metavar="ACTION")
    d = sub.add_parser("demo", help="split generation: server process (tail) + device (head) on loopback")
    _add_model_args(d)
    d.add_argument("--prompt", default="What is the capital of France? Answer in one sentence.")
    d.add_argument("--mode", default="kv-handoff", choices=["server-only", "roundtrip", "kv-handoff", "shortcut"])
    d.add_argument("--max-tokens", type=int, default=48)
    d.add_argument("--keep-last", type=int, default=None,
                   help="compress all but the last N prompt rows with the SLICER codec (default: send exact)")
    d.add_argument("--sparsity", type=float, default=0.5)
    d.add_argument("--qbits", type=int, default=8)
    d.add_argument("--no-reference", action="store_true", help="skip the device-only reference run")

    s = sub.add_parser("serve", help="host the 'llm' task over gRPC (collab.transport)")
    _add_model_args(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=50061)
    s.add_argument("--n-ctx", type=int, default=2048)

    b = sub.add_parser("bench", help="modes x RTT benchmark (table + JSON + PNG)")
    from . import bench

    bench.add_arguments(b)
    q = sub.add_parser("quality", help="hidden-state compression quality on MMLU prompts (JSON)")
    from . import quality

    quality.add_arguments(q)


def run(args) -> int:
    cmd = getattr(args, "llm_command", None)
    if cmd is None:
        print("usage: collab llm {demo,serve,bench,quality} ...", file=sys.stderr)
        return 2
    try:
        if cmd == "demo":
            return _demo(args)
        if cmd == "serve":
            return _serve(args)
        if cmd == "bench":
            from . import bench

            return bench.run(args)
        if cmd == "quality":
            from . import quality

            return quality.run(args)
    except InvalidArgument as e:
        print(f"collab llm {cmd}: {e}", file=sys.stderr)
        return 2
    return 2


def transport_available() -> bool:
    try:
        import grpc  # noqa: F401

        from ..transport import Client, Server  # noqa: F401
    except Exception:
        return False
    return True


def _serve(args) -> int:
    from .server import LlmTask

    from ..transport import Server

    task = LlmTask(model=args.model, at=args.at, workdir=args.workdir, n_ctx=args.n_ctx, n_threads=args.threads)
    task.warm_up()
    srv = Server(handlers=[task], host=args.host, port=args.port, max_message_bytes=256 << 20).start()
    print(f"collab llm serve: task 'llm' (tail + head of split at {task.at}) on {srv.address}", flush=True)
    try:
        srv.wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return str(n)


def _demo(args) -> int:
    from .device import Device
    from .models import default_model_path
    from .protocol import RowPolicy
    from .server import LlmTask, prepare_parts

    full = args.model or default_model_path()
    print(f"model: {full}")
    t = time.perf_counter()
    head, tail, at = prepare_parts(full, args.at, args.workdir)
    print(f"split at layer {at}: head {head.name}, tail {tail.name} ({time.perf_counter() - t:.1f} s)")
    policy = RowPolicy.exact() if args.keep_last is None else \
        RowPolicy(keep_last=args.keep_last, sparsity=args.sparsity, qbits=(args.qbits,))
    dev = Device(head=head, full=full, n_threads=args.threads, policy=policy)
    proc = None
    if transport_available():
        from ..transport import Client

        port = _free_port()
        cmd = [sys.executable, "-m", "collab.cli", "llm", "serve", "--model", str(full), "--at", str(at),
               "--port", str(port), "--threads", str(args.threads)]
        if args.workdir:
            cmd += ["--workdir", args.workdir]
        proc = subprocess.Popen(cmd, env=dict(os.environ))
        client = Client(f"127.0.0.1:{port}")
        try:
            client.wait_ready(timeout=120)
        except Exception:
            proc.terminate()
            raise
        where = f"server process pid {proc.pid} on 127.0.0.1:{port} (gRPC)"
    else:
        from ..net.link import LinkClient

        client = LinkClient([LlmTask(head=head, tail=tail, n_threads=args.threads)])
        where = "in this process (collab.transport not installed: emulated link, RTT 0)"
    print(f"server: {where}; device: this process (pid {os.getpid()}); compute on both: this machine's CPU, "
          f"{args.threads} threads each")
    dev.warm_up()  # an app keeps its model loaded: do not time the first page-in
    try:
        g = dev.generate(args.prompt, mode=args.mode, client=client, max_tokens=args.max_tokens)
        ref = None if args.no_reference else dev.generate(args.prompt, mode="device-only",
                                                          max_tokens=args.max_tokens)
    finally:
        if proc is not None:
            try:
                client.close()
            except Exception:
                pass
            proc.terminate()
            proc.wait(timeout=30)
    print(f"\nprompt: {args.prompt}\nanswer ({args.mode}): {g.text.strip()}\n")
    print(f"  prompt tokens      {g.prompt_tokens}")
    print(f"  generated tokens   {g.n_generated}")
    print(f"  time to 1st token  {g.ttft_s * 1e3:8.1f} ms   (prefill {g.prefill_tok_s:.1f} tok/s incl. network)")
    print(f"  total              {g.total_s * 1e3:8.1f} ms   (decode {g.decode_tok_s:.1f} tok/s)")
    print(f"  device compute     {g.device_s * 1e3:8.1f} ms   server compute {g.server_s * 1e3:.1f} ms")
    print(f"  round trips        {g.round_trips}")
    ex = g.extra
    up = f"  bytes up           {_fmt_bytes(g.bytes_up)}"
    if "prefill_payload" in ex:
        up += f"  (prefill rows {_fmt_bytes(ex['prefill_payload'])} of {_fmt_bytes(ex['prefill_raw'])} raw f32"
        if ex.get("state_bytes"):
            up += f", head KV cache {_fmt_bytes(ex['state_bytes'])}"
        up += ")"
    print(up)
    print(f"  bytes down         {_fmt_bytes(g.bytes_down)}")
    if ref is not None:
        same = ref.tokens == g.tokens
        print(f"\ndevice-only reference: TTFT {ref.ttft_s * 1e3:.1f} ms, decode {ref.decode_tok_s:.1f} tok/s; "
              f"tokens identical to device-only: {'yes' if same else 'no'}")
    return 0
