"""Helpers shared by the benchmark scripts under benchmarks/: JSON results and a headless pyplot."""
from __future__ import annotations

import json
import pathlib


def save_json(path, obj) -> pathlib.Path:
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(obj, indent=1))
    print(f"wrote {out}")
    return out


def pyplot():
    """matplotlib.pyplot with the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_png(fig, path, dpi=110) -> pathlib.Path:
    """Lay out `fig` and write it next to the JSON result `path` (same name, .png)."""
    png = pathlib.Path(path).with_suffix(".png")
    fig.tight_layout()
    fig.savefig(png, dpi=dpi)
    print(f"wrote {png}")
    return png


def pin_device_core() -> tuple[int, int]:
    """(device core, server core): pins this process (the device) to the first allowed core and
    returns the second for the server process (taskset -c). Benchmarks that time a device and
    a server on one machine keep them off each other's core this way."""
    import os

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("needs two cores (device and server pinned apart)")
    os.sched_setaffinity(0, {cores[0]})
    return cores[0], cores[1]



_DEVICE_GROUP = None  # the parent group's directory once limit_device_cpu capped this process


def server_preexec(cores=None):
    """preexec_fn for a benchmark's server-side child process: pinned to ``cores`` and, when the
    device (this process) is CPU-capped by limit_device_cpu, moved out of the device's cap
    (a child inherits its parent's cgroup)."""
    def f():
        import os
        from pathlib import Path

        if cores:
            os.sched_setaffinity(0, cores)
        if _DEVICE_GROUP is not None:
            (Path(_DEVICE_GROUP) / "cgroup.procs").write_text(str(os.getpid()))
    return f


def limit_device_cpu(fraction: float | None) -> str:
    """Emulate a slower device: cap this process (and the threads it starts) at ``fraction`` of
    one core with a CPU-bandwidth cgroup (cgroup v1 cpu.cfs_quota_us, or v2 cpu.max), so a
    benchmark on one machine can show a device slower than its server (a phone against a GPU
    box) instead of the same CPU on both sides. None or 1: no cap. Returns a description for
    the results; needs write access to the cgroup filesystem (root in a container), else it
    stops the benchmark with a clear message rather than running unthrottled. Start server
    processes with preexec_fn=server_preexec(...) so they are not capped with it."""
    import os
    from pathlib import Path

    if fraction is None or fraction >= 1.0:
        return "device not throttled"
    if not 0.01 <= fraction < 1.0:
        raise SystemExit(f"--device-cpu must be in [0.01, 1], got {fraction}")
    period = 100_000
    quota = int(period * fraction)
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
    name = f"collab-bench-device-{os.getpid()}"
    try:
        if (v1 / "cpu.cfs_quota_us").exists():
            g = v1 / name
            g.mkdir(exist_ok=True)
            (g / "cpu.cfs_period_us").write_text(str(period))
            (g / "cpu.cfs_quota_us").write_text(str(quota))
        elif (v2 / "cgroup.controllers").exists():
            g = v2 / name
            g.mkdir(exist_ok=True)
            (g / "cpu.max").write_text(f"{quota} {period}")
        else:
            raise OSError("no cgroup cpu controller found")
        (g / "cgroup.procs").write_text(str(os.getpid()))  # the whole process (v1 and v2); children inherit
    except OSError as e:
        raise SystemExit(f"cannot throttle the device to {fraction:g} of a core ({e}); run as root or drop "
                         "--device-cpu") from None
    import atexit

    global _DEVICE_GROUP
    _DEVICE_GROUP = str(g.parent)

    def release():  # back to the parent group, then remove the emptied one
        try:
            (g.parent / "cgroup.procs").write_text(str(os.getpid()))
            g.rmdir()
        except OSError:
            pass

    atexit.register(release)
    return f"device capped at {fraction:g} of one core (cgroup CPU quota {quota}/{period} us)"
