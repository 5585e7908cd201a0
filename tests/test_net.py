"""collab.net: mahimahi traces, the transfer simulator, bandwidth views and the EWMA estimator."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from collab import net
from collab.errors import InvalidArgument

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
if not TRACES.is_dir():
    TRACES = Path("/work/shared/traces")


def brute_delivery(ts, nbytes, start, packet=1500):
    """Step through opportunities one by one (looping the trace as mahimahi does); bytes handed
    over at `start` use opportunities after floor(start) (mahimahi's rationalize-then-enqueue)."""
    packets = math.ceil(nbytes / packet)
    if packets == 0:
        return float(start)
    period = ts[-1]
    loop = 0
    while True:
        for t in ts:
            when = t + loop * period
            if when > math.floor(start):
                packets -= 1
                if packets == 0:
                    return float(when)
        loop += 1


# ts = 1,1,3,5 -> opportunities 1,1,3,5 | 6,6,8,10 | 11,11,13,15 | ...
TINY = "1\n1\n3\n5\n"
HAND = [  # (bytes, start ms, expected transfer ms without RTT), computed by hand; usable = after floor(start)
    (1500, 0, 1), (3000, 0, 1), (4500, 0, 3), (1, 1, 2), (1, 1.5, 1.5), (1500, 5, 1), (3000, 5, 1),
    (7501, 4, 7), (1, 5.5, 0.5), (3000, 10, 1), (0, 7, 0), (6000 * 3, 0, 15),
]


@pytest.mark.parametrize("nbytes,start,expected", HAND)
def test_tiny_trace_by_hand(nbytes, start, expected):
    tr = net.parse_trace(TINY)
    assert tr.period_ms == 5 and tr.opportunities == 4
    assert net.transfer_time(nbytes, start, tr) == pytest.approx(expected)
    assert net.transfer_time(nbytes, start, tr, rtt_ms=40) == pytest.approx(expected + 40)


def test_tiny_trace_vectorised_matches_scalar():
    tr = net.parse_trace(TINY)
    b = np.array([h[0] for h in HAND])
    s = np.array([h[1] for h in HAND], dtype=float)
    np.testing.assert_allclose(tr.transfer_time(b, s), [h[2] for h in HAND])


def test_trace_starting_at_zero_repeats_boundary_opportunity():
    # mahimahi: loop 0 ends with "2" and loop 1 starts with 0 + 2: two opportunities at t=2.
    tr = net.parse_trace("0\n2\n")
    assert tr.delivery_times(3000, 1) == 2
    assert tr.delivery_times(4500, 1) == 4
    assert tr.delivery_times(3000, 2) == 4  # the ones at 2 are gone by the time bytes arrive at 2
    assert tr.delivery_times(1500, 0) == 2


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.integers(0, 7), min_size=1, max_size=30), first=st.integers(0, 5),
       nbytes=st.integers(0, 200_000), start=st.floats(0, 400, allow_nan=False), packet=st.sampled_from([1500, 1000]))
def test_simulator_matches_brute_force_stepping(gaps, first, nbytes, start, packet):
    ts = list(np.cumsum([first] + gaps))
    if ts[-1] == 0:
        ts[-1] = 1
    tr = net.Trace(np.array(ts), packet_bytes=packet)
    assert tr.delivery_times(nbytes, start) == brute_delivery(ts, nbytes, start, packet)


def brute_fifo(ts, sizes, starts, packet=1500):
    """Step opportunity by opportunity; the head-of-line transfer takes each one it may use
    (an opportunity before its start is lost: later transfers start later still)."""
    period, out, loop, k = ts[-1], [], 0, 0
    left = math.ceil(sizes[0] / packet)
    while True:
        for t in ts:
            when = t + loop * period
            if when > math.floor(starts[k]):
                left -= 1
                if left == 0:
                    out.append(float(when))
                    k += 1
                    if k == len(sizes):
                        return out
                    left = math.ceil(sizes[k] / packet)
        loop += 1


@settings(max_examples=150, deadline=None)
@given(gaps=st.lists(st.integers(0, 5), min_size=1, max_size=15), sizes=st.lists(st.integers(1, 9000), min_size=1,
       max_size=6), steps=st.lists(st.floats(0, 20), min_size=6, max_size=6))
def test_fifo_transfers_match_stepping(gaps, sizes, steps):
    ts = list(np.cumsum([1] + gaps))
    starts = list(np.cumsum(steps[: len(sizes)]))
    tr = net.Trace(np.array(ts))
    np.testing.assert_array_equal(tr.fifo_delivery_times(sizes, starts), brute_fifo(ts, sizes, starts))
    # alone, each transfer is never later than when it has to queue
    alone = tr.delivery_times(np.array(sizes), np.array(starts))
    assert np.all(alone <= tr.fifo_delivery_times(sizes, starts))
    with pytest.raises(ValueError):
        tr.fifo_delivery_times([1, 1], [5, 1])
    assert tr.fifo_delivery_times([0], [3.5])[0] == 3.5


def test_simulator_vectorised_random_against_brute_force():
    rng = np.random.default_rng(1)
    ts = np.sort(rng.integers(0, 50, size=40))
    ts[-1] = max(ts[-1], 1)
    tr = net.Trace(ts)
    b = rng.integers(0, 100_000, size=300)
    s = rng.uniform(0, 500, size=300)
    got = tr.delivery_times(b, s)
    want = [brute_delivery(list(ts), int(x), float(y)) for x, y in zip(b, s)]
    np.testing.assert_array_equal(got, want)


def test_fixed_rate_link_and_equivalent_trace():
    link = net.FixedRateLink(12e6)
    assert link.transfer_time(1500, 3.0, rtt_ms=10) == pytest.approx(11.0)
    # mahimahi's "1" trace is also 12 Mbit/s: one packet per millisecond.
    tr = net.parse_trace("1\n")
    assert tr.mean_bps() == pytest.approx(12e6)
    assert tr.transfer_time(15000, 0.0) == pytest.approx(10.0)
    assert net.as_link("fixed:12").mean_bps() == pytest.approx(12e6)
    np.testing.assert_allclose(link.transfer_time(1500, np.array([0.0, 5.0])), [1.0, 1.0])
    np.testing.assert_allclose(link.delivery_times(np.array([1500, 3000]), 2.0), [3.0, 4.0])


def test_bandwidth_views():
    tr = net.parse_trace(TINY)
    assert tr.mean_bps() == pytest.approx(4 * 1500 * 8 * 1000 / 5)
    starts, bps = tr.windowed_bps(window_ms=5, duration_ms=15)
    np.testing.assert_array_equal(starts, [0, 5, 10])
    # [0,5): 1,1,3 -> 3 ; [5,10): 5,6,6,8 -> 4 ; [10,15): 10,11,11,13 -> 4
    np.testing.assert_allclose(bps, np.array([3, 4, 4]) * 1500 * 8 * 1000 / 5)
    assert tr.bps_between(5, 10) == pytest.approx(4 * 1500 * 8 * 1000 / 5)


@settings(max_examples=100, deadline=None)
@given(gaps=st.lists(st.integers(0, 9), min_size=1, max_size=25), window=st.integers(1, 13),
       duration=st.integers(1, 300))
def test_windowed_bandwidth_matches_counting(gaps, window, duration):
    ts = list(np.cumsum([1] + gaps))
    tr = net.Trace(np.array(ts))
    starts, bps = tr.windowed_bps(window_ms=window, duration_ms=duration)
    nwin = math.ceil(duration / window)
    opp = [t + q * ts[-1] for q in range(nwin * window // ts[-1] + 2) for t in ts]
    counts = [sum(1 for o in opp if k * window <= o < (k + 1) * window) for k in range(nwin)]
    np.testing.assert_allclose(bps, np.array(counts) * 1500 * 8 * 1000 / window)
    np.testing.assert_array_equal(starts, np.arange(nwin) * window)
    for k in range(nwin):
        assert tr.bps_between(k * window, (k + 1) * window) == pytest.approx(bps[k])


@pytest.mark.parametrize("text,frag", [
    ("", "empty"), ("\n\n", "empty"), ("1\nabc\n", "line 2"), ("5\n3\n", "line 2"), ("0\n0\n", "nonzero"),
    ("1\n\n2\n", "line 2"), ("-1\n2\n", "line 1"), ("1.5\n", "line 1"), ("1 2\n", "line 1"),
    ("9" * 30 + "\n", "too large"), (b"\xff\xfe1\n", "ASCII"),
])
def test_malformed_traces_raise_value_error(text, frag):
    with pytest.raises(ValueError, match=frag):
        net.parse_trace(text)


def test_load_trace_file_and_errors(tmp_path):
    p = tmp_path / "my.trace"
    p.write_text("2\r\n4\r\n4\r\n")  # CRLF and a trailing newline are fine
    tr = net.load_trace(p)
    assert tr.opportunities == 3 and tr.period_ms == 4
    with pytest.raises(ValueError, match="cannot read"):
        net.load_trace(tmp_path / "missing")
    with pytest.raises(ValueError):
        net.parse_link("bogus:1")
    with pytest.raises(ValueError):
        net.parse_link("fixed:abc")
    with pytest.raises(ValueError):
        net.parse_link("fixed:-3")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_parse_trace_fuzz_never_crashes(data):
    try:
        tr = net.parse_trace(data)
    except ValueError:
        return
    assert tr.period_ms > 0


def test_bad_transfer_arguments():
    tr = net.parse_trace(TINY)
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            tr.transfer_time(bad, 0)
        with pytest.raises(ValueError):
            tr.transfer_time(10, bad)
    with pytest.raises(ValueError):
        tr.transfer_time(10, 0, rtt_ms=-1)
    for bad_b, bad_t in (("abc", 0), (10, "x"), (10, None), ([1, "a"], 0)):
        with pytest.raises(ValueError):
            tr.transfer_time(bad_b, bad_t)
    with pytest.raises(ValueError):
        net.FixedRateLink(0)
    for bad in ([1.5, 2.0], [float("nan")], ["a"], [], [[1, 2]], [3, 1], [0]):
        with pytest.raises(ValueError):
            net.Trace(np.array(bad))


def test_estimator_ewma():
    e = net.BandwidthEstimator(alpha=0.5)
    assert e.estimate_bps is None
    e.update(1_000_000, 1.1, rtt_s=0.1)  # 8 Mbit over 1 s busy
    assert e.estimate_bps == pytest.approx(8e6)
    e.update(1_000_000, 2.1, rtt_s=0.1)  # 4 Mbit/s
    assert e.estimate_bps == pytest.approx(6e6)
    assert e.rtt_s == pytest.approx(0.1)
    e2 = net.BandwidthEstimator(alpha=0.2, initial_bps=10e6, min_bytes=5000)
    e2.update(100, 0.001)  # too small: ignored
    assert e2.estimate_bps == 10e6 and e2.samples == 0
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError):
            net.BandwidthEstimator(alpha=bad)
    with pytest.raises(ValueError):
        e.update(10, 0)


def test_estimator_harmonic_window():
    e = net.BandwidthEstimator(mode="harmonic", window=3)
    for mbps in (8, 2, 8):
        e.update(mbps * 1e6 / 8, 1.0)
    assert e.estimate_bps == pytest.approx(3 / (1 / 8e6 + 1 / 2e6 + 1 / 8e6))
    e.update(1e6 / 8, 1.0)  # the 8 Mbit/s sample leaves the window
    assert e.estimate_bps == pytest.approx(3 / (1 / 2e6 + 1 / 8e6 + 1 / 1e6))
    for bad in (dict(mode="max"), dict(window=0), dict(window=2.5)):
        with pytest.raises(ValueError):
            net.BandwidthEstimator(**bad)


def test_estimator_tracks_trace_drop():
    # 10 packets/ms for 1 s, then 1 packet/ms for 1 s: the EWMA of simulated transfers follows.
    ts = np.concatenate([np.repeat(np.arange(1, 1001), 10), np.arange(1001, 2001)])
    tr = net.Trace(ts)
    e = net.BandwidthEstimator(alpha=0.5)
    t = 0.0
    seen = []
    while t < 1990:
        ms = tr.transfer_time(30_000, t)
        e.update(30_000, ms / 1000)
        seen.append((t, e.estimate_bps))
        t += ms + 5
    early = [v for tt, v in seen if 100 < tt < 900]
    late = [v for tt, v in seen if tt > 1300]
    assert min(early) > 5 * max(late)
    assert np.mean(late) == pytest.approx(12e6, rel=0.1)


REAL = sorted(TRACES.glob("*.up")) + sorted(TRACES.glob("*.down")) + sorted(TRACES.glob("*.pps")) \
    if TRACES.is_dir() else []


@pytest.mark.skipif(not REAL, reason=f"real traces not present in {TRACES}")
def test_real_traces_load_and_simulator_agrees_with_stepping():
    rng = np.random.default_rng(0)
    for p in REAL:
        tr = net.load_trace(p)
        assert tr.mean_bps() > 0
        # Starts both inside and past the end (looping); sizes up to a few MB.
        s = rng.uniform(0, 2.5 * tr.period_ms, size=5)
        b = rng.integers(0, 3_000_000, size=5)
        got = tr.delivery_times(b, s)
        ts = tr.timestamps
        for x, y, g in zip(b, s, got):
            # stepping from the loop that contains y (brute force over the loops the transfer can reach)
            q = max(math.ceil(y / tr.period_ms) - 1, 0)
            k = math.ceil(int(x) / 1500)
            loops = k // len(ts) + 3
            opp = np.concatenate([ts + (q + j) * tr.period_ms for j in range(loops)])
            opp = opp[opp > math.floor(y)]
            want = y if k == 0 else opp[k - 1]
            assert g == want, p.name


def test_synthetic_trace_is_seeded_and_near_its_mean(tmp_path):
    a = net.synthetic_trace(60, 8.0, seed=3)
    b = net.synthetic_trace(60, 8.0, seed=3)
    c = net.synthetic_trace(60, 8.0, seed=4)
    assert np.array_equal(a.timestamps, b.timestamps) and not np.array_equal(a.timestamps, c.timestamps)
    assert a.period_ms == 60_000
    assert 4e6 < a.mean_bps() < 12e6  # log-normal around 8 Mbit/s, minus a few outages
    # a flat one (no variability, no outages) is exactly its rate, and files round-trip
    flat = net.synthetic_trace(10, 12.0, variability=0.0, outage_rate_per_min=0.0)
    assert flat.mean_bps() == pytest.approx(12e6, rel=0.01)
    p = net.write_trace(tmp_path / "s.up", flat)
    assert np.array_equal(net.load_trace(p).timestamps, flat.timestamps)
    assert np.array_equal(net.parse_link("synthetic:8,3").timestamps, net.synthetic_trace(60, 8.0, seed=3).timestamps)
    for bad in (dict(duration_s=0), dict(mean_mbps=-1), dict(seed=-1), dict(variability=True)):
        with pytest.raises(ValueError):
            net.synthetic_trace(**{"duration_s": 10, "mean_mbps": 8, **bad})
