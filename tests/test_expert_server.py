"""The expert-library task: round trip over gRPC equals the expert run directly, errors leave the
server serving, lazy loading under a memory budget, dynamic batching, metrics."""
import json
import threading

import numpy as np
import pytest

from collab.expert.model import Classifier, random_params
from collab.expert.server import ExpertLibraryTask
from collab.transport import InprocClient
from collab.transport.errors import InvalidRequest

KEYS = [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]


def tiny_library(**kw):
    params = {k: random_params(heads=1, depth=1, grid=2, seed=i + 1) for i, k in enumerate(KEYS)}
    task = ExpertLibraryTask({k: (lambda p=p: Classifier(p, 2)) for k, p in params.items()}, **kw)
    return task, params


def ask(client, key, imgs, **meta):
    m = {"experts": ",".join(map(str, key)), "shape": f"{len(imgs)},28,28", **meta}
    out, rmeta, _ = client.infer("expert", imgs.tobytes(), m)
    return np.frombuffer(out, np.float32).reshape(len(imgs), -1), rmeta


@pytest.fixture
def grpc_server():
    pytest.importorskip("grpc")
    from collab.transport import Client, Server
    task, params = tiny_library(max_request_images=16)
    srv = Server([task], port=0, workers=4)
    srv.start()
    client = Client(srv.address, timeout=30)
    yield client, params, task
    client.close()
    srv.stop(grace=0)
    task.close()


def test_grpc_round_trip_equals_direct(grpc_server, rng):
    client, params, _ = grpc_server
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    for key in KEYS:
        got, meta = ask(client, key, imgs)
        np.testing.assert_array_equal(got, Classifier(params[key], 2).classify(imgs))
        assert meta["expert"] == ",".join(map(str, key))


@pytest.mark.parametrize("bad", ["unknown-set", "bad-set", "shape", "size", "too-many", "op"])
def test_bad_requests_are_rejected_and_server_keeps_serving(grpc_server, rng, bad):
    client, params, _ = grpc_server
    imgs = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    meta = {"experts": "0", "shape": "2,28,28"}
    payload = imgs.tobytes()
    if bad == "unknown-set":
        meta["experts"] = "0,7"
    elif bad == "bad-set":
        meta["experts"] = "2,0"
    elif bad == "shape":
        meta["shape"] = "2,32,32"
    elif bad == "size":
        payload = payload[:-1]
    elif bad == "too-many":
        meta["shape"] = "17,28,28"
        payload = np.zeros((17, 28, 28), np.uint8).tobytes()
    else:
        meta["op"] = "train"
    with pytest.raises(InvalidRequest) as e:
        client.infer("expert", payload, meta)
    if bad == "unknown-set":
        assert "unknown partition set" in str(e.value) and "'0,1'" in str(e.value)
    got, _ = ask(client, (0,), imgs)
    np.testing.assert_array_equal(got, Classifier(params[(0,)], 2).classify(imgs))


def test_lru_under_memory_budget(rng):
    task, params = tiny_library()
    one = Classifier(params[(0,)], 2).nbytes
    task.close()
    task, params = tiny_library(budget_mb=1.5 * one / (1 << 20))  # room for one expert only
    client = InprocClient([task])
    imgs = rng.integers(0, 256, (1, 28, 28), dtype=np.uint8)
    for key in [(0,), (1,), (0,)]:
        ask(client, key, imgs)
    st = json.loads(client.infer("expert", b"", {"op": "stats"})[0])
    assert st["loaded"] == ["0"]
    assert st["models"]["0"] == {"loads": 2, "evictions": 1}
    assert st["models"]["1"] == {"loads": 1, "evictions": 1} and st["resident_mb"] <= st["budget_mb"]
    assert st["experts"]["0"]["requests"] == 2 and st["experts"]["1"]["images"] == 1
    task.close()


def test_shared_model_loads_once(rng):
    p = random_params(heads=1, depth=1, grid=2, seed=5)
    task = ExpertLibraryTask({k: (lambda: Classifier(p, 2)) for k in KEYS}, model_of={k: "gen" for k in KEYS})
    client = InprocClient([task])
    imgs = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    outs = [ask(client, k, imgs)[0] for k in KEYS]
    assert all(np.array_equal(o, outs[0]) for o in outs)
    m = task.metrics()
    assert m["models"] == {"gen": {"loads": 1, "evictions": 0}} and m["loaded"] == ["gen"]
    task.close()


def test_expert_larger_than_budget_is_a_clear_error(rng):
    from collab.transport.errors import TransportError
    task, _ = tiny_library(budget_mb=0.01)
    with pytest.raises(TransportError, match="memory budget"):
        ask(InprocClient([task]), (0,), rng.integers(0, 256, (1, 28, 28), dtype=np.uint8))
    task.close()


def test_dynamic_batching_groups_concurrent_requests(rng):
    task, params = tiny_library(max_batch=8, max_wait_ms=300)
    client = InprocClient([task])
    imgs = [rng.integers(0, 256, (2, 28, 28), dtype=np.uint8) for _ in range(4)]
    ask(client, (2,), imgs[0])  # load first so the batch below is not stretched by the load
    out = [None] * 4
    ts = [threading.Thread(target=lambda i=i: out.__setitem__(i, ask(client, (2,), imgs[i]))) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ref = Classifier(params[(2,)], 2)
    for i in range(4):
        np.testing.assert_allclose(out[i][0], ref.classify(imgs[i]), rtol=1e-5, atol=1e-5)
    st = task.metrics()["experts"]["2"]
    assert st["requests"] == 5 and st["images"] == 10
    assert st["batches"] < 5 and st["max_batch_seen"] > 2  # at least two requests shared a batch
    assert max(int(o[1]["batch"]) for o in out) <= 8
    task.close()


def test_fuzzed_requests_only_get_clear_errors(rng):
    """Random payloads and meta: every request either succeeds or gets INVALID_ARGUMENT."""
    task, _ = tiny_library(max_request_images=8)
    client = InprocClient([task])
    choices = ["", "0", "1,2", "2,1", "0,0", "-1", "a", "0,1,2", "9", " 1", "1,", "0x1", "3"]
    shapes = ["", "1,28,28", "2,28,28", "0,28,28", "-1,28,28", "1,28", "9,28,28", "1,28,28,1", "x", "1e3,28,28"]
    ok = 0
    for _ in range(300):
        meta = {"experts": str(rng.choice(choices)), "shape": str(rng.choice(shapes))}
        if rng.random() < 0.1:
            meta["op"] = str(rng.choice(["classify", "stats", "", "drop"]))
        n = int(rng.choice([0, 1, 783, 784, 1568, 1569, 7056]))
        payload = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        try:
            client.infer("expert", payload, meta)
            ok += 1
        except InvalidRequest:
            pass
    assert ok > 0
    imgs = rng.integers(0, 256, (1, 28, 28), dtype=np.uint8)
    ask(client, (1, 2), imgs)  # still serving
    task.close()
