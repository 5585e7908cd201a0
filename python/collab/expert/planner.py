"""Choose the confidence threshold tau for a latency or an accuracy target.

Inputs are measured, not modelled: T_E(b) (edge model on the device, b images), T_N(b) (expert
on the near-edge server), T_comm(b) (the measured round trip of a request carrying b images,
minus the server's compute: it includes gRPC framing, packet processing and, on a shaped
link, the link itself; the paper's point that a bytes / bandwidth line misses this is why we
interpolate measurements instead), and the offload curve alpha(tau) with the co-inference
accuracy acc(tau) on a calibration set.

For a batch of B images:  latency(tau) = T_E(B) + [n > 0] (T_comm(n) + T_N(n)),  n = ceil(alpha(tau) B)
(one request per batch: the planner treats the offloaded images as one group).
"""
from __future__ import annotations

import json
import math
import time

import numpy as np

from ..errors import InvalidArgument

TAUS = (0.99, 0.9, 0.8, 0.7, 0.6, 0.5)


class Profile:
    """Measured seconds at some batch sizes; linear interpolation between them and linear
    extrapolation from the last two beyond them."""

    def __init__(self, points: dict):
        pts = sorted((int(b), float(s)) for b, s in dict(points).items())
        if not pts or any(b < 1 or not (s >= 0) for b, s in pts):
            raise InvalidArgument(f"profile points must be batch >= 1 -> seconds >= 0, got {points!r}")
        self.b = np.array([p[0] for p in pts], float)
        self.s = np.array([p[1] for p in pts], float)

    def __call__(self, b) -> float:
        b = float(b)
        if b <= 0:
            return 0.0
        if len(self.b) == 1:
            return float(self.s[0] * b / self.b[0])
        if b > self.b[-1]:
            slope = (self.s[-1] - self.s[-2]) / (self.b[-1] - self.b[-2])
            return float(self.s[-1] + max(0.0, slope) * (b - self.b[-1]))
        return float(np.interp(b, self.b, self.s))

    def as_dict(self):
        return {str(int(b)): s for b, s in zip(self.b, self.s)}


def time_it(fn, repeats: int = 5) -> float:
    """Median wall seconds of fn() over `repeats` runs after one warm-up."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def profile_classifier(clf, batch_sizes=(1, 4, 8, 16, 32), repeats: int = 5, seed: int = 0) -> Profile:
    """T(b) of a collab.expert.model.Classifier on uint8 28x28 inputs (preprocessing included)."""
    x = np.random.default_rng(seed).integers(0, 256, (max(batch_sizes), 28, 28), dtype=np.uint8)
    return Profile({b: time_it(lambda b=b: clf.classify(x[:b]), repeats) for b in batch_sizes})


def profile_comm(client, task: str, key: str, batch_sizes=(1, 4, 8, 16, 32), repeats: int = 5, link=None,
                 rtt_ms: float = 0.0) -> Profile:
    """Measured round trip minus server time for requests of b images to expert `key`; with
    `link` (a collab.net link), the link's transfer time of the request and reply bytes is added
    (the loopback itself has no bandwidth limit)."""
    from ..net import transfer_time

    x = np.random.default_rng(1).integers(0, 256, (max(batch_sizes), 28, 28), dtype=np.uint8)
    out = {}
    for b in batch_sizes:
        meta = {"experts": key, "shape": f"{b},28,28"}
        client.infer(task, x[:b].tobytes(), meta)
        ts = []
        for _ in range(repeats):
            _, _, tim = client.infer(task, x[:b].tobytes(), meta)
            ts.append(tim["total"] - tim["server"])
        extra = 0.0 if link is None else (transfer_time(b * 784, 0.0, link, rtt_ms) + transfer_time(b * 40, 0.0, link)) / 1e3
        out[b] = float(np.median(ts)) + extra
    return Profile(out)


class OffloadCurve:
    """conf: the edge model's max softmax probability per calibration sample; edge_pred, its
    argmax; expert_pred: what the routed expert answers for the sample (the routing key does not
    depend on tau, only whether the sample is offloaded); labels."""

    def __init__(self, conf, edge_pred, expert_pred, labels):
        self.conf, self.edge_pred, self.expert_pred, self.labels = (np.asarray(a) for a in (conf, edge_pred, expert_pred, labels))
        n = len(self.conf)
        if n == 0 or any(len(a) != n for a in (self.edge_pred, self.expert_pred, self.labels)):
            raise InvalidArgument("calibration arrays must be non-empty and of equal length")

    def alpha(self, tau: float) -> float:
        return float((self.conf < tau).mean())

    def accuracy(self, tau: float) -> float:
        return float((np.where(self.conf >= tau, self.edge_pred, self.expert_pred) == self.labels).mean())

    def as_dict(self, taus=TAUS):
        return {str(t): {"alpha": self.alpha(t), "accuracy": self.accuracy(t)} for t in taus}


class ExpertPlanner:
    def __init__(self, t_edge: Profile, t_server: Profile, t_comm: Profile, curve: OffloadCurve, batch: int = 32):
        if batch < 1:
            raise InvalidArgument("batch must be >= 1")
        self.t_edge, self.t_server, self.t_comm, self.curve, self.batch = t_edge, t_server, t_comm, curve, int(batch)

    def predict(self, tau: float) -> dict:
        a = self.curve.alpha(tau)
        n = math.ceil(a * self.batch - 1e-9)
        lat = self.t_edge(self.batch) + ((self.t_comm(n) + self.t_server(n)) if n > 0 else 0.0)
        return {"tau": float(tau), "alpha": a, "offloaded": n, "latency_s": lat, "accuracy": self.curve.accuracy(tau)}

    def choose(self, *, latency_s: float = None, accuracy: float = None, taus=None) -> dict:
        """latency_s: the most accurate tau whose predicted batch latency fits; accuracy: the
        fastest tau that reaches it. Raises InvalidArgument when no tau meets the target."""
        if (latency_s is None) == (accuracy is None):
            raise InvalidArgument("give exactly one of latency_s or accuracy")
        cands = [self.predict(t) for t in (taus if taus is not None else np.round(np.arange(0.0, 1.0001, 0.01), 2))]
        if latency_s is not None:
            ok = [c for c in cands if c["latency_s"] <= latency_s]
            if not ok:
                raise InvalidArgument(f"no tau meets {latency_s * 1e3:.1f} ms; the fastest is "
                                      f"{min(c['latency_s'] for c in cands) * 1e3:.1f} ms")
            return max(ok, key=lambda c: (c["accuracy"], -c["latency_s"]))
        ok = [c for c in cands if c["accuracy"] >= accuracy]
        if not ok:
            raise InvalidArgument(f"no tau reaches accuracy {accuracy}; the best is {max(c['accuracy'] for c in cands):.4f}")
        return min(ok, key=lambda c: (c["latency_s"], -c["accuracy"]))

    def to_json(self) -> str:
        c = self.curve
        return json.dumps({"kind": "expert", "batch": self.batch, "t_edge": self.t_edge.as_dict(),
                           "t_server": self.t_server.as_dict(), "t_comm": self.t_comm.as_dict(),
                           "curve": {"conf": c.conf.round(6).tolist(), "edge_pred": c.edge_pred.tolist(),
                                     "expert_pred": c.expert_pred.tolist(), "labels": c.labels.tolist()}})

    @classmethod
    def from_json(cls, text: str) -> "ExpertPlanner":
        try:
            d = json.loads(text)
        except ValueError as e:
            raise InvalidArgument(f"bad planner profile: {e}") from None
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d) -> "ExpertPlanner":
        try:
            if not isinstance(d, dict) or d.get("kind") != "expert":
                raise InvalidArgument("not an expert planner profile (kind != 'expert')")
            return cls(Profile(d["t_edge"]), Profile(d["t_server"]), Profile(d["t_comm"]),
                       OffloadCurve(**d["curve"]), d["batch"])
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, InvalidArgument):
                raise
            raise InvalidArgument(f"bad planner profile: {e}") from None


def plan_profile(profile: dict, args) -> int:
    """`collab plan --profile P.json` for an expert planner profile (the dict ExpertPlanner.to_json
    wrote): prints the chosen tau with its predicted batch latency, accuracy and offload fraction.
    args.deadline_ms (latency target; inf = none) or args.min_accuracy (accuracy target; None =
    none): exactly one. Raises InvalidArgument for a bad profile or target, or when no tau meets it."""
    deadline = getattr(args, "deadline_ms", math.inf)
    min_acc = getattr(args, "min_accuracy", None)
    has_deadline = deadline is not None and not math.isinf(deadline)
    if has_deadline == (min_acc is not None):
        raise InvalidArgument("an expert profile needs exactly one target: --deadline-ms (batch latency) or "
                              "--min-accuracy (co-inference accuracy)")
    if has_deadline and not deadline > 0:
        raise InvalidArgument(f"--deadline-ms must be > 0, got {deadline}")
    if min_acc is not None and not 0.0 <= min_acc <= 1.0:
        raise InvalidArgument(f"--min-accuracy must be in [0, 1], got {min_acc}")
    planner = ExpertPlanner.from_dict(profile)
    best = planner.choose(latency_s=deadline / 1e3 if has_deadline else None, accuracy=min_acc)
    if getattr(args, "json", False):
        print(json.dumps({"kind": "expert", "choice": best}, indent=1))
    else:
        target = f"deadline {deadline:g} ms" if has_deadline else f"accuracy >= {min_acc:g}"
        print(f"expert planner profile: batch {planner.batch}, {len(planner.curve.conf)} calibration samples; "
              f"target {target}")
        print(f"tau {best['tau']:g}: offload fraction {best['alpha']:.3f} ({best['offloaded']} of {planner.batch} "
              f"images), predicted latency {best['latency_s'] * 1e3:.2f} ms per batch, accuracy {best['accuracy']:.4f}")
    return 0
