"""`collab llm ...` and `collab split-gguf`: split LLM inference on llama.cpp (MindFusion).

  collab split-gguf MODEL --at L [--at L2 ...] -o DIR    head/tail GGUF parts
  collab llm demo      server process (tail) + this process as the device (head): SmolLM2
                       answers a prompt over loopback, tokens printed as they arrive, then
                       the timing and byte breakdown
  collab llm serve     host the "llm" task (tail + head copy) on a gRPC port
  collab llm bench     runs benchmarks/llm/bench.py of the source tree (modes x RTT x traces,
                       llama.cpp RPC baseline; separate processes over real gRPC)
  collab llm quality   runs benchmarks/llm/quality.py (compressed hidden states on MMLU prompts)
  collab llm train-shortcut --at L            train the decoding shortcut (MindFusion Eq. 3;
                                              needs torch, imported only when it runs)
  collab llm train-codec --at L --ratio 8     train the FC codec for the early rows (Eq. 1-2)
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..errors import InvalidArgument

# `collab llm bench/quality` run the experiment scripts of the source tree: experiments are not
# part of the installed library (they only use it).
SCRIPTS = {"bench": "benchmarks/llm/bench.py", "quality": "benchmarks/llm/quality.py"}


def _add_model_args(p, threads=2):
    p.add_argument("--model", default=None, help="full GGUF (default: $COLLAB_LLM_MODEL or the embedded SmolLM2)")
    p.add_argument("--at", type=int, default=None, help="split point l (head = layers [0, l)); default L/2")
    p.add_argument("--threads", type=int, default=threads, help=f"CPU threads per side (default {threads})")
    p.add_argument("--workdir", default=None, help="where split parts are cached (default $COLLAB_CACHE_DIR/llm or ~/.cache/collab/llm)")


def _add_serve_arguments(p):
    from ..transport.security import add_security_arguments, port_argument

    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; anything but loopback "
                   "without TLS and a token is warned about)")
    p.add_argument("--port", type=port_argument, default=50061, help="port 0..65535 (0 = any free port; default 50061)")
    p.add_argument("--n-ctx", type=int, default=2048, help="context (KV cache) of each session, in tokens")
    p.add_argument("--load-nets", action="store_true", help="load the trained nets (shortcut, FC codecs) before "
                   "serving (default: in the background: a request needing them right after start waits)")
    # the LLM task's own session limits: each session holds a llama.cpp context, so they are
    # much tighter than the transport's, and a newcomer may evict an idle session
    p.add_argument("--max-sessions", type=int, default=8, help="LLM sessions open at once (default 8)")
    p.add_argument("--max-sessions-per-client", type=int, default=2,
                   help="sessions one client (peer host) may hold (default 2)")
    p.add_argument("--busy-idle-s", type=float, default=10.0, help="when all sessions are taken, a newcomer "
                   "evicts one idle for longer than this (default 10 s)")
    p.add_argument("--session-idle-s", type=float, default=120.0,
                   help="a session with no message for this long is closed (default 120 s)")
    add_security_arguments(p)


def _add_split_arguments(p):
    p.add_argument("model", nargs="?", default=None,
                   help="full GGUF model (default: $COLLAB_LLM_MODEL or the embedded SmolLM2)")
    p.add_argument("--at", type=int, action="append", required=True,
                   help="split point l: head = layers [0, l), tail = [l, L); repeat for several")
    p.add_argument("-o", "--out-dir", default=".", help="output directory (default: .)")
    p.add_argument("--prefix", default=None, help="output file stem (default: the model's)")


def add_arguments(p, name: str | None = None):
    name = name or p.prog.split()[-1]
    p.set_defaults(command=name)
    if name == "split-gguf":
        _add_split_arguments(p)
        return
    sub = p.add_subparsers(dest="llm_command", metavar="ACTION")
    d = sub.add_parser("demo", help="split generation: server process (tail) + device (head) on loopback")
    _add_model_args(d)
    d.add_argument("--prompt", default="What is the capital of France? Answer in one sentence.")
    d.add_argument("--context", default="", metavar="TEXT",
                   help="text placed before --prompt in the user message (a document, a transcript): the rows "
                        "--rows auto and --fc-codec compress by default, the question staying exact")
    d.add_argument("--mode", default="kv-handoff", choices=["server-only", "roundtrip", "kv-handoff", "shortcut"])
    d.add_argument("--max-tokens", type=int, default=48)
    d.add_argument("--keep-last", type=int, default=None,
                   help="compress all but the last N prompt rows with the SLICER codec (default: send exact); "
                        "with --fc-codec: the last N rows stay exact (default: the question's rows with --context, else the "
                        "last quarter); with --rows auto: default the question's rows")
    d.add_argument("--fc-codec", type=int, default=None, choices=(4, 8), metavar="R",
                   help="send the early prompt rows as codes of the trained FC codec, 1/R of the width "
                        "(R = 4 or 8; int8 codes; models/llm nets for this split)")
    d.add_argument("--sparsity", type=float, default=0.5)
    d.add_argument("--qbits", type=int, default=8)
    d.add_argument("--rows", choices=("auto",), default=None,
                   help="auto: choose exact / SLICER / trained FC codes for the prompt rows before the question (system "
                        "prompt and --context; the table was measured on those) from the measured quality table: the "
                        "least expected latency on --link-mbps / --rtt-ms whose measured loss is at most --max-loss")
    d.add_argument("--max-loss", type=float, default=None, metavar="PP",
                   help="with --rows auto: largest measured quality loss allowed, in percentage points of "
                        "teacher-forced top-1 agreement with the full model")
    d.add_argument("--quality-table", default=None, metavar="FILE",
                   help="with --rows auto: collab.quality/1 table (default: the one shipped for SmolLM2, "
                        "smollm2-135m.quality.json, measured by benchmarks/llm/mindfusion_quality.py)")
    d.add_argument("--link-mbps", type=float, default=10.0, help="with --rows auto: uplink bandwidth assumed (Mbit/s)")
    d.add_argument("--rtt-ms", type=float, default=20.0, help="with --rows auto: round-trip time assumed (ms)")
    d.add_argument("--latency-target-ms", type=float, default=None,
                   help="with --rows auto: refuse when no policy within --max-loss uploads the prompt rows this fast")
    d.add_argument("--no-reference", action="store_true", help="skip the device-only reference run")

    s = sub.add_parser("serve", help="host the 'llm' task over gRPC (collab.transport)")
    _add_model_args(s)
    _add_serve_arguments(s)

    for verb, help_text in (("bench", "modes x RTT benchmark (table + JSON + PNG): runs " + SCRIPTS["bench"]),
                            ("quality", "hidden-state compression quality (JSON + PNG): runs " + SCRIPTS["quality"])):
        b = sub.add_parser(verb, help=help_text)
        try:  # the script's own options, so that --help and errors are the script's
            _load_script(verb).add_arguments(b)
        except InvalidArgument:
            pass  # not in a source checkout: run() says so

    # torch-free argument definitions: `collab llm --help` never imports torch
    from .train.args import add_codec_arguments, add_shortcut_arguments

    add_shortcut_arguments(sub.add_parser("train-shortcut", help="train the decoding shortcut (MindFusion Eq. 3; "
                                          "needs torch)"))
    add_codec_arguments(sub.add_parser("train-codec", help="train the FC codec for the early rows (MindFusion "
                                       "Eq. 1-2; needs torch)"))


def run(args) -> int:
    if args.command == "split-gguf":
        return _split(args)
    cmd = getattr(args, "llm_command", None)
    if cmd is None:
        print("usage: collab llm {demo,serve,bench,quality,train-shortcut,train-codec} ...", file=sys.stderr)
        return 2
    try:
        if cmd == "demo":
            return _demo(args)
        if cmd == "serve":
            return _serve(args)
        if cmd in SCRIPTS:
            return int(_load_script(cmd).run(args) or 0)
        if cmd == "train-shortcut":
            from .train.shortcut import run_train_shortcut

            return run_train_shortcut(args)
        if cmd == "train-codec":
            from .train.codec import run_train_codec

            return run_train_codec(args)
    except InvalidArgument as e:
        print(f"collab llm {cmd}: {e}", file=sys.stderr)
        return 2
    return 2


def find_script(verb: str) -> Path:
    """benchmarks/llm/<script> in the current directory or one of its parents (a source checkout)."""
    rel = SCRIPTS[verb]
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / rel).is_file():
            return d / rel
    raise InvalidArgument(f"{rel} not found from {Path.cwd()}: run `collab llm {verb}` inside a collab source "
                          f"checkout (or `python {rel}` there)")


def _load_script(verb: str):
    """The experiment script as a module (its add_arguments / run)."""
    import importlib.util

    path = find_script(verb)
    spec = importlib.util.spec_from_file_location(f"collab_benchmark_llm_{verb}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _split(args) -> int:
    from .models import default_model_path
    from .split import GGUFSplitError, split_gguf

    try:
        src = args.model or default_model_path()
        pairs = split_gguf(src, args.out_dir, list(args.at), prefix=args.prefix)
    except (GGUFSplitError, ValueError) as e:
        print(f"collab split-gguf: {e}", file=sys.stderr)
        return 2
    for (head, tail), at in zip(pairs, args.at):
        print(f"at={at}: head {head} ({head.stat().st_size} bytes), tail {tail} ({tail.stat().st_size} bytes)")
    return 0


def transport_available() -> bool:
    try:
        import grpc  # noqa: F401

        from ..transport import Client, Server  # noqa: F401
    except Exception:
        return False
    return True


def _serve(args) -> int:
    from .server import LlmTask

    return serve_task(args, LlmTask, "collab llm serve", lambda task: f"tail + head of split at {task.at}",
                      warm=lambda task: task.warm_up(nets=args.load_nets))


def serve_task(args, task_cls, prog, describe, warm, **task_kw) -> int:
    """Host one "llm"-protocol task (collab.llm.server.LlmTask or a subclass) with the options of
    _add_serve_arguments: session limits, idle time-outs, token and TLS. `collab llm serve` and
    `collab vlm serve` share it, so both servers have the same limits on by default."""
    from ..transport import Server
    from ..transport.security import server_credentials_from_args

    sec = server_credentials_from_args(args)  # clear errors for bad token / TLS files before loading the model
    task = task_cls(model=args.model, at=args.at, workdir=args.workdir, n_ctx=args.n_ctx, n_threads=args.threads,
                    max_sessions=args.max_sessions, max_sessions_per_identity=args.max_sessions_per_client,
                    busy_idle_s=args.busy_idle_s, **task_kw)
    warm(task)
    # Server.start() warns (collab.transport.security.warn_if_exposed) when the address is
    # reachable from other machines without TLS and a token
    srv = Server(handlers=[task], host=args.host, port=args.port, max_message_bytes=256 << 20,
                 session_idle_s=args.session_idle_s, auth_token=sec.auth_token, tls_cert=sec.tls_cert,
                 tls_key=sec.tls_key, trusted_proxies=sec.trusted_proxies).start()
    print(f"{prog}: task 'llm' ({describe(task)}) on {srv.address} "
          f"({'TLS' if sec.tls else 'no TLS'}, {'token' if sec.auth_token else 'no token'})", flush=True)
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
    if args.rows == "auto":
        from .rowplan import auto_policy

        policy = auto_policy(args, head=head, full=full, at=at)
    elif args.fc_codec:
        from .rowplan import fc_policy, question_rows

        keep = args.keep_last
        if keep is None and args.context:   # the context compressed, the question exact (as trained)
            n, q0 = question_rows(head, args.prompt, args.context)
            keep = n - q0
        policy = fc_policy(head, at, args.fc_codec, keep)
    else:
        policy = RowPolicy.exact() if args.keep_last is None else \
            RowPolicy(keep_last=args.keep_last, sparsity=args.sparsity, qbits=(args.qbits,))
    dev = Device(head=head, full=full, n_threads=args.threads, policy=policy)
    proc = None
    if transport_available():
        from ..transport import Client

        port = _free_port()
        cmd = [sys.executable, "-m", "collab.cli", "llm", "serve", "--model", str(full), "--at", str(at),
               "--port", str(port), "--threads", str(args.threads)]
        if args.mode == "shortcut" or args.fc_codec:
            cmd.append("--load-nets")
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
        user = args.context + args.prompt
        print(f"\nprompt: {user}\nanswer ({args.mode}): ", end="", flush=True)
        st = dev.stream(user, mode=args.mode, client=client, max_tokens=args.max_tokens)
        for piece in st:  # each token's text as it arrives
            print(piece, end="", flush=True)
        print("\n")
        g = st.generation
        ref = None if args.no_reference else dev.generate(user, mode="device-only",
                                                          max_tokens=args.max_tokens)
    finally:
        if proc is not None:
            try:
                client.close()
            except Exception:
                pass
            proc.terminate()
            proc.wait(timeout=30)
    print(f"  prompt tokens      {g.prompt_tokens}")
    print(f"  generated tokens   {g.n_generated}  (stopped by {g.stop})")
    print(f"  time to 1st token  {g.ttft_s * 1e3:8.1f} ms   (incl. opening the stream; prefill "
          f"{g.prefill_tok_s:.1f} tok/s incl. network)")
    if g.n_generated > 1:
        gaps = sorted(g.inter_token_s())
        print(f"  time to 2nd token  {g.ttst_s * 1e3:8.1f} ms   (inter-token median "
              f"{gaps[len(gaps) // 2] * 1e3:.1f} ms)")
    print(f"  total              {g.total_s * 1e3:8.1f} ms   (decode {g.decode_tok_s:.1f} tok/s)")
    print(f"  device compute     {g.device_s * 1e3:8.1f} ms   server compute {g.server_s * 1e3:.1f} ms")
    print(f"  round trips        {g.round_trips}")
    print(f"  bytes up           {_fmt_bytes(g.bytes_up)}" + _prefill_note(g.extra))
    print(f"  bytes down         {_fmt_bytes(g.bytes_down)}")
    if ref is not None:
        n = max(len(ref.tokens), len(g.tokens))
        agree = sum(a == b for a, b in zip(ref.tokens, g.tokens))
        prefix = next((i for i, (a, b) in enumerate(zip(ref.tokens, g.tokens)) if a != b),
                      min(len(ref.tokens), len(g.tokens)))
        print(f"\ndevice-only reference: TTFT {ref.ttft_s * 1e3:.1f} ms, decode {ref.decode_tok_s:.1f} tok/s; "
              f"agreement with device-only: {agree}/{n} tokens (same first {prefix})")
    return 0


def _prefill_note(ex: dict) -> str:
    """What the prefill rows cost, said honestly: exact rows are not 'compressed', and an early
    segment the codec could not shrink below float16 travels as float16."""
    if "prefill_payload" not in ex:
        return ""
    segs = ex.get("prefill_segments", [])
    kinds = {k for k, _, _ in segs}
    if any(k.startswith("fc-") for k in kinds):
        parts = ", ".join(f"{n} rows {'trained FC codes, ' + k[3:] if k.startswith('fc-') else k}"
                          for k, n, _ in segs)
        note = f"  (prefill rows {_fmt_bytes(ex['prefill_payload'])} for {_fmt_bytes(ex['prefill_raw'])} raw " \
               f"float32: {parts}"
    elif kinds == {"f32"}:
        note = f"  (prefill rows {_fmt_bytes(ex['prefill_payload'])}: exact float32, not compressed"
    else:
        parts = ", ".join(f"{n} rows {k}" for k, n, _ in segs)
        note = f"  (prefill rows {_fmt_bytes(ex['prefill_payload'])} for {_fmt_bytes(ex['prefill_raw'])} raw " \
               f"float32: {parts}"
        if "slicer" not in kinds:
            note += "; codec frame was not smaller than float16, float16 sent instead"
    if ex.get("state_bytes"):
        note += f", head KV cache {_fmt_bytes(ex['state_bytes'])}"
    return note + ")"
