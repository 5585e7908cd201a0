"""`collab vlm`: collab-vlm-tiny (DINOv2 ViT-S/14 + projector + SmolLM2-135M) split over gRPC.

  collab vlm demo     a Fashion-MNIST test image + a question: server process (tail) + this
                      process as the device (mtmd image encode + head); answer, bytes, times
  collab vlm ask      PNG/JPEG files + a question through the split; a loopback server is
                      started unless --server is given; --json prints one line per image;
                      --native runs the device through the one-call C API (collab_vlm_device_ask)
  collab vlm serve    the server: the "llm" task (tail + head) with the trained image-row
                      codecs (MindFusion's R: FC codes of the image rows are decoded here) and
                      the VLM's decoding shortcut (MindFusion's D: --mode shortcut)

--image-codec 8 (demo default) sends the image rows as the trained FC codec's codes at 1/8
width (text rows exact); 0 sends them exact (or SLICER with --keep-last).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys


def _add_common(p, default_codec: int = 0):
    p.add_argument("--model", default=None, help="full text GGUF (default: the embedded SmolLM2)")
    p.add_argument("--at", type=int, default=None, help="split point l (head = layers [0, l)); default L/2")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per side (default 2)")
    p.add_argument("--workdir", default=None, help="where split parts are cached (default ~/.cache/collab/llm)")
    p.add_argument("--projector", default=None, help="trained projector .npz (default ./models/vlm/projector.npz, else the one shipped with collab)")
    p.add_argument("--mode", default="roundtrip", choices=["roundtrip", "kv-handoff", "shortcut"],
                   help="how the answer is decoded: rows per token (roundtrip), the server alone after a "
                        "head-state handoff (kv-handoff) or through the VLM's trained decoding shortcut")
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--keep-last", type=int, default=None,
                   help="SLICER-compress all but the last N prompt rows (image rows included); default exact")
    p.add_argument("--image-codec", type=int, default=default_codec, choices=(0, 4, 8),
                   help=f"image rows as trained FC codes at 1/R width (0: no codec; default {default_codec})")
    p.add_argument("--code-dtype", default="f16", choices=("f16", "int8", "f32"), help="FC code type (default f16)")


def add_arguments(p, name: str = "vlm"):
    from ..llm.cli import _add_serve_arguments

    sub = p.add_subparsers(dest="vlm_command", metavar="ACTION")
    d = sub.add_parser("demo", help="a Fashion-MNIST image + question answered over gRPC (split)")
    _add_common(d, default_codec=8)
    d.add_argument("--index", type=int, default=0, help="Fashion-MNIST test image index")
    d.add_argument("--question", default="What is this item?")
    a = sub.add_parser("ask", help="answer a question about image files through the split")
    _add_common(a)
    a.add_argument("--question", required=True)
    a.add_argument("--json", action="store_true", help="one JSON line per image")
    a.add_argument("--server", default=None, help="host:port of a running `collab llm serve` (same model and --at)")
    a.add_argument("--native", action="store_true",
                   help="run the device side through the native one-call C API (collab_vlm_device_ask), "
                        "as an app linking libcollab does: image bytes + question in, answer tokens out")
    a.add_argument("images", nargs="+", metavar="IMAGE")
    v = sub.add_parser("serve", help="serve the VLM split's server side (tail + image-row codecs) over gRPC")
    v.add_argument("--model", default=None, help="full text GGUF (default: the embedded SmolLM2)")
    v.add_argument("--at", type=int, default=None, help="split point l (default L/2)")
    v.add_argument("--threads", type=int, default=2)
    v.add_argument("--workdir", default=None)
    v.add_argument("--projector", default=None, help="the projector the image rows come from (codec check)")
    v.add_argument("--image-codecs", nargs="*", default=None,
                   help="CLFN image-row codecs (default: the trained ones for this split, if any)")
    v.add_argument("--shortcut", default=None,
                   help="the VLM's decoding shortcut (CLFN; default: the trained one for this split and projector, "
                        "else the text LLM's)")
    _add_serve_arguments(v)  # host, port, session limits, token and TLS: the same as `collab llm serve`
    v.set_defaults(n_ctx=512)


def _policy(args):
    from ..llm.protocol import RowPolicy

    return RowPolicy.exact() if args.keep_last is None else RowPolicy(keep_last=args.keep_last)


def _image_codec_path(args, at, log):
    """The trained image-row codec file asked for (--image-codec R) that fits the projector,
    or None (image rows go exact / SLICER)."""
    from .codec import find_image_codec, image_codec_matches

    if not args.image_codec:
        return None
    p = find_image_codec(at, args.image_codec)
    if p is None:
        log(f"no trained image codec for split {at} at 1/{args.image_codec} (python -m collab.vlm.codec_train "
            f"--at {at} --ratio {args.image_codec}): image rows go exact")
        return None
    if not image_codec_matches(p, args.projector):
        log(f"the trained image codec {p.name} belongs to the shipped projector, not {args.projector}: "
            "image rows go exact")
        return None
    log(f"image rows: trained FC codec {p} ({args.code_dtype} codes)")
    return p


def _image_codec(args, head, at, log):
    """The trained image-row codec asked for (--image-codec R), loaded, or None."""
    from .codec import load_image_codec

    p = _image_codec_path(args, at, log)
    return None if p is None else load_image_codec(p, model=head, split_at=at, projector=args.projector)


def _ask_policy(dev, codec, args, question):
    from .codec import image_row_policy

    if codec is None:
        return None
    before, after = dev.layout(question)
    return image_row_policy(codec, before, after, dtype=args.code_dtype)


def _wait_for_server(client, proc, timeout):
    """Ready within timeout, or fail at once when our server process has exited (its error is
    on stderr) instead of waiting out the timeout."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.wait_ready(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        except Exception:
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"the VLM server process exited with status {proc.returncode} "
                                 "(its error is above)") from None
            if time.monotonic() >= deadline:
                raise


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
    if getattr(args, "native", False):
        from .native import NativeVlmDevice

        if args.keep_last is not None:
            raise SystemExit("--native sends image rows exact or as trained FC codes (--image-codec), not SLICER")
        dev = NativeVlmDevice(head, mmproj, codec=_image_codec_path(args, at, log), mode=args.mode,
                              code_dtype=args.code_dtype, max_tokens=args.max_tokens, n_threads=args.threads)
        log("device: the native one-call API (collab_vlm_device_ask)")
    else:
        dev = VlmDevice(mmproj, head=head, full=full, n_threads=args.threads, policy=_policy(args))
        dev.image_codec = _image_codec(args, head, at, log)
    proc = None
    addr = getattr(args, "server", None)
    if not addr:
        if not transport_available():
            raise SystemExit("collab.transport (grpcio) is not installed: give --server or install grpcio")
        port = _free_port()
        cmd = [sys.executable, "-m", "collab.cli", "vlm", "serve", "--model", str(full), "--at", str(at),
               "--port", str(port), "--threads", str(args.threads)]
        if args.workdir:
            cmd += ["--workdir", args.workdir]
        if args.projector:
            cmd += ["--projector", args.projector]
        proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL)
        addr = f"127.0.0.1:{port}"
    client = Client(addr)
    try:
        _wait_for_server(client, proc, timeout=300)  # a loaded machine: the server process needs a while
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
        g = dev.ask(img, args.question, mode=args.mode, client=client, max_tokens=args.max_tokens,
                    policy=_ask_policy(dev, dev.image_codec, args, args.question))
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
    print(f"  prefill segments   {', '.join(f'{k} x{n} ({_fmt_bytes(b)})' for k, n, b in ex['prefill_segments'])}")
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
                    data = f.read()
                if args.native:  # the image bytes go to the native device as they are
                    g = dev.ask(data, args.question, client)
                else:
                    g = dev.ask(decode_image(data), args.question, mode=args.mode, client=client,
                                max_tokens=args.max_tokens, policy=_ask_policy(dev, dev.image_codec, args, args.question))
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


def _serve(args) -> int:
    from ..errors import InvalidArgument
    from ..llm.artifact import ArtifactError
    from ..llm.cli import serve_task
    from .codec import VlmTask

    def warm(task):
        task._fc_codecs()                  # the image-row codecs now (small; a bad file fails here), the
        if args.shortcut:                  # shortcut in the background unless --load-nets or given (a
            task._shortcut_parts()         # mismatched file fails here, not at the first request)
        task.warm_up(nets=args.load_nets)

    def describe(task):
        sc = task.vlm_shortcut_path()
        return (f"split at {task.at}, image-row codecs with code sizes {sorted(task._fc_codecs().by_k)}, "
                f"decoding shortcut: {sc if sc else 'none for the VLM (the text LLM one)'}")

    try:
        return serve_task(args, VlmTask, "collab vlm serve", describe, warm, image_codecs=args.image_codecs,
                          projector=args.projector, vlm_shortcut=args.shortcut)
    except (ArtifactError, InvalidArgument) as e:  # a trained file that does not fit: say which, no traceback
        print(f"collab vlm serve: {e}", file=sys.stderr)
        return 2


def _check_numbers(args) -> None:
    """Numeric options checked before any model loads or a server process starts."""
    from .._validate import check_int

    check_int("--threads", args.threads, 1, 512)
    if getattr(args, "max_tokens", None) is not None:
        check_int("--max-tokens", args.max_tokens, 1, 4096)
    if getattr(args, "at", None) is not None:
        check_int("--at", args.at, 1, 4096)


def run(args) -> int:
    from ..errors import InvalidArgument

    cmd = getattr(args, "vlm_command", None)
    if cmd is None:
        print("usage: collab vlm {demo,ask,serve} ...", file=sys.stderr)
        return 2
    try:
        _check_numbers(args)
        return {"demo": _demo, "ask": _ask, "serve": _serve}[cmd](args)
    except InvalidArgument as e:
        print(f"collab vlm {cmd}: {e}", file=sys.stderr)
        return 2
