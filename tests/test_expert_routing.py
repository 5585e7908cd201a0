"""collab.expert.route against a direct, per-sample transcription of the paper's Algorithm 1."""
import itertools
import math

import numpy as np
import pytest

from collab.errors import InvalidArgument
from collab.expert import expert_sets, partition_of, route


def reference(logits, tau, k, parts):
    """Algorithm 1, one sample at a time, in plain Python floats."""
    local, pred, expert = [], [], []
    for row in logits:
        m = max(row)
        e = [math.exp(float(v) - m) for v in row]
        s = sum(e)
        p = [v / s for v in e]
        order = sorted(range(len(p)), key=lambda c: (-p[c], c))  # ties: lower class first
        conf = p[order[0]]
        local.append(conf >= tau)
        pred.append(order[0])
        expert.append(() if conf >= tau else tuple(sorted({parts[c] for c in order[:k]})))
    return local, pred, expert


@pytest.mark.parametrize("s", [2, 3, 4])
@pytest.mark.parametrize("k", [1, 2, 3, 11])
def test_route_matches_reference(rng, s, k):
    parts = partition_of(s)
    # integer-valued logits make exact probability ties common
    logits = np.concatenate([rng.normal(0, 3, (200, 10)), rng.integers(-2, 3, (200, 10))]).astype(np.float32)
    for tau in (0.0, 0.3, 0.5, 0.8, 0.99, 1.0, float(rng.uniform())):
        local, pred, expert = route(logits, tau=tau, k=k, partition_of=parts)
        rl, rp, re = reference(logits.astype(np.float64), tau, k, parts)
        assert local.dtype == bool and pred.dtype == np.int64
        np.testing.assert_array_equal(local, rl)
        np.testing.assert_array_equal(pred, rp)
        assert expert == re


def test_ties_rank_lower_class_first():
    parts = list(range(10))
    logits = np.zeros((1, 10))
    logits[0, [7, 3, 5]] = 4.0
    local, pred, expert = route(logits, tau=0.9, k=2, partition_of=parts)
    assert pred[0] == 3 and expert == [(3, 5)] and not local[0]


def test_tau_edges():
    logits = np.array([[0.0] * 10, [50.0] + [0.0] * 9])
    local, _, expert = route(logits, tau=0.0, k=2, partition_of=partition_of(3))
    assert local.all() and expert == [(), ()]
    local, _, expert = route(logits, tau=1.0, k=2, partition_of=partition_of(3))
    # second row: 1 / (1 + 9 e^-50) rounds to exactly 1.0 in float64, so it stays local at tau = 1
    assert list(local) == [False, 1.0 / (1.0 + 9 * np.exp(-50.0)) >= 1.0] == [False, True]
    assert expert[0] == (0, 1)  # classes 0 and 1 (a tie) -> partitions 0 and 1


def test_every_topk_set_has_an_expert():
    for s in (2, 3, 4):
        parts = partition_of(s)
        lib = set(expert_sets(s, 2))
        assert len(lib) == s + s * (s - 1) // 2
        for a, b in itertools.permutations(range(10), 2):
            logits = np.zeros((1, 10))
            logits[0, a], logits[0, b] = 3.0, 2.0
            _, _, expert = route(logits, tau=1.0, k=2, partition_of=parts)
            assert expert[0] in lib


def test_empty_batch():
    local, pred, expert = route(np.zeros((0, 10)), tau=0.5, partition_of=partition_of(3))
    assert local.shape == (0,) and pred.shape == (0,) and expert == []


@pytest.mark.parametrize("kwargs", [
    dict(logits=np.zeros(10)), dict(logits=np.zeros((2, 10, 1))), dict(logits=np.zeros((2, 9))),
    dict(logits=np.array([[np.nan] + [0.0] * 9])), dict(logits=np.array([[np.inf] + [0.0] * 9])),
    dict(tau=-0.1), dict(tau=1.5), dict(tau=float("nan")), dict(tau="0.5"), dict(tau=True),
    dict(k=0), dict(k=-1), dict(k=1.5), dict(k=True),
    dict(partition_of=[0] * 9), dict(partition_of=[-1] + [0] * 9), dict(partition_of=[0.5] * 10),
    dict(logits=np.array([["a"] * 10])),
])
def test_bad_arguments(kwargs):
    args = dict(logits=np.zeros((2, 10)), tau=0.5, k=2, partition_of=partition_of(3))
    args.update(kwargs)
    logits = args.pop("logits")
    with pytest.raises(InvalidArgument):
        route(logits, **args)


def test_partition_helpers():
    with pytest.raises(InvalidArgument):
        partition_of(5)
    with pytest.raises(InvalidArgument):
        expert_sets(3, 0)
    assert sorted(set(partition_of(4))) == [0, 1, 2, 3]
