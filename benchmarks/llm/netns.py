"""LLM split decode modes over a real, shaped network ("netns-shaped where possible").

The server (`collab llm serve`, tail + head copy of SmolLM2) runs in one Linux network namespace,
the device (head) in another; they are joined by a veth pair shaped with tc (collab.net.netns:
tbf at a fixed rate, or following mahimahi traces), and the RTT comes from the user-space
delaying proxy (this kernel has no netem). Everything crosses the real gRPC path.

    sudo python benchmarks/llm/netns.py                       # 8 Mbit/s both ways, RTT 20 and 100 ms
    sudo python benchmarks/llm/netns.py --up-trace ../shared/traces/TMobile-LTE-short.up \
        --down-trace ../shared/traces/TMobile-LTE-short.down --rtt-ms 40

Prints a table and writes benchmarks/results/llm_netns.json (+ .png). Device and server both
compute on this machine's CPU (1 thread each, so they do not fight for the 2 cores). Needs
root, iproute2 and tc; exits 0 with the reason otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results"
MODES = ("server-only", "roundtrip", "kv-handoff")


def device_main(args) -> int:
    """Runs inside the client namespace: generate once per mode through the proxy."""
    from collab import Client
    from collab.llm.device import Device
    from collab.llm.server import prepare_parts

    head, _tail, _at = prepare_parts(args.model, args.at, args.workdir)
    dev = Device(head=head, full=args.model, n_threads=1)
    dev.warm_up()
    ref = dev.generate(args.prompt, mode="device-only", max_tokens=args.max_tokens)
    client = Client(args.target, timeout=600)
    client.wait_ready(timeout=300)
    rows = []
    for mode in args.modes.split(","):
        dev.generate(args.prompt, mode=mode, client=client, max_tokens=2)  # warm the server's session path
        g = dev.generate(args.prompt, mode=mode, client=client, max_tokens=args.max_tokens)
        rows.append(dict(mode=mode, ttft_ms=g.ttft_s * 1e3, total_ms=g.total_s * 1e3, decode_tok_s=g.decode_tok_s,
                         bytes_up=g.bytes_up, bytes_down=g.bytes_down, round_trips=g.round_trips,
                         generated=g.n_generated, same_as_device_only=g.tokens == ref.tokens))
    rows.append(dict(mode="device-only", ttft_ms=ref.ttft_s * 1e3, total_ms=ref.total_s * 1e3,
                     decode_tok_s=ref.decode_tok_s, bytes_up=0, bytes_down=0, round_trips=0,
                     generated=ref.n_generated, same_as_device_only=True))
    client.close()
    json.dump(rows, open(args.out, "w"))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtt-ms", type=float, nargs="+", default=[20.0, 100.0])
    ap.add_argument("--rate-mbps", type=float, default=8.0, help="fixed rate both ways (without traces)")
    ap.add_argument("--up-trace")
    ap.add_argument("--down-trace")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--prompt", default="Explain in two sentences why the sky is blue.")
    ap.add_argument("--model", default=None)
    ap.add_argument("--at", type=int, default=None)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=str(RESULTS / "llm_netns.json"))
    # internal: the device process
    ap.add_argument("--device", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    args = ap.parse_args()

    from collab.llm.models import default_model_path
    from collab.llm.server import prepare_parts

    args.model = args.model or str(default_model_path())
    if args.device:
        return device_main(args)

    from collab.net import netns

    reason = netns.unavailable_reason()
    if reason:
        print(f"llm_netns: skipped: {reason}")
        return 0
    _head, _tail, at = prepare_parts(args.model, args.at, args.workdir)  # split once, outside the namespaces
    traces = None
    if args.up_trace or args.down_trace:
        if not (args.up_trace and args.down_trace):
            ap.error("give both --up-trace and --down-trace")
        from collab import net

        traces = net.load_trace(args.up_trace), net.load_trace(args.down_trace)
    py = sys.executable
    results = []
    with tempfile.TemporaryDirectory() as tmp, netns.NetnsLink(qdisc="tbf", initial_bps=args.rate_mbps * 1e6) as link:
        port = 50061
        server = link.popen("server", [py, "-m", "collab.cli", "llm", "serve", "--model", args.model, "--at", str(at),
                                       "--host", link.ip["server"], "--port", str(port), "--threads", "1"]
                            + (["--workdir", args.workdir] if args.workdir else []))
        try:
            for rtt in args.rtt_ms:
                proxy, pport = link.start_proxy(f"{link.ip['server']}:{port}", rtt, os.path.join(tmp, f"proxy-{rtt}"))
                shaper = None
                try:
                    if traces:
                        shaper = netns.TraceShaper(link, up=traces[0], down=traces[1], bin_ms=50).start(
                            time.monotonic())
                    out = os.path.join(tmp, f"dev-{rtt}.json")
                    link_desc = (f"traces {pathlib.Path(args.up_trace).name}/{pathlib.Path(args.down_trace).name}"
                                 if traces else f"tbf {args.rate_mbps:g} Mbit/s both ways")
                    print(f"llm_netns: RTT {rtt:g} ms, {link_desc}: running the device in {link.ns['client']}",
                          flush=True)
                    r = link.run("client", [py, __file__, "--device", "--target", f"127.0.0.1:{pport}",
                                            "--modes", args.modes, "--max-tokens", str(args.max_tokens),
                                            "--prompt", args.prompt, "--model", args.model, "--at", str(at)]
                                 + (["--workdir", args.workdir] if args.workdir else []) + ["--out", out],
                                 timeout=1200)
                    if r.returncode != 0:
                        raise RuntimeError(f"device process failed with status {r.returncode}")
                    for row in json.load(open(out)):
                        results.append(dict(row, rtt_ms=rtt, link=link_desc))
                finally:
                    if shaper is not None:
                        shaper.stop()
                    proxy.kill()
                    proxy.wait()
        finally:
            server.terminate()
            server.wait(timeout=30)

    hdr = f"{'link':<34} {'rtt':>5} {'mode':<12} {'TTFT ms':>8} {'total ms':>9} {'dec tok/s':>9} " \
          f"{'up B':>8} {'down B':>7} {'trips':>5} {'same':>5}"
    print(hdr)
    for r in results:
        print(f"{r['link']:<34} {r['rtt_ms']:>5g} {r['mode']:<12} {r['ttft_ms']:>8.1f} {r['total_ms']:>9.1f} "
              f"{r['decode_tok_s']:>9.1f} {r['bytes_up']:>8} {r['bytes_down']:>7} {r['round_trips']:>5} "
              f"{str(r['same_as_device_only']):>5}")
    from collab.bench_io import save_json

    meta = dict(model=args.model, split_at=at, max_tokens=args.max_tokens, prompt=args.prompt,
                compute="device and server on this machine's CPU, 1 thread each", load_avg=os.getloadavg(),
                rtt="user-space delaying proxy (no netem)", shaping="tc tbf in network namespaces")
    save_json(args.out, dict(meta=meta, rows=results))
    _plot(results, args.out)
    return 0


def _plot(rows, out):
    from collab.bench_io import pyplot, save_png

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for mode in sorted({r["mode"] for r in rows}):
        rs = [r for r in rows if r["mode"] == mode]
        ax[0].plot([r["rtt_ms"] for r in rs], [r["ttft_ms"] for r in rs], "o-", label=mode)
        ax[1].plot([r["rtt_ms"] for r in rs], [r["decode_tok_s"] for r in rs], "o-", label=mode)
    ax[0].set(xlabel="RTT ms", ylabel="time to first token, ms", title="TTFT over a shaped link")
    ax[1].set(xlabel="RTT ms", ylabel="decode tok/s", title="decode speed")
    ax[0].legend()
    save_png(fig, out)


if __name__ == "__main__":
    sys.exit(main())
