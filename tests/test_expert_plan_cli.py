"""`collab plan --profile P.json` on an expert planner profile: tau for a latency or accuracy target."""
from __future__ import annotations

import json

import numpy as np
import pytest

from collab import cli
from collab.expert.planner import ExpertPlanner, OffloadCurve, Profile


@pytest.fixture()
def expert(tmp_path, rng):
    n = 300
    conf = rng.uniform(0.2, 1.0, n)
    y = rng.integers(0, 10, n)
    edge = np.where(conf > 0.6, y, (y + 1) % 10)          # the edge model is wrong when unconfident
    expert = np.where(rng.uniform(size=n) < 0.85, y, (y + 2) % 10)
    pl = ExpertPlanner(Profile({1: 0.004, 8: 0.008, 32: 0.02}), Profile({1: 0.003, 32: 0.03}),
                       Profile({1: 0.002, 32: 0.012}), OffloadCurve(conf, edge, expert, y), 32)
    path = tmp_path / "expert.json"
    path.write_text(pl.to_json())
    return ExpertPlanner.from_json(path.read_text()), str(path)   # what the CLI sees (conf rounded)


def _plan_json(capsys, argv):
    assert cli.main(["plan", "--json"] + argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "expert"
    return out["choice"]


def test_plan_expert_latency_and_accuracy_targets(expert, capsys):
    pl, path = expert
    fastest, slowest = pl.predict(0.0)["latency_s"], pl.predict(1.0)["latency_s"]
    assert slowest > fastest
    for frac in (0.1, 0.5, 0.9):
        ms = repr((fastest + frac * (slowest - fastest)) * 1e3)
        target = float(ms) / 1e3                      # the same division the CLI does
        want = pl.choose(latency_s=target)
        got = _plan_json(capsys, ["--profile", path, "--deadline-ms", ms])
        assert got == pytest.approx(want)
        assert got["latency_s"] <= target
    accs = [pl.predict(t)["accuracy"] for t in np.round(np.arange(0, 1.0001, 0.01), 2)]
    for acc in (min(accs), float(np.median(accs)), max(accs)):
        want = pl.choose(accuracy=acc)
        got = _plan_json(capsys, ["--profile", path, "--min-accuracy", repr(acc)])
        assert got == pytest.approx(want)
        assert got["accuracy"] >= acc
    # the text form names tau and its predictions
    want = pl.choose(accuracy=float(np.median(accs)))
    assert cli.main(["plan", "--profile", path, "--min-accuracy", repr(float(np.median(accs)))]) == 0
    out = capsys.readouterr().out
    assert f"tau {want['tau']:g}:" in out and f"offload fraction {want['alpha']:.3f}" in out
    assert f"{want['latency_s'] * 1e3:.2f} ms per batch" in out and f"accuracy {want['accuracy']:.4f}" in out


@pytest.mark.parametrize("argv, message", [
    ([], "exactly one target"),
    (["--deadline-ms", "50", "--min-accuracy", "0.5"], "exactly one target"),
    (["--deadline-ms", "0.001"], "no tau meets"),
    (["--min-accuracy", "1.01"], "--min-accuracy must be in [0, 1]"),
    (["--deadline-ms", "-5"], "--deadline-ms must be > 0"),
])
def test_plan_expert_bad_targets(expert, capsys, argv, message):
    _, path = expert
    assert cli.main(["plan", "--profile", path] + argv) == 2
    err = capsys.readouterr().err
    assert "collab: error:" in err and message in err


def test_plan_expert_unreachable_accuracy(expert, capsys):
    pl, path = expert
    best = max(pl.predict(t)["accuracy"] for t in np.round(np.arange(0, 1.0001, 0.01), 2))
    if best >= 1.0:
        pytest.skip("the synthetic curve reaches accuracy 1; no unreachable target below 1")
    assert cli.main(["plan", "--profile", path, "--min-accuracy", repr((best + 1.0) / 2)]) == 2
    assert "no tau reaches accuracy" in capsys.readouterr().err


def test_plan_expert_bad_profile(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "expert", "batch": 32, "t_edge": {"1": 0.01}}))
    assert cli.main(["plan", "--profile", str(bad), "--deadline-ms", "50"]) == 2
    assert "bad planner profile" in capsys.readouterr().err


def test_plan_split_profile_needs_calibration_and_link(tmp_path, capsys):
    from planner_cases import calibration, single_shot_profile

    pp, cp = tmp_path / "p.json", tmp_path / "c.json"
    single_shot_profile([5, 5], [(1, 8), (1, 4)], [1 << 10] * 2).save(pp)
    calibration().save(cp)
    assert cli.main(["plan", "--profile", str(pp), "--link", "fixed:10"]) == 2
    assert "--calibration is required" in capsys.readouterr().err
    assert cli.main(["plan", "--profile", str(pp), "--calibration", str(cp)]) == 2
    assert "--link is required" in capsys.readouterr().err
    assert cli.main(["plan", "--profile", str(pp), "--calibration", str(cp), "--link", "fixed:10",
                     "--min-accuracy", "0.9"]) == 2
    assert "--min-accuracy applies to expert profiles only" in capsys.readouterr().err


def test_plan_help_names_expert_profiles(capsys):
    with pytest.raises(SystemExit):
        cli.main(["plan", "--help"])
    out = capsys.readouterr().out
    assert "--min-accuracy" in out and "expert" in out and "tau" in out


def test_plan_on_the_committed_measured_profile(capsys):
    """models/expert/planner-profile.json: measured by `collab expert plan --save` against a served
    library; every deadline gets the most accurate tau that fits, the loosest deadline the best tau."""
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "models" / "expert" / "planner-profile.json"
    if not path.exists():
        pytest.skip("no committed expert planner profile")
    pl = ExpertPlanner.from_json(path.read_text())
    taus = np.round(np.arange(0.0, 1.0001, 0.01), 2)
    preds = [pl.predict(t) for t in taus]
    lo, hi = min(p["latency_s"] for p in preds), max(p["latency_s"] for p in preds)
    for frac in (0.0, 0.5, 1.0):
        ms = (lo + frac * (hi - lo)) * 1e3 * (1 + 1e-9)
        got = _plan_json(capsys, ["--profile", str(path), "--deadline-ms", repr(ms)])
        fits = [p for p in preds if p["latency_s"] <= ms / 1e3]
        assert got["accuracy"] == max(p["accuracy"] for p in fits)
        assert got["latency_s"] <= ms / 1e3
    best = max(p["accuracy"] for p in preds)
    got = _plan_json(capsys, ["--profile", str(path), "--min-accuracy", repr(best)])
    assert got["accuracy"] >= best and got["latency_s"] == min(p["latency_s"] for p in preds if p["accuracy"] >= best)
