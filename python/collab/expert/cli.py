"""`collab expert`: train, export, classify (device against a server), plan (choose tau).

    collab expert train [--only gen-2H ...]              rebuild models into the cache (torch)
    collab expert export --out models/expert             cache manifest + small committed copies
    collab serve --task expert=collab.expert.server:library_task --task-arg expert.S=3
    collab expert classify --server 127.0.0.1:50051 --tau 0.8 -n 500
    collab expert plan --server 127.0.0.1:50051 --latency-ms 40      (or --accuracy 0.9)
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import InvalidArgument


def add_arguments(p: argparse.ArgumentParser, name: str = "expert") -> None:
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    t = sub.add_parser("train", help="run the training recipe (needs torch); extra args go to the recipe")
    t.add_argument("recipe_args", nargs=argparse.REMAINDER)
    e = sub.add_parser("export", help="write the cache manifest and quantised copies for models/expert")
    e.add_argument("--cache", default=None, help="recipe cache (default $COLLAB_CACHE/expert)")
    e.add_argument("--out", default="models/expert")
    e.add_argument("--library", action="append", default=None, help="libraries to copy (default: 3)")
    e.add_argument("--cache-only", action="store_true", help="only rewrite the cache's manifest")
    for q in (sub.add_parser("classify", help="classify Fashion-MNIST test images: edge + server experts"),
              sub.add_parser("plan", help="profile T_E, T_N, T_comm and choose tau for a target")):
        q.add_argument("--library-dir", default=None, help="model directory with manifest.json (default models/expert)")
        q.add_argument("--library", default="3", help="library name on the server's manifest (default 3)")
        q.add_argument("--server", default=None, help="host:port of `collab serve` with the expert task")
        q.add_argument("--task", default="expert")
        q.add_argument("-n", type=int, default=500, help="test images (default 500)")
        q.add_argument("--deadline-ms", type=float, default=1000.0)
    c = sub.choices["classify"]
    c.add_argument("--tau", type=float, default=0.8)
    c.add_argument("--batch", type=int, default=32)
    pl = sub.choices["plan"]
    g = pl.add_mutually_exclusive_group(required=True)
    g.add_argument("--latency-ms", type=float, help="per-batch latency target")
    g.add_argument("--accuracy", type=float, help="accuracy target (0..1)")
    pl.add_argument("--batch", type=int, default=32)
    pl.add_argument("--link", default=None, help="collab.net link spec added to the measured round trip, e.g. fixed:20")
    pl.add_argument("--rtt-ms", type=float, default=0.0)
    pl.add_argument("--save", default=None, help="write the learned planner profile (JSON) here")
    pl.add_argument("--profile", default=None, help="use a saved planner profile instead of measuring")


def _setup(args):
    from ..transport import Client
    from ..vit.data import load_fmnist
    from .artifacts import Library, default_library, load_params
    from .model import Classifier
    lib = Library(args.library_dir or default_library())
    edge = Classifier(load_params(lib.edge_path()), lib.grid)
    x, y = load_fmnist("test")
    n = max(1, min(int(args.n), len(y)))
    client = Client(args.server, timeout=args.deadline_ms / 1000.0) if args.server else None
    return lib, edge, x[:n], y[:n], client


def _classify(args) -> int:
    import numpy as np
    from .device import SOURCE_EXPERT, SOURCE_FALLBACK, ExpertDevice
    lib, edge, x, y, client = _setup(args)
    dev = ExpertDevice(edge, lib.partition_of(args.library), tau=args.tau, client=client,
                       task=args.task, deadline_s=args.deadline_ms / 1000.0)
    preds, srcs, reasons = [], [], {}
    for i in range(0, len(y), args.batch):
        r = dev.classify(x[i:i + args.batch])
        preds.append(r.pred)
        srcs.append(r.source)
        reasons.update(r.fallback_reasons)
    pred, src = np.concatenate(preds), np.concatenate(srcs)
    out = {"images": len(y), "tau": args.tau, "accuracy": float((pred == y).mean()),
           "offloaded": float((src != 0).mean()), "answered_by_expert": int((src == SOURCE_EXPERT).sum()),
           "fell_back": int((src == SOURCE_FALLBACK).sum()), "fallback_reasons": reasons}
    print(json.dumps(out, indent=1))
    dev.close()
    return 0


def _plan(args) -> int:
    import numpy as np
    from .planner import ExpertPlanner, OffloadCurve, profile_classifier, profile_comm
    from .routing import route
    if args.profile:
        with open(args.profile) as f:
            planner = ExpertPlanner.from_json(f.read())
    else:
        if not args.server:
            raise InvalidArgument("plan needs --server (to measure T_N and T_comm) or --profile")
        lib, edge, x, y, client = _setup(args)
        logits = edge.classify(x)
        _, pred, expert = route(logits, tau=1.0, k=lib.k, partition_of=lib.partition_of(args.library))
        conf = np.exp(logits - logits.max(1, keepdims=True))
        conf = (conf / conf.sum(1, keepdims=True)).max(1)
        expert_pred = pred.copy()
        for key in sorted(set(expert)):
            idx = np.array([i for i, k in enumerate(expert) if k == key])
            for s in range(0, len(idx), 128):
                part = idx[s:s + 128]
                out, _, _ = client.infer(args.task, x[part].tobytes(),
                                         {"experts": ",".join(map(str, key)), "shape": f"{len(part)},28,28"})
                expert_pred[part] = np.frombuffer(out, np.float32).reshape(len(part), -1).argmax(1)
        sizes = sorted({1, 4, 8, 16, args.batch})
        key0 = ",".join(map(str, expert[0]))
        t_comm = profile_comm(client, args.task, key0, sizes, link=args.link, rtt_ms=args.rtt_ms)
        # T_N: server compute as the server reports it (timings["server"])
        t_srv = {}
        for b in sizes:
            ts = [client.infer(args.task, x[:b].tobytes(), {"experts": key0, "shape": f"{b},28,28"})[2]["server"]
                  for _ in range(5)]
            t_srv[b] = float(np.median(ts))
        from .planner import Profile
        planner = ExpertPlanner(profile_classifier(edge, sizes), Profile(t_srv), t_comm,
                                OffloadCurve(conf, pred, expert_pred, y), args.batch)
        if args.save:
            with open(args.save, "w") as f:
                f.write(planner.to_json())
    best = planner.choose(latency_s=None if args.latency_ms is None else args.latency_ms / 1000.0,
                          accuracy=args.accuracy)
    print(json.dumps({"choice": best, "curve": planner.curve.as_dict()}, indent=1))
    return 0


def run(args) -> int:
    verb = getattr(args, "verb", None)
    try:
        if verb == "train":
            from .train.recipe import main
            return main(args.recipe_args)
        if verb == "export":
            from .cache import cache_dir
            from .export import export_committed, write_cache_manifest
            import pathlib
            cache = pathlib.Path(args.cache) if args.cache else cache_dir()
            print(f"wrote {write_cache_manifest(cache)}")
            if args.cache_only:
                return 0
            m = export_committed(cache, args.out, libraries=tuple(args.library or ["3"]))
            print(json.dumps(m, indent=1))
            return 0
        if verb == "classify":
            return _classify(args)
        if verb == "plan":
            return _plan(args)
    except InvalidArgument as e:
        print(f"collab expert: {e}", file=sys.stderr)
        return 2
    print("collab expert: give a verb: train, export, classify, plan", file=sys.stderr)
    return 2
