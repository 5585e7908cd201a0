"""collab.planner: Eq. 1, calibration interpolation, profiles, and the hierarchical search
checked against brute force over the whole configuration space."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from collab import codec, net, planner
from collab.planner import Budget, Planner, SearchSpace

from planner_cases import ar_profile, calibration, single_shot_profile


# ---------------------------------------------------------------------------------- Eq. 1
def test_outage_latency_by_hand():
    # W = 1 MHz, gamma = 10 (10 dB), R = 1 Mbit/s: R/W = 1, P_o = 1 - exp(-(2 - 1)/10) = 0.0951626
    p = planner.outage_probability(1e6, 1e6, 10.0)
    assert p == pytest.approx(1 - math.exp(-0.1))
    # ln(0.01) / ln(0.0951626) = 1.958 -> 2 transmissions; 1e6 bits at 1 Mbit/s = 1 s each
    assert planner.transmissions(0.01, p) == 2
    assert planner.outage_latency_ms(1e6, 1e6, 1e6, 10.0, 0.01, zeta_ms=3.0) == pytest.approx(2003.0)
    assert planner.db_to_linear(10) == pytest.approx(10.0)
    # eps looser than one send's outage -> still one transmission
    assert planner.transmissions(0.5, 0.1) == 1
    assert planner.transmissions(0.01, 0.0) == 1


def test_best_rate_beats_a_fine_grid():
    for W, g, eps in [(1e6, 10.0, 0.01), (20e6, 100.0, 1e-3), (5e6, 2.0, 0.1)]:
        r, n = planner.best_rate(W, g, eps)
        grid = np.geomspace(1e-4, 30, 200_000) * W
        per_bit = planner.transmissions(eps, planner.outage_probability(grid, W, g)) / grid
        assert n / r <= per_bit.min() * (1 + 1e-6)
        link = planner.OutageLink(W, g, eps)
        assert link.transfer_time(1000) == pytest.approx(8000 / r * 1000 * n)


@pytest.mark.parametrize("bad", [dict(eps=0), dict(eps=1), dict(snr=-1), dict(bandwidth_hz=0)])
def test_outage_bad_input(bad):
    kw = dict(bandwidth_hz=1e6, snr=10.0, eps=0.01)
    kw.update(bad)
    with pytest.raises(ValueError):
        planner.OutageLink(**kw)


def test_parse_links():
    l = planner.parse_link("outage:10,10,0.01")
    assert isinstance(l, planner.OutageLink) and l.bandwidth_hz == 10e6 and l.snr == pytest.approx(10)
    assert planner.parse_link("outage:10,10,0.01,5").rate_bps == 5e6
    assert planner.parse_link("fixed:8").mean_bps() == 8e6
    for bad in ("outage:1,2", "outage:a,b,c", "outage:1,1,2", "fixed:", "nope"):
        with pytest.raises(ValueError):
            planner.parse_link(bad)


# ---------------------------------------------------------------------------------- calibration
def test_calibration_interpolation_is_exact_for_piecewise_linear_tables():
    sizes = np.array([100.0, 1000.0, 10000.0])
    sp = np.array([0.0, 0.5, 0.9])
    blocks = [[1, 1], [2, 2]]
    f = lambda b, n, s: 2.0 * b + 3.0 * np.log(n) + 5.0 * s  # linear in (blocks, log n, s)
    B, N, S = np.meshgrid([2, 4], sizes, sp, indexing="ij")
    t = planner.CalibrationTable(sizes, sp, blocks, f(B, N, S), 2 * f(B, N, S))
    for n, s, b in [(100, 0, (1, 1)), (316.2, 0.25, (1, 2)), (5000, 0.7, (2, 2)), (1000, 0.9, (1, 1))]:
        assert t.encode_time_ms(n, s, b) == pytest.approx(f(sum(b), n, s))
        assert t.decode_time_ms(n, s, b) == pytest.approx(2 * f(sum(b), n, s))
    # clamped below, proportional above
    assert t.encode_time_ms(10, 0.0) == pytest.approx(f(2, 100, 0))
    assert t.encode_time_ms(20000, 0.0) == pytest.approx(2 * f(2, 10000, 0))
    v = t.encode_time_ms(np.array([100, 1000]), np.array([0.0, 0.5]), np.array([[1, 1], [2, 2]]))
    np.testing.assert_allclose(v, [f(2, 100, 0), f(4, 1000, 0.5)])


def test_calibration_roundtrip_and_bad_files(tmp_path):
    t = calibration()
    p = tmp_path / "c.json"
    t.save(p)
    t2 = planner.load_calibration(p)
    assert t2.encode_time_ms(5000, 0.3, (2, 2)) == pytest.approx(t.encode_time_ms(5000, 0.3, (2, 2)))
    d = json.loads(p.read_text())
    for mutate in (lambda d: d.pop("sizes"), lambda d: d.update(schema="x"), lambda d: d.update(sizes=[5, 1, 2, 3]),
                   lambda d: d.update(encode_ms=[[1]]), lambda d: d.update(sparsities=[0, 0.5, 1.0]),
                   lambda d: d.update(blocks=[[0, 1], [1, 1], [2, 2]]), lambda d: d.update(blocks="x"),
                   lambda d: d["encode_ms"][0][0].__setitem__(0, -1)):
        dd = json.loads(p.read_text())
        mutate(dd)
        (tmp_path / "bad.json").write_text(json.dumps(dd))
        with pytest.raises(ValueError):
            planner.load_calibration(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError):
        planner.load_calibration(tmp_path / "bad.json")


def test_measure_calibration_small():
    t = planner.measure_calibration(sizes=(512, 4096), sparsities=(0.0, 0.9), blocks=((1, 1), (2, 2)), repeats=1,
                                    progress=None)
    assert t.encode_ms.shape == (2, 2, 2) and np.all(t.encode_ms > 0) and np.all(t.decode_ms > 0)


# ---------------------------------------------------------------------------------- profiles
def test_profile_roundtrip_and_derived(tmp_path):
    prof = single_shot_profile([1, 2, 3], [(1, 8, 4), (1, 8, 4), (1, 4, 4)], [100, 200, 300], work=[50, 10, 70])
    np.testing.assert_allclose(prof.device_ms(), [0, 1, 3, 6])
    np.testing.assert_allclose(prof.server_ms(), [6, 5, 3, 0])
    ib = 3 * 16 * 16 * 4
    np.testing.assert_allclose(prof.memory_bytes(), [0, 100 + 50 + ib, 300 + 50 + ib, 600 + 70 + ib])
    p = tmp_path / "p.json"
    prof.save(p)
    again = planner.load_profile(p)
    assert again.split_shape(3) == (1, 4, 4) and again.split_shape(0) == (1, 3, 16, 16)
    ar = ar_profile([1, 1], [2, 3], [8, 8], [10, 10], [4, 4])
    ar.save(p)
    assert planner.load_profile(p).hidden(2) == 8
    # an LLM runtime may give activation bytes per token instead of hidden (fp16 rows here)
    d = ar.to_json()
    for ld in d["layers"]:
        del ld["hidden"]
        ld.update(out_dtype="float16", activation_bytes_per_token=1152)
    assert planner.Profile.from_json(d).hidden(1) == 576
    for bad in (1151, 0):
        d["layers"][0]["activation_bytes_per_token"] = bad
        with pytest.raises(ValueError):
            planner.Profile.from_json(d)
    d["layers"][0].update(hidden=10, activation_bytes_per_token=4)
    with pytest.raises(ValueError):
        planner.Profile.from_json(d)


def test_per_layer_from_prefixes():
    np.testing.assert_allclose(planner.per_layer_from_prefixes([2, 5, 4, 9]), [2, 3, 0, 4])
    for bad in ([], [1, float("nan")], [-1], [[1]]):
        with pytest.raises(ValueError):
            planner.per_layer_from_prefixes(bad)
    # an LLM runtime's AR profile built from prefix timings loads and plans
    pre = planner.per_layer_from_prefixes([0.5, 1.0, 1.6])
    dec = planner.per_layer_from_prefixes([2.0, 4.1, 6.0])
    prof = ar_profile(pre, dec, [64] * 3, [1 << 20] * 3, [256] * 3)
    plan = Planner(prof, calibration(), net.FixedRateLink(1e7), budget=Budget(deadline_ms=30),
                   space=SearchSpace(max_new_tokens=8)).search()
    assert plan.feasible and plan.w is not None


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(schema="other"), lambda d: d.update(kind="x"), lambda d: d.update(layers=[]),
    lambda d: d["layers"][0].pop("ms"), lambda d: d["layers"][0].update(ms=-1),
    lambda d: d["layers"][0].update(ms=float("nan")), lambda d: d["layers"][0].update(out_shape=[0, 3]),
    lambda d: d["layers"][0].update(weight_bytes=1.5), lambda d: d["layers"][0].update(weight_bytes=True),
    lambda d: d.update(input={"shape": "abc"}), lambda d: d["layers"].append(7),
])
def test_profile_bad_files(tmp_path, mutate):
    prof = single_shot_profile([1, 2], [(1, 8), (1, 4)], [1, 2])
    d = prof.to_json()
    mutate(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError):
        planner.load_profile(p)


# ---------------------------------------------------------------------------------- search
def _check_same(pl, start_ms=0.0):
    a, b = pl.search(start_ms), pl.brute_force(start_ms)
    assert a.key() == b.key(), (a.describe(), b.describe())
    assert a.latency_ms == pytest.approx(b.latency_ms)
    assert a.evaluated <= b.evaluated or not b.feasible
    return a


def test_single_shot_hand_case():
    # 3 layers of 10 ms; features shrink with depth; 1 Mbit/s link.
    prof = single_shot_profile([10, 10, 10], [(1, 64, 32), (1, 32, 32), (1, 16, 32)], [1000, 1000, 1000])
    cal = calibration()
    space = SearchSpace(sparsities=(0.0, 0.5, 0.9), blocks=((1, 1), (2, 2)))
    link = net.FixedRateLink(1e6)
    # a loose deadline: deepest split, no sparsity, fewest blocks
    pl = Planner(prof, cal, link, budget=Budget(deadline_ms=1e4), space=space)
    plan = _check_same(pl)
    # accuracy first: the finest blocks that fit
    assert (plan.split, plan.sparsity, plan.blocks, plan.feasible) == (3, 0.0, (2, 2), True)
    # the 2x2 frame is larger (more metadata); a deadline between the two forces Tier 1 to 1x1
    ev = pl.evaluate(3, 0.0, [(1, 1), (2, 2)])
    assert ev["bits"][1] > ev["bits"][0] and ev["latency"][1] > ev["latency"][0]
    mid = Planner(prof, cal, link, budget=Budget(deadline_ms=float(ev["latency"].mean())), space=space)
    assert _check_same(mid).key()[1:4] == (3, 0.0, (1, 1))
    fastest = dataclasses.replace(space, block_policy="fastest")
    pl = Planner(prof, cal, link, budget=Budget(deadline_ms=1e4), space=fastest)
    plan = _check_same(pl)
    assert (plan.split, plan.sparsity, plan.blocks, plan.feasible) == (3, 0.0, (1, 1), True)
    bits = codec.predict_bits((1, 16, 32), 0.0, blocks=(1, 1), qbits=(8,))
    assert plan.bits == bits
    assert plan.transfer_ms == pytest.approx(math.ceil(bits / 8) * 8 / 1e6 * 1e3)
    assert plan.device_ms == 30 and plan.server_ms == 0
    # deadline that 0 sparsity at split 3 misses but 0.5 meets (Tier 2 before Tier 3)
    need = {s: pl.evaluate(3, s, (1, 1))["latency"][0] for s in (0.0, 0.5, 0.9)}
    pl2 = Planner(prof, cal, link, budget=Budget(deadline_ms=(need[0.0] + need[0.5]) / 2), space=space)
    plan2 = _check_same(pl2)
    assert (plan2.split, plan2.sparsity) == (3, 0.5)
    # memory that only fits 2 layers (Tier 3 retreat); the frame buffer counts too (m_buf)
    heavy = single_shot_profile([10, 10, 10], [(1, 64, 32), (1, 32, 32), (1, 16, 32)], [1000, 1000, 100000])
    m2 = Planner(heavy, cal, link, space=space).evaluate(2, 0.0, (1, 1))["memory"][0]
    pl3 = Planner(heavy, cal, link, budget=Budget(deadline_ms=1e4, memory_bytes=m2), space=space)
    plan3 = _check_same(pl3)
    assert plan3.split == 2 and plan3.sparsity == 0.0
    # impossible deadline: fallback, not feasible
    pl4 = Planner(prof, cal, link, budget=Budget(deadline_ms=1.0), space=space)
    plan4 = _check_same(pl4)
    assert not plan4.feasible
    assert "NOT FEASIBLE" in plan4.describe()


def _rand_shape(draw):
    n = draw(st.integers(1, 24))
    d = draw(st.sampled_from([4, 8, 16, 32]))
    return (1, n, d)


@st.composite
def single_shot_cases(draw):
    L = draw(st.integers(1, 5))
    ms = draw(st.lists(st.floats(0, 20), min_size=L, max_size=L))
    shapes = [_rand_shape(draw) for _ in range(L)]
    weights = draw(st.lists(st.integers(0, 5000), min_size=L, max_size=L))
    work = draw(st.lists(st.integers(0, 3000), min_size=L, max_size=L))
    prof = single_shot_profile(ms, shapes, weights, work, input_shape=(1, 3, draw(st.integers(1, 8)), 8))
    seed = draw(st.integers(0, 2**31))
    cal = calibration(rng=np.random.default_rng(seed))
    sparsities = draw(st.lists(st.sampled_from([0.0, 0.3, 0.5, 0.75, 0.9, 0.97]), min_size=1, max_size=5, unique=True))
    blocks = draw(st.lists(st.sampled_from([(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (4, 4)]), min_size=1, max_size=4,
                           unique=True))
    qbits = draw(st.sampled_from([(8,), (8, 4), (6, 4, 2)]))
    kind = draw(st.sampled_from(["fixed", "trace", "outage"]))
    if kind == "fixed":
        link = net.FixedRateLink(draw(st.floats(1e4, 1e8)))
    elif kind == "trace":
        gaps = draw(st.lists(st.integers(0, 6), min_size=1, max_size=20))
        ts = np.cumsum([1] + gaps)
        link = net.Trace(ts)
    else:
        link = planner.OutageLink(draw(st.floats(1e5, 1e7)), draw(st.floats(0.5, 1000)),
                                  draw(st.sampled_from([1e-3, 0.01, 0.1])))
    budget = Budget(deadline_ms=draw(st.floats(0, 200)), memory_bytes=draw(st.floats(0, 30000)),
                    include_server=draw(st.booleans()))
    space = SearchSpace(sparsities=tuple(sparsities), blocks=tuple(blocks), qbits=qbits,
                        allow_raw=draw(st.booleans()), block_policy=draw(st.sampled_from(["finest", "fastest"])))
    pl = Planner(prof, cal, link, rtt_ms=draw(st.floats(0, 30)), budget=budget, space=space,
                 server_speedup=draw(st.floats(0.5, 8)))
    return pl, draw(st.floats(0, 100))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(single_shot_cases())
def test_single_shot_search_matches_brute_force(case):
    pl, start = case
    _check_same(pl, start)


@st.composite
def ar_cases(draw):
    L = draw(st.integers(1, 4))
    fl = lambda hi: st.lists(st.floats(0, hi), min_size=L, max_size=L)
    prof = ar_profile(draw(fl(3)), draw(fl(5)), draw(st.lists(st.sampled_from([8, 16, 32]), min_size=L, max_size=L)),
                      draw(st.lists(st.integers(0, 5000), min_size=L, max_size=L)),
                      draw(st.lists(st.integers(0, 100), min_size=L, max_size=L)))
    cal = calibration(rng=np.random.default_rng(draw(st.integers(0, 2**31))))
    space = SearchSpace(sparsities=tuple(draw(st.lists(st.sampled_from([0.0, 0.5, 0.8, 0.95]), min_size=1, max_size=3,
                                                        unique=True))),
                        blocks=tuple(draw(st.lists(st.sampled_from([(1, 1), (2, 2), (1, 3)]), min_size=1, max_size=2,
                                                   unique=True))),
                        max_new_tokens=draw(st.integers(1, 8)), prompt_tokens=draw(st.integers(0, 6)),
                        block_policy=draw(st.sampled_from(["finest", "fastest"])))
    link = net.FixedRateLink(draw(st.floats(1e4, 1e7))) if draw(st.booleans()) else net.Trace(
        np.cumsum([1] + draw(st.lists(st.integers(0, 5), min_size=1, max_size=10))))
    budget = Budget(deadline_ms=draw(st.floats(0, 100)), memory_bytes=draw(st.floats(0, 20000)),
                    ar_bits=draw(st.floats(0, 20000)))
    return Planner(prof, cal, link, rtt_ms=draw(st.floats(0, 10)), budget=budget, space=space), draw(st.floats(0, 50))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ar_cases())
def test_autoregressive_search_matches_brute_force(case):
    pl, start = case
    _check_same(pl, start)


def test_autoregressive_hand_case():
    # 2 layers: decode 5 ms each, prefill 1 ms/token; hidden 16; fast link.
    prof = ar_profile([1, 1], [5, 5], [16, 16], [100, 100], [10, 10])
    cal = calibration()
    space = SearchSpace(sparsities=(0.0, 0.5), blocks=((1, 1),), max_new_tokens=10, prompt_tokens=4)
    link = net.FixedRateLink(1e9)
    pl = Planner(prof, cal, link, budget=Budget(deadline_ms=60.0), space=space)
    plan = _check_same(pl)
    ev = pl.evaluate(plan.split, plan.sparsity, plan.blocks, plan.w)
    # Eq. 5: 4 prompt tokens x 2 ms + (w-1) x 10 ms + l x 5 ms + codec + transfer
    assert ev["device"][0] == pytest.approx(8 + (plan.w - 1) * 10 + plan.split * 5)
    # w = 5 needs 8 + 40 + 10 = 58 ms of device time plus codec+transfer > 60? then (5, 1) or (4, 2)
    assert plan.feasible and plan.latency_ms <= 60
    better = pl.evaluate(plan.split + 1 if plan.split < 2 else 1, 0.5, (1, 1),
                         plan.w if plan.split < 2 else plan.w + 1)
    assert not better["feasible"][0]
    # M_ar: cap the offloaded bits at what 4 + 2 rows need without sparsity -> w = 2
    cap = planner.Budget(deadline_ms=60.0, ar_bits=codec.predict_bits((4 + 2, 16), 0.0, blocks=(1, 1)))
    dense = SearchSpace(sparsities=(0.0,), blocks=((1, 1),), max_new_tokens=10, prompt_tokens=4)
    plan2 = _check_same(Planner(prof, cal, link, budget=cap, space=dense))
    assert plan2.w == 2 and plan2.bits <= cap.ar_bits


def test_server_profile_and_speedup():
    prof = single_shot_profile([4, 4, 4], [(1, 8, 8)] * 3, [1, 1, 1])
    srv = single_shot_profile([1, 2, 3], [(1, 8, 8)] * 3, [1, 1, 1])
    link = net.FixedRateLink(1e9)
    a = Planner(prof, calibration(), link, server_profile=srv).evaluate([0, 1, 2, 3], 0.0, (1, 1))
    np.testing.assert_allclose(a["server"], [6, 5, 3, 0])
    b = Planner(prof, calibration(), link, server_speedup=4).evaluate([0, 1, 2, 3], 0.0, (1, 1))
    np.testing.assert_allclose(b["server"], [3, 2, 1, 0])
    # include_server puts decode + server in the constrained latency
    c = Planner(prof, calibration(), link, budget=Budget(include_server=True), server_profile=srv).evaluate(
        1, 0.0, (1, 1))
    assert c["latency"][0] == pytest.approx(c["device"][0] + c["encode"][0] + c["transfer"][0] + c["decode"][0] + 5)
    with pytest.raises(ValueError):
        Planner(prof, calibration(), link, server_profile=single_shot_profile([1], [(1, 8)], [1]))
    with pytest.raises(ValueError):
        Planner(prof, calibration(), link, server_speedup=0)


def test_planner_bad_arguments():
    prof = single_shot_profile([1], [(1, 4)], [1])
    with pytest.raises(ValueError):
        Planner(prof, calibration(), object())
    with pytest.raises(ValueError):
        Planner(prof, calibration(), net.FixedRateLink(1e6), space=SearchSpace(splits=(5,)))
    for bad in (dict(sparsities=(1.0,)), dict(blocks=((0, 1),)), dict(qbits=(0,)), dict(sparsities=()),
                dict(block_policy="best")):
        with pytest.raises(ValueError):
            SearchSpace(**bad)
    with pytest.raises(ValueError):
        Budget(deadline_ms=-1)


# ---------------------------------------------------------------------------------- re-planning
def test_replanner_reacts_to_a_bandwidth_drop():
    # Features shrink with depth; deep splits are expensive on the device. With a fast link the
    # plan is deep with no sparsity; after the trace drops to 1/20 the plan must change.
    prof = single_shot_profile([2, 2, 2, 2], [(1, 197, 384), (1, 197, 384), (1, 197, 384), (1, 100, 384)],
                               [10, 10, 10, 10], input_shape=(1, 3, 64, 64))
    cal = calibration()
    space = SearchSpace(sparsities=(0.0, 0.5, 0.75, 0.9, 0.95), blocks=((1, 1), (2, 2)))
    pl = Planner(prof, cal, net.FixedRateLink(50e6), rtt_ms=5, budget=Budget(deadline_ms=25), space=space)
    fast, slow = 40, 2  # packets per ms
    ts = np.concatenate([np.repeat(np.arange(1, 3001), fast), np.repeat(np.arange(3001, 6001, 1), slow)])
    trace = net.Trace(ts)
    rp = planner.Replanner(pl, alpha=0.5, initial_bps=trace.bps_between(0, 1000))
    t, seen = 0.0, []
    while t < 5900:
        plan = rp.plan(t)
        nbytes = math.ceil(plan.bits / 8)
        start = t + plan.device_ms + plan.encode_ms
        ms = trace.transfer_time(nbytes, start, rtt_ms=5)
        rp.observe(nbytes, ms / 1000)
        seen.append((t, plan.split, plan.sparsity, plan.feasible))
        t = start + ms + 20
    # the transport's timings dict feeds it the same way
    est = rp.estimator.estimate_bps
    rp.observe_timings(30_000, {"compute": 0.01, "transfer": 30_000 * 8 / est + rp.estimator.rtt_s})
    assert rp.estimator.estimate_bps == pytest.approx(est)
    with pytest.raises(ValueError):
        rp.observe_timings(1, {"compute": 1.0})
    before = {(s, sp) for tt, s, sp, f in seen if 500 < tt < 2900}
    after = {(s, sp) for tt, s, sp, f in seen if tt > 4000}
    assert before and after and before.isdisjoint(after)
    assert max(sp for _, sp in after) > max(sp for _, sp in before) or min(s for s, _ in after) < min(
        s for s, _ in before)



def _real_trace():
    from pathlib import Path

    for root in (Path(__file__).resolve().parents[1].parent / "shared" / "traces", Path("/work/shared/traces")):
        p = root / "ATT-LTE-driving-2016.up"
        if p.exists():
            return p
    return None


def test_replanner_on_a_real_trace_moves_split_and_sparsity_with_bandwidth():
    path = _real_trace()
    if path is None:
        pytest.skip("real trace ATT-LTE-driving-2016.up not found in ../shared/traces")
    trace = net.load_trace(path)
    # DINOv2-S-like shapes: 13 pieces of 40 ms, features (1, 257, 384); D leaves ~100 ms at split 10.
    prof = single_shot_profile([40.0] * 13, [(1, 257, 384)] * 13, [7 << 20] * 13, input_shape=(1, 3, 224, 224))
    pl = Planner(prof, calibration(), net.FixedRateLink(trace.mean_bps()), rtt_ms=40,
                 budget=Budget(deadline_ms=500), space=SearchSpace())
    rp = planner.Replanner(pl, alpha=0.3, initial_bps=trace.mean_bps(), safety=0.8)
    rows = []
    for k in range(240):  # two minutes, one request every 500 ms
        t = 500.0 * k
        plan = rp.plan(t)
        nbytes = math.ceil(plan.bits / 8)
        ms = trace.transfer_time(nbytes, t + plan.device_ms + plan.encode_ms, rtt_ms=40)
        rp.observe(nbytes, ms / 1000, rtt_s=0.04)
        rows.append((trace.bps_between(max(0.0, t - 2000), t + 1), plan.split, plan.sparsity or 0.0))
    bw = np.array([r[0] for r in rows])
    split = np.array([r[1] for r in rows])
    sp = np.array([r[2] for r in rows])
    assert len(set(split)) > 1 and len(set(sp)) > 1
    low, high = bw <= np.percentile(bw, 25), bw >= np.percentile(bw, 75)
    # when the trace drops, plans retreat the split and/or compress harder
    assert split[low].mean() < split[high].mean()
    assert split[low].min() < split[high].min() or sp[low].mean() > sp[high].mean()


def test_search_matches_brute_force_on_the_measured_dinov2_profile():
    from pathlib import Path

    res = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    if not (res / "vit_s_profile.json").exists() or not (res / "codec_calibration.json").exists():
        pytest.skip("benchmarks/results/vit_s_profile.json or codec_calibration.json not present")
    prof = planner.load_profile(res / "vit_s_profile.json")
    cal = planner.load_calibration(res / "codec_calibration.json")
    links = [net.FixedRateLink(1e6), net.FixedRateLink(20e6), planner.OutageLink(5e6, 10.0, 0.01)]
    trace = _real_trace()
    if trace is not None:
        links.append(net.load_trace(trace))
    total = float(prof.device_ms()[-1])
    for link in links:
        for frac in (0.05, 0.3, 0.6, 0.9, 1.2):
            for mem in (math.inf, 40 * 2**20):
                pl = Planner(prof, cal, link, rtt_ms=30, budget=Budget(deadline_ms=frac * total, memory_bytes=mem))
                _check_same(pl, start_ms=12_345.0)


def test_planner_imports_no_model_package():
    # the planner receives profiles; the profilers live with their models (collab.vit.profile,
    # collab.llm.profile) and only the `collab profile` command loads them; `collab plan` loads
    # a model kind's own planner (collab.expert.planner) only for a profile of that kind
    import subprocess
    import sys

    code = ("import sys, collab.planner, collab.planner.cli; "
            "bad = sorted(m for m in sys.modules if m.startswith(('collab.llm', 'collab.vit', 'collab.expert'))); "
            "assert not bad, bad; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
