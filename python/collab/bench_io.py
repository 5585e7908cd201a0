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

