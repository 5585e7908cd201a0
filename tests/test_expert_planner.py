"""Planner (tau for a target from alpha(tau) and measured profiles) and the energy model."""
import numpy as np
import pytest

from collab.errors import InvalidArgument
from collab.expert import energy
from collab.expert.planner import ExpertPlanner, OffloadCurve, Profile


def test_profile_interpolates_measured_points():
    p = Profile({1: 0.010, 8: 0.020, 32: 0.050})
    assert p(1) == pytest.approx(0.010) and p(8) == pytest.approx(0.020)
    assert p(20) == pytest.approx(0.035)          # linear between 8 and 32
    assert p(64) == pytest.approx(0.050 + 0.030 / 24 * 32)  # slope of the last segment
    assert p(0) == 0.0
    with pytest.raises(InvalidArgument):
        Profile({0: 1.0})
    with pytest.raises(InvalidArgument):
        Profile({})


def _curve(rng, n=400):
    conf = rng.uniform(0.2, 1.0, n)
    y = rng.integers(0, 10, n)
    edge = np.where(conf > 0.6, y, (y + 1) % 10)       # edge wrong on its unconfident samples
    expert = np.where(rng.uniform(size=n) < 0.8, y, (y + 2) % 10)
    return OffloadCurve(conf, edge, expert, y)


def test_curve_alpha_and_accuracy_match_direct_counts(rng):
    c = _curve(rng)
    for tau in (0.0, 0.5, 0.8, 1.0):
        assert c.alpha(tau) == pytest.approx(np.mean(c.conf < tau))
        final = np.where(c.conf >= tau, c.edge_pred, c.expert_pred)
        assert c.accuracy(tau) == pytest.approx(np.mean(final == c.labels))
    assert c.alpha(0.0) == 0.0 and c.alpha(1.0) == 1.0


def test_choose_meets_targets(rng):
    c = _curve(rng)
    pl = ExpertPlanner(Profile({1: 0.01, 32: 0.02}), Profile({1: 0.005, 32: 0.03}), Profile({1: 0.002, 32: 0.01}), c, 32)
    taus = np.round(np.arange(0, 1.0001, 0.01), 2)
    preds = [pl.predict(t) for t in taus]
    for target in (0.025, 0.04, 0.06):
        ch = pl.choose(latency_s=target)
        assert ch["latency_s"] <= target
        assert ch["accuracy"] == max(p["accuracy"] for p in preds if p["latency_s"] <= target)
    acc_t = np.median([p["accuracy"] for p in preds])
    ch = pl.choose(accuracy=acc_t)
    assert ch["accuracy"] >= acc_t
    assert ch["latency_s"] == min(p["latency_s"] for p in preds if p["accuracy"] >= acc_t)
    with pytest.raises(InvalidArgument):
        pl.choose(latency_s=0.001)
    with pytest.raises(InvalidArgument):
        pl.choose(accuracy=1.01)
    with pytest.raises(InvalidArgument):
        pl.choose()
    back = ExpertPlanner.from_json(pl.to_json())
    assert back.predict(0.7) == pytest.approx(pl.predict(0.7))
    with pytest.raises(InvalidArgument):
        ExpertPlanner.from_json('{"kind": "llm"}')


def test_energy_model():
    dev, radio = energy.profile("orin-nano"), energy.profile("wifi", energy.RADIOS)
    e = energy.device_energy(dev, radio, compute_s=0.1, wait_s=0.2, bytes_up=1000, bytes_down=40)
    assert e == pytest.approx(10.0 * 0.1 + 3.5 * 0.2 + 1000 * 283.17e-9 * 8 + 40 * 137.01e-9 * 8)
    with pytest.raises(InvalidArgument):
        energy.device_energy(dev, radio, compute_s=-1, wait_s=0, bytes_up=0, bytes_down=0)
    with pytest.raises(InvalidArgument):
        energy.profile("toaster")
