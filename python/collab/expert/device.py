"""The edge side of Ask the Expert: local generalist, Algorithm 1, offload, fallback.

    dev = ExpertDevice(Classifier(load_params(edge_file), grid), partition_of(3), tau=0.8,
                       client=collab.Client("server:50051"), deadline_s=0.5)
    r = dev.classify(images_u8)          # uint8 (B, 28, 28)
    r.pred, r.source, r.fallback_reasons

Offloaded samples are grouped by partition set; each group is one request (uint8 images, 784
bytes each, plus the set in meta), sent concurrently. A group whose reply does not arrive
within the deadline, or fails for any reason (server down, unknown set, bad reply), keeps the
edge model's own prediction; its samples are marked SOURCE_FALLBACK and the reason is kept.
"""
from __future__ import annotations

import concurrent.futures
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidArgument
from .artifacts import key_str
from .model import check_images
from .routing import route

SOURCE_EDGE, SOURCE_EXPERT, SOURCE_FALLBACK = 0, 1, 2
SOURCE_NAMES = ("edge", "expert", "edge-fallback")


@dataclass
class DeviceResult:
    pred: np.ndarray            # (B,) final class
    edge_pred: np.ndarray       # (B,) the edge model's argmax
    local: np.ndarray           # (B,) bool: confident enough to stay on the device
    expert: list                # (B,) partition set per sample, () when local
    source: np.ndarray          # (B,) SOURCE_EDGE / SOURCE_EXPERT / SOURCE_FALLBACK
    fallback_reasons: dict = field(default_factory=dict)  # "0,2" -> why that group fell back
    edge_s: float = 0.0
    offload_s: float = 0.0
    total_s: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    server_s: float = 0.0       # the server's own time for the offloaded requests (summed)
    requests: int = 0

    @property
    def fell_back(self) -> bool:
        return bool((self.source == SOURCE_FALLBACK).any())

    @property
    def offloaded(self) -> int:
        return int((~self.local).sum())


class ExpertDevice:
    def __init__(self, edge, partition_of, *, tau: float, k: int = 2, client=None, task: str = "expert",
                 deadline_s: float = 1.0, max_request_images: int = 256):
        if not (deadline_s > 0):
            raise InvalidArgument(f"deadline_s must be > 0, got {deadline_s!r}")
        route(np.zeros((1, len(partition_of))), tau=tau, k=k, partition_of=partition_of)  # validates
        self.edge, self.partition_of, self.tau, self.k = edge, tuple(partition_of), float(tau), int(k)
        self.client, self.task, self.deadline_s = client, task, float(deadline_s)
        self.max_request_images = int(max_request_images)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="expert-offload")

    def _ask(self, key, images, timeout):
        meta = {"experts": key_str(key), "shape": f"{len(images)},28,28"}
        out, rmeta, tim = self.client.infer(self.task, np.ascontiguousarray(images).tobytes(), meta, timeout=timeout)
        c = self.edge.num_classes
        if rmeta.get("dtype") != "float32" or len(out) != len(images) * c * 4:
            raise InvalidArgument(f"expert reply is not float32 ({len(images)}, {c}): meta {rmeta}")
        return np.frombuffer(out, np.float32).reshape(len(images), c), len(out), float(tim.get("server", 0.0))

    def classify(self, images) -> DeviceResult:
        t0 = time.perf_counter()
        x = check_images(images)
        logits = self.edge.classify(x)
        local, pred, expert = route(logits, tau=self.tau, k=self.k, partition_of=self.partition_of)
        t1 = time.perf_counter()
        final = pred.copy()
        source = np.where(local, SOURCE_EDGE, SOURCE_FALLBACK).astype(np.int8)
        groups = {}
        for i, key in enumerate(expert):
            if key:
                groups.setdefault(key, []).append(i)
        reasons, up, down, srv = {}, 0, 0, 0.0
        if groups and self.client is None:
            reasons = {key_str(k): "no near-edge server configured" for k in groups}
        elif groups:
            deadline = t1 + self.deadline_s
            futs = {}
            for key, idx in groups.items():
                for s in range(0, len(idx), self.max_request_images):
                    part = np.asarray(idx[s:s + self.max_request_images])
                    futs[self._pool.submit(self._ask, key, x[part], self.deadline_s)] = (key, part)
                    up += len(part) * 784
            for f, (key, part) in futs.items():
                try:
                    lg, nbytes, s_srv = f.result(timeout=max(0.0, deadline - time.perf_counter()))
                except concurrent.futures.TimeoutError:
                    reasons[key_str(key)] = f"no answer within the {self.deadline_s:.3f}s deadline"
                    continue
                except Exception as e:  # server down, refused, bad reply: keep the edge answer
                    reasons[key_str(key)] = f"{type(e).__name__}: {e}"
                    continue
                final[part] = lg.argmax(1)
                source[part] = SOURCE_EXPERT
                down += nbytes
                srv += s_srv
        t2 = time.perf_counter()
        return DeviceResult(final, pred, local, expert, source, reasons, t1 - t0, t2 - t1, t2 - t0, up, down, srv,
                            len(futs) if groups and self.client is not None else 0)

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
