"""The near-edge side: a `collab serve` task hosting the expert library.

    collab serve --task expert=collab.expert.server:library_task \\
        --task-arg expert.library=models/expert --task-arg expert.S=3 \\
        --task-arg expert.budget_mb=256 --task-arg expert.max_batch=32 --task-arg expert.max_wait_ms=5

Request (unary infer): payload = uint8 images (B, 28, 28) as raw bytes; meta "experts" = the
partition set from collab.expert.route as "0,2"; meta "shape" = "B,28,28".
Reply: float32 logits (B, classes) bytes; meta "shape", "dtype", "expert", "batch" (images in
the batch the request ran in). meta "op" = "stats" returns the per-expert metrics as JSON.

- Experts load lazily on first use and stay loaded under a memory budget (float32 parameter
  bytes); the least recently used expert that is not running is unloaded to make room.
- Dynamic batching per expert: a worker thread per expert takes the first waiting request,
  gathers more for at most max_wait_ms or until max_batch images, runs them as one batch.
- Errors (all leave the server serving): unknown partition set, wrong shape / size / dtype,
  a request of more than max_request_images images: InvalidArgument (INVALID_ARGUMENT).
"""
from __future__ import annotations

import collections
import json
import queue
import threading
import time

import numpy as np

from ..errors import InvalidArgument
from ..transport.handlers import TaskHandler
from .artifacts import Library, key_str, load_params, parse_key
from .model import Classifier, check_images

_STOP = object()


class _Pending:
    __slots__ = ("images", "done", "result", "error", "batch", "t_in")

    def __init__(self, images):
        self.images = images
        self.done = threading.Event()
        self.result = self.error = None
        self.batch = 0
        self.t_in = time.perf_counter()


class ExpertStats:
    def __init__(self):
        self.requests = self.images = self.batches = self.errors = 0
        self.max_batch_seen = 0
        self.compute_s = self.wait_s = 0.0

    def as_dict(self):
        d = dict(self.__dict__)
        d["mean_batch"] = self.images / self.batches if self.batches else 0.0
        return d


class ModelCache:
    """Lazily loaded classifiers under a byte budget, least recently used unloaded first.
    loaders: {model id: () -> Classifier}; several experts may share one model id."""

    def __init__(self, loaders: dict, budget_bytes: int):
        self.loaders, self.budget = loaders, int(budget_bytes)
        self.stats = {k: {"loads": 0, "evictions": 0} for k in loaders}
        self.loaded = collections.OrderedDict()  # key -> Classifier
        self.in_use = collections.Counter()
        self.cv = threading.Condition()
        self.loading = set()

    def resident(self):
        return sum(m.nbytes for m in self.loaded.values())

    def acquire(self, key, timeout=30.0):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                if key in self.loaded:
                    self.loaded.move_to_end(key)
                    self.in_use[key] += 1
                    return self.loaded[key]
                if key not in self.loading:
                    break
                self.cv.wait(0.05)
            self.loading.add(key)
        try:
            model = self.loaders[key]()
        except BaseException:
            with self.cv:
                self.loading.discard(key)
                self.cv.notify_all()
            raise
        with self.cv:
            try:
                if model.nbytes > self.budget:
                    raise RuntimeError(f"expert {key} needs {model.nbytes >> 20} MiB, more than the "
                                       f"memory budget of {self.budget >> 20} MiB")
                while self.resident() + model.nbytes > self.budget:
                    victim = next((k for k in self.loaded if self.in_use[k] == 0), None)
                    if victim is None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise RuntimeError("memory budget full of experts that are running; retry later")
                        self.cv.wait(min(left, 0.05))
                        continue
                    del self.loaded[victim]
                    self.stats[victim]["evictions"] += 1
                self.loaded[key] = model
                self.stats[key]["loads"] += 1
                self.in_use[key] += 1
                return model
            finally:
                self.loading.discard(key)
                self.cv.notify_all()

    def release(self, key):
        with self.cv:
            self.in_use[key] -= 1
            self.cv.notify_all()


class _Batcher(threading.Thread):
    def __init__(self, key, model_id, cache, stats, max_batch, max_wait_s):
        super().__init__(daemon=True, name=f"expert-batcher-{key_str(key)}")
        self.key, self.model_id, self.cache, self.stats = key, model_id, cache, stats
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.q = queue.Queue()
        self.carry = None

    def submit(self, images):
        p = _Pending(images)
        self.q.put(p)
        return p

    def _gather(self):
        first = self.carry if self.carry is not None else self.q.get()
        self.carry = None
        if first is _STOP:
            return None
        batch, n = [first], len(first.images)
        deadline = time.perf_counter() + self.max_wait_s
        while n < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                nxt = self.q.get(timeout=left) if left > 0 else self.q.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP or n + len(nxt.images) > self.max_batch:
                self.carry = nxt  # runs first in the next batch
                break
            batch.append(nxt)
            n += len(nxt.images)
        return batch

    def run(self):
        while True:
            batch = self._gather()
            if batch is None:
                return
            st = self.stats[self.key]
            t0 = time.perf_counter()
            try:
                model = self.cache.acquire(self.model_id)
                try:
                    logits = model.classify(np.concatenate([p.images for p in batch]))
                finally:
                    self.cache.release(self.model_id)
            except BaseException as e:  # every waiting request gets the error
                st.errors += len(batch)
                for p in batch:
                    p.error = e
                    p.done.set()
                continue
            n = sum(len(p.images) for p in batch)
            st.batches += 1
            st.images += n
            st.requests += len(batch)
            st.max_batch_seen = max(st.max_batch_seen, n)
            st.compute_s += time.perf_counter() - t0
            st.wait_s += sum(t0 - p.t_in for p in batch)
            i = 0
            for p in batch:
                p.result, p.batch = logits[i:i + len(p.images)], n
                i += len(p.images)
                p.done.set()

    def stop(self):
        self.q.put(_STOP)


class ExpertLibraryTask(TaskHandler):
    """loaders: {partition-set tuple: () -> Classifier}; model_of: {partition set: model id} when
    several sets share one model (a generalist library), else each set is its own model."""

    name = "expert"

    def __init__(self, loaders: dict, *, model_of: dict = None, budget_mb: float = 256.0, max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_request_images: int = 256, request_timeout_s: float = 60.0):
        if not loaders:
            raise InvalidArgument("the expert library is empty")
        if max_batch < 1 or max_request_images < 1 or max_wait_ms < 0 or budget_mb <= 0:
            raise InvalidArgument("max_batch, max_request_images and budget_mb must be positive, max_wait_ms >= 0")
        self.keys = sorted(loaders)
        self.stats = {k: ExpertStats() for k in self.keys}
        model_of = {k: key_str(k) for k in self.keys} if model_of is None else dict(model_of)
        if set(model_of) != set(self.keys):
            raise InvalidArgument("model_of must name a model for every partition set")
        self.cache = ModelCache({model_of[k]: loaders[k] for k in self.keys}, int(budget_mb * (1 << 20)))
        self.max_request_images = int(max_request_images)
        self.request_timeout_s = float(request_timeout_s)
        self.batchers = {k: _Batcher(k, model_of[k], self.cache, self.stats, int(max_batch), max_wait_ms / 1000.0)
                         for k in self.keys}
        for b in self.batchers.values():
            b.start()

    def _key(self, meta):
        key = parse_key(meta.get("experts", ""))
        if key not in self.batchers:
            raise InvalidArgument(f"unknown partition set {key_str(key)!r}; this library has "
                                  f"{', '.join(repr(key_str(k)) for k in self.keys)}")
        return key

    def _images(self, payload, meta):
        try:
            shape = tuple(int(v) for v in meta.get("shape", "").split(","))
        except ValueError:
            raise InvalidArgument(f"meta 'shape' must be 'B,28,28', got {meta.get('shape')!r}") from None
        if len(shape) != 3 or shape[1:] != (28, 28) or shape[0] < 1:
            raise InvalidArgument(f"images must be (B, 28, 28) uint8 with B >= 1, got shape {shape}")
        if shape[0] > self.max_request_images:
            raise InvalidArgument(f"{shape[0]} images in one request; the limit is {self.max_request_images}")
        if len(payload) != shape[0] * 784:
            raise InvalidArgument(f"payload of {len(payload)} bytes is not {shape[0]} uint8 28x28 images")
        return check_images(np.frombuffer(payload, np.uint8).reshape(shape))

    def metrics(self) -> dict:
        with self.cache.cv:
            loaded = list(self.cache.loaded)
            resident = self.cache.resident()
            models = {k: dict(v) for k, v in self.cache.stats.items()}
        return {"experts": {key_str(k): s.as_dict() for k, s in self.stats.items()}, "models": models, "loaded": loaded,
                "resident_mb": resident / (1 << 20), "budget_mb": self.cache.budget / (1 << 20)}

    def infer(self, payload, meta):
        op = meta.get("op", "classify")
        if op == "stats":
            return json.dumps(self.metrics()).encode(), {"dtype": "json"}
        if op != "classify":
            raise InvalidArgument(f"unknown op {op!r} (classify, stats)")
        key = self._key(meta)
        images = self._images(payload, meta)
        p = self.batchers[key].submit(images)
        if not p.done.wait(self.request_timeout_s):
            raise RuntimeError(f"expert {key_str(key)} did not answer within {self.request_timeout_s}s")
        if p.error is not None:
            raise p.error
        out = np.ascontiguousarray(p.result, np.float32)
        return out.tobytes(), {"shape": f"{out.shape[0]},{out.shape[1]}", "dtype": "float32",
                               "expert": key_str(key), "batch": str(p.batch)}

    def close(self):
        for b in self.batchers.values():
            b.stop()


def classifier_loader(path, grid: int, threads: int = 1, name: str = ""):
    return lambda: Classifier(load_params(path), grid, threads=threads, name=name)


def library_task(library: str = "", S="3", budget_mb: float = 256.0, max_batch: int = 32,
                 max_wait_ms: float = 5.0, threads: int = 1, max_request_images: int = 256):
    """Factory for `collab serve --task NAME=collab.expert.server:library_task`. S names the
    library in the manifest: "3" (progressive experts, S=3), "3-static", "gen-3H", ..."""
    from .artifacts import default_library
    lib = Library(library or default_library())
    files = lib.experts(str(S))
    loaders = {k: classifier_loader(p, lib.grid, int(threads), p.name) for k, p in files.items()}
    # several keys may share one file (a generalist library): one model in memory
    return ExpertLibraryTask(loaders, model_of={k: str(p) for k, p in files.items()}, budget_mb=float(budget_mb), max_batch=int(max_batch),
                             max_wait_ms=float(max_wait_ms), max_request_images=int(max_request_images))
