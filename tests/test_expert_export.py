"""Export: a fake recipe cache (tiny random models) -> manifests -> a served library whose keys
cover every top-2 routing outcome."""
import itertools
import json

import numpy as np
import pytest

from collab.errors import InvalidArgument
from collab.expert import expert_sets, partition_of, route
from collab.expert.artifacts import Library, load_params
from collab.expert.export import export_committed, write_cache_manifest
from collab.expert.model import Classifier, random_params
from collab.expert.partitions import set_name
from collab.expert.server import library_task
from collab.transport import InprocClient


def fake_cache(root, static=True):
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"size": 28, "seed": 0, "n_test": 100}))

    def put(name, heads, seed):
        d = root / "runs" / name
        d.mkdir(parents=True)
        np.savez(d / "final.npz", **random_params(heads=heads, depth=1, grid=2, seed=seed))
        (d / "metrics.json").write_text("{}")
    put("gen-2H", 2, 1)
    put("gen-3H", 3, 2)
    for i, key in enumerate(expert_sets(3, 2)):
        put(f"exp-S3-{set_name(key)}-3H-progressive", 3, 10 + i)
        if static and len(key) == 1:
            put(f"exp-S3-{set_name(key)}-3H-static", 3, 20 + i)


def test_export_serves_every_top2_set(tmp_path, rng):
    cache = tmp_path / "cache"
    fake_cache(cache)
    lib = Library(write_cache_manifest(cache).parent)
    assert lib.library("3")["complete"] and not lib.library("3-static")["complete"]
    out = tmp_path / "models"
    export_committed(cache, out, generalists=("3H",))
    served = Library(out)
    assert set(served.experts("3")) == set(expert_sets(3, 2))
    size = sum(p.stat().st_size for p in out.rglob("*.npz"))
    raw = sum(p.stat().st_size for p in (cache / "runs").rglob("final.npz"))
    assert size < raw / 2  # int8 / fp16
    # every ordered top-2 pair routes to a served expert, and the served expert is the trained one
    task = library_task(library=str(out), S="3")
    client = InprocClient([task])
    img = rng.integers(0, 256, (1, 28, 28), dtype=np.uint8)
    for a, b in itertools.permutations(range(10), 2):
        logits = np.zeros((1, 10))
        logits[0, a], logits[0, b] = 2.0, 1.0
        key = route(logits, tau=1.0, k=2, partition_of=served.partition_of("3"))[2][0]
        out_b, _, _ = client.infer("expert", img.tobytes(), {"experts": ",".join(map(str, key)), "shape": "1,28,28"})
        got = np.frombuffer(out_b, np.float32)
        want = Classifier(load_params(served.experts("3")[key]), 2).classify(img)[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    task.close()
    assert served.partition_of("3") == partition_of(3)
    with pytest.raises(InvalidArgument):
        export_committed(cache, tmp_path / "m2", libraries=("3-static",))
    with pytest.raises(InvalidArgument):
        served.experts("7")


def test_scan_names_other_expert_sizes_and_needs_no_edge(tmp_path):
    cache = tmp_path / "cache"
    (cache / "runs").mkdir(parents=True)
    (cache / "config.json").write_text(json.dumps({"size": 28, "seed": 0, "n_test": 100}))

    def put(name, heads):
        d = cache / "runs" / name
        d.mkdir(parents=True)
        np.savez(d / "final.npz", **random_params(heads=heads, depth=1, grid=2, seed=heads))
        (d / "metrics.json").write_text("{}")
    for key in expert_sets(3, 2):
        put(f"exp-S3-{set_name(key)}-4H-progressive", 4)
    put(f"exp-S4-{set_name((0,))}-3H-static", 3)
    put("base-4H", 4)
    put("gen-4H", 4)
    lib = Library(write_cache_manifest(cache).parent)
    assert lib.m["edge"] is None
    assert lib.library("3-4H")["complete"] and lib.library("3-4H")["heads"] == 4
    assert set(lib.experts("3-4H")) == set(expert_sets(3, 2))
    assert lib.library("4-static")["heads"] == 3 and not lib.library("4-static")["complete"]
    assert "3" not in lib.names() and set(lib.m["generalists"]) == {"4H", "4H-base"}
    with pytest.raises(InvalidArgument, match="no edge model"):
        lib.edge_path()
    with pytest.raises(InvalidArgument, match="no edge model"):
        export_committed(cache, tmp_path / "out", libraries=("3-4H",))
