"""The edge side: offload through the server, and fallback to the edge answer when the server is
dead, slow or refuses."""
import socket
import time

import numpy as np
import pytest

from collab.expert import partition_of, route
from collab.expert.device import SOURCE_EDGE, SOURCE_EXPERT, SOURCE_FALLBACK, ExpertDevice
from collab.expert.model import Classifier, random_params
from collab.expert.server import ExpertLibraryTask
from collab.transport import InprocClient

KEYS = [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]


def library(delay_s=0.0):
    params = {k: random_params(heads=1, depth=1, grid=2, seed=10 + i) for i, k in enumerate(KEYS)}

    def loader(p):
        def make():
            c = Classifier(p, 2)
            if delay_s:
                inner = c.classify
                c.classify = lambda x: (time.sleep(delay_s), inner(x))[1]
            return c
        return make
    return ExpertLibraryTask({k: loader(p) for k, p in params.items()}), params


@pytest.fixture
def edge():
    return Classifier(random_params(heads=1, depth=1, grid=2, seed=99), 2)


def test_offload_uses_the_routed_expert(edge, rng):
    task, params = library()
    dev = ExpertDevice(edge, partition_of(3), tau=0.7, client=InprocClient([task]))
    imgs = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    r = dev.classify(imgs)
    local, pred, expert = route(edge.classify(imgs), tau=0.7, k=2, partition_of=partition_of(3))
    np.testing.assert_array_equal(r.local, local)
    np.testing.assert_array_equal(r.edge_pred, pred)
    assert r.expert == expert and not r.fell_back
    for i in range(len(imgs)):
        if local[i]:
            assert r.source[i] == SOURCE_EDGE and r.pred[i] == pred[i]
        else:
            assert r.source[i] == SOURCE_EXPERT
            assert r.pred[i] == Classifier(params[expert[i]], 2).classify(imgs[i:i + 1]).argmax()
    assert r.bytes_up == 784 * r.offloaded
    task.close()


def _dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_falls_back_when_the_server_is_dead(edge, rng):
    pytest.importorskip("grpc")
    from collab.transport import Client
    client = Client(f"127.0.0.1:{_dead_port()}")
    dev = ExpertDevice(edge, partition_of(3), tau=1.0, client=client, deadline_s=2.0)
    imgs = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    r = dev.classify(imgs)
    assert (r.source == SOURCE_FALLBACK).all() and r.fell_back
    np.testing.assert_array_equal(r.pred, r.edge_pred)
    assert r.fallback_reasons and all("UNAVAILABLE" in v or "DEADLINE" in v for v in r.fallback_reasons.values())
    client.close()


def test_falls_back_when_the_server_is_late(edge, rng):
    task, _ = library(delay_s=1.0)
    dev = ExpertDevice(edge, partition_of(3), tau=1.0, client=InprocClient([task]), deadline_s=0.1)
    r = dev.classify(rng.integers(0, 256, (3, 28, 28), dtype=np.uint8))
    assert (r.source == SOURCE_FALLBACK).all()
    assert all("deadline" in v for v in r.fallback_reasons.values())
    task.close()


def test_falls_back_on_unknown_set_and_without_server(edge, rng):
    params = {(0,): random_params(heads=1, depth=1, grid=2)}
    task = ExpertLibraryTask({(0,): lambda: Classifier(params[(0,)], 2)})
    imgs = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    r = ExpertDevice(edge, partition_of(3), tau=1.0, client=InprocClient([task])).classify(imgs)
    other = [i for i, k in enumerate(r.expert) if k != (0,)]
    assert other, "random edge model routed everything to set (0,)"
    assert (r.source[other] == SOURCE_FALLBACK).all()
    assert any("unknown partition set" in v for v in r.fallback_reasons.values())
    r2 = ExpertDevice(edge, partition_of(3), tau=1.0).classify(imgs)
    assert (r2.source == SOURCE_FALLBACK).all() and "no near-edge server" in next(iter(r2.fallback_reasons.values()))
    task.close()
