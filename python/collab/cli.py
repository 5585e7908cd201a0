"""The `collab` command. Each subcommand lives in its own module and is imported lazily,
so `collab --help` stays fast and optional dependencies load only when used.

A subsystem adds itself with one line in SUBCOMMANDS: name -> (module, help). The module
(`collab.<system>.cli`) provides `add_arguments(parser, name)` and `run(args) -> int`;
`args.command` is the subcommand name, so one module can serve several subcommands.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    # planner
    "profile": ("collab.planner.cli", "profile per-layer time/memory of a model on this device"),
    "calibrate": ("collab.planner.cli", "measure codec encode/decode time on this device"),
    "plan": ("collab.planner.cli", "choose split + codec settings and print the latency breakdown"),
    # transport
    "serve": ("collab.transport.cli", "serve tasks over gRPC (collab.v1.Collab)"),
    "split-gguf": ("collab.llm.cli", "split a GGUF LLM into head/tail parts"),
    "fleet": ("collab.fleet.cli", "replicas behind a consistent-hash gRPC proxy: fleet up / down / status"),
    "llm": ("collab.llm.cli", "split LLM inference on llama.cpp: demo, serve, bench, quality"),
    "expert": ("collab.expert.cli", "Ask the Expert: edge generalist + near-edge experts: train, export, classify, plan"),
    "vlm": ("collab.vlm.cli", "split VLM (DINOv2 + SmolLM2 through llama.cpp's mtmd): demo, ask"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="collab", description="collaborative device/server inference")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    argv = list(sys.argv[1:] if argv is None else argv)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        # Only import the module of the command being run (and all of them for --help).
        if argv[:1] == [name] or not argv or argv[0] in ("-h", "--help"):
            modules[name] = importlib.import_module(module)
            p.set_defaults(command=name)
            modules[name].add_arguments(p, name)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
