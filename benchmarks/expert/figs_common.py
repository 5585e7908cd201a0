"""Reading results/coinference.json (written by coinference_run.py) for the figure scripts."""
import json
import os
import pathlib

from common import RESULTS, TAUS

RUN = pathlib.Path(os.environ.get("COLLAB_EXPERT_RUN", RESULTS / "coinference.json"))


def load():
    if not RUN.exists():
        raise SystemExit(f"{RUN} missing: run benchmarks/expert/coinference_run.py first")
    return json.loads(RUN.read_text())


def series(d, task, field):
    """Per-tau values of a timing field ('latency', 'device_j', 'system_j', 'bytes_up') per image."""
    out = []
    for tau in TAUS:
        t = d["timing"][f"{task}@{tau}"]
        out.append(per_image(t, field, d["n_stream"]))
    return out


def per_image(t, field, n):
    if field == "latency":
        return t["per_image_latency_s"]
    return t[f"total_{field}"] / n
