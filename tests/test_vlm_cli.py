"""`collab vlm ask --json` end to end: a server process, the split over gRPC, one JSON line per
image, a corrupt image reported as an error line (no crash). Random projector: the answers
are not checked, the plumbing is."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from _llm_common import require_llama, smollm2_or_skip


@pytest.mark.slow
def test_ask_json(tmp_path):
    require_llama()
    smollm2_or_skip()
    pytest.importorskip("grpc")
    pytest.importorskip("onnx")
    from PIL import Image

    from collab.vlm.mmproj import Projector
    from collab.vlm.split import vision_available
    from collab.vlm.train import save_projector

    if not vision_available():
        pytest.skip("collab was built without libmtmd")
    proj = tmp_path / "p.npz"
    save_projector(str(proj), Projector.random(384, 576, seed=0, scale=0.3))
    good = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "b.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    r = subprocess.run([sys.executable, "-m", "collab.cli", "vlm", "ask", "--json", "--projector", str(proj),
                        "--max-tokens", "3", "--question", "What is this item?", str(good), str(bad)],
                       capture_output=True, text=True, timeout=600)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert r.returncode == 1, r.stderr[-2000:]  # one image failed
    assert [x["image"] for x in lines] == [str(good), str(bad)]
    assert isinstance(lines[0]["answer"], str) and lines[0]["bytes_up"] > 64 * 576 * 4 and lines[0]["ttft_ms"] > 0
    assert "cannot decode" in lines[1]["error"]


@pytest.mark.slow
def test_ask_native_equals_python_device(tmp_path):
    """`collab vlm ask --native` (the one-call C API as the device) gives the Python device's
    answers and bytes: the shipped projector, the trained image codec at 1/8 (int8 codes),
    kv-handoff over gRPC to a `collab vlm serve` process."""
    require_llama()
    smollm2_or_skip()
    pytest.importorskip("grpc")
    pytest.importorskip("onnx")
    from PIL import Image

    from collab.vlm.native import native_device_available

    if not native_device_available():
        pytest.skip("collab was built without libmtmd")
    paths = []
    for i, shape in enumerate([(28, 28), (40, 30)]):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, shape, dtype=np.uint8)).save(p)
        paths.append(str(p))
    out = []
    for extra in ([], ["--native"]):
        r = subprocess.run([sys.executable, "-m", "collab.cli", "vlm", "ask", "--json", "--image-codec", "8",
                            "--code-dtype", "int8", "--mode", "kv-handoff", "--max-tokens", "4", "--threads", "1",
                            "--question", "What is this item?", *extra, *paths],
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
        out.append([json.loads(x) for x in r.stdout.splitlines() if x.strip()])
    py, nat = out
    assert [x["answer"] for x in nat] == [x["answer"] for x in py]
    assert [x["bytes_up"] for x in nat] == [x["bytes_up"] for x in py]


@pytest.mark.parametrize("args, what", [(["ask", "--threads", "0", "--question", "q", "a.png"], "--threads"),
                                        (["ask", "--native", "--max-tokens", "0", "--question", "q", "a.png"],
                                         "--max-tokens"),
                                        (["demo", "--at", "0"], "--at"),
                                        (["serve", "--threads", "0"], "--threads")])
def test_bad_numbers_refused_before_anything_starts(args, what):
    r = subprocess.run([sys.executable, "-m", "collab.cli", "vlm", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and what in r.stderr and "Traceback" not in r.stderr, r.stderr[-1000:]
