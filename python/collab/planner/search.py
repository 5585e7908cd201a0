"""SLICER split selection (Eq. 2-3, 5-6) and the hierarchical configuration search (Sec. 3.3).

Single shot (Eq. 2-3): latency of split l with codec knobs theta = (s, M+, M-) is
    L(l) = L_d(L_{1:l}) + zeta(theta) + T_comm(B(x_l; theta))          [+ decode + server if asked]
and the plan is the deepest l with m(L_{1:l}) + m_buf(theta) <= M and L(l) <= D.

Autoregressive (Eq. 5-6): the device decodes the first w-1 steps with its whole (compressed)
model, then on step w runs layers 1..l and hands the hidden rows x_l^w of all p + w positions
(prompt p plus w generated) to the server:
    L_AR(l, w) = p * P_full + (w - 1) * T_full + T_{1:l} + zeta(theta) + T_comm(B(x_l^w; theta))
with P_full the device's prefill time per prompt token (0 when p = 0, which is exactly Eq. 5),
T_full its decode-step time over all layers, T_{1:l} the step time of layers 1..l. The plan is
the deepest (w, then l) with L_AR <= D and B(x_l^w) <= M_ar (and, if a device memory M is
given, weights + KV cache of p + w tokens + frame <= M).
(Eq. 5 writes L_d of the compressed network for both the full and the partial pass; we read the
"full passes" as the whole device model and the partial pass as layers 1..l.)

Hierarchical search ("accuracy first", Sec. 3.3) over the grid given by SearchSpace:
  Tier 3 (outer): retreat the split from the deepest one (AR: w, then l) only when nothing fits;
  Tier 2 (middle): raise the sparsity s step by step from the smallest;
  Tier 1 (inner): for the split and s, tune the block counts (M+, M-): the trade-off between
                  quantization granularity (more blocks: each block gets its own range, finer
                  steps) and metadata (more blocks: more header and index bits). Policy "finest"
                  (default, accuracy first) keeps the most blocks that still meet the budget,
                  ties broken by latency; policy "fastest" takes the lowest predicted latency.
                  Bits come from collab.codec.predict_bits (B^UB), codec time from the calibration.
So the chosen configuration is the lexicographic best of (deepest split, lowest s, Tier-1 order)
among feasible ones: `brute_force` enumerates the whole space and takes exactly that maximum, and
the tests check that the two agree. With no feasible configuration both return the lowest-latency
one with feasible=False.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InvalidArgument
from .calibration import CalibrationTable
from .profile import Profile

__all__ = ["Budget", "SearchSpace", "Plan", "Planner"]


@dataclass(frozen=True)
class Budget:
    deadline_ms: float = math.inf     # D
    memory_bytes: float = math.inf    # M (device)
    ar_bits: float = math.inf         # M_ar: cap on the offloaded frame, bits (AR)
    include_server: bool = False      # D covers decode + server compute too (default: Eq. 2)
    max_loss: float = math.inf        # measured accuracy loss allowed (pp), from a quality table

    def __post_init__(self):
        for k in ("deadline_ms", "memory_bytes", "ar_bits", "max_loss"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
                raise InvalidArgument(f"{k} must be a number >= 0, got {v!r}")


@dataclass(frozen=True)
class SearchSpace:
    sparsities: tuple = (0.0, 0.25, 0.5, 0.65, 0.75, 0.85, 0.9, 0.95, 0.98)
    blocks: tuple = ((1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (4, 4))
    qbits: tuple = (8,)
    splits: tuple | None = None       # None: all (0..L single shot, 1..L autoregressive)
    allow_raw: bool = True            # single shot: split 0 = send the raw input (cloud only)
    max_new_tokens: int = 16          # AR: w in 1..max_new_tokens
    prompt_tokens: int = 0            # AR: p
    block_policy: str = "finest"      # Tier 1: "finest" (most blocks that fit) or "fastest"

    def __post_init__(self):
        sp = tuple(float(s) for s in self.sparsities)
        if not sp or any(not (0.0 <= s < 1.0) for s in sp) or len(set(sp)) != len(sp):
            raise InvalidArgument(f"sparsities must be distinct values in [0, 1), got {self.sparsities!r}")
        bl = tuple((int(a), int(b)) for a, b in self.blocks)
        if not bl or any(min(b) < 1 or max(b) > 255 for b in bl) or len(set(bl)) != len(bl):
            raise InvalidArgument(f"blocks must be distinct (M+, M-) pairs in 1..255, got {self.blocks!r}")
        q = tuple(int(v) for v in self.qbits)
        if not q or any(not 1 <= v <= 16 for v in q):
            raise InvalidArgument(f"qbits must be 1..16, got {self.qbits!r}")
        if self.block_policy not in ("finest", "fastest"):
            raise InvalidArgument(f"block_policy must be 'finest' or 'fastest', got {self.block_policy!r}")
        if int(self.max_new_tokens) < 1 or int(self.prompt_tokens) < 0:
            raise InvalidArgument("max_new_tokens must be >= 1 and prompt_tokens >= 0")
        object.__setattr__(self, "sparsities", tuple(sorted(sp)))
        object.__setattr__(self, "blocks", bl)
        object.__setattr__(self, "qbits", q)

    def qbits_for(self, blocks):
        return self.qbits[: max(blocks)]


@dataclass
class Plan:
    feasible: bool
    kind: str
    split: int
    sparsity: float | None
    blocks: tuple | None
    qbits: tuple | None
    w: int | None
    bits: int
    device_ms: float
    encode_ms: float
    transfer_ms: float
    decode_ms: float
    server_ms: float
    latency_ms: float                 # the constrained latency (Eq. 2 / Eq. 5)
    memory_bytes: float
    n_layers: int
    evaluated: int = 0                # configurations the search evaluated
    link: str = ""
    loss_pp: float | None = None      # measured accuracy loss (quality table); None: not bounded

    @property
    def total_ms(self):
        return self.device_ms + self.encode_ms + self.transfer_ms + self.decode_ms + self.server_ms

    def key(self):
        return (self.feasible, self.split, self.sparsity, self.blocks, self.w)

    def as_dict(self):
        d = {k: getattr(self, k) for k in ("feasible", "kind", "split", "sparsity", "blocks", "qbits", "w", "bits",
                                            "device_ms", "encode_ms", "transfer_ms", "decode_ms", "server_ms",
                                            "latency_ms", "memory_bytes", "n_layers", "evaluated", "link",
                                            "loss_pp")}
        d["total_ms"] = self.total_ms
        d["blocks"] = list(self.blocks) if self.blocks else None
        d["qbits"] = list(self.qbits) if self.qbits else None
        return d

    def describe(self) -> str:
        what = "raw input (cloud only)" if self.split == 0 else f"after layer {self.split}/{self.n_layers}"
        lines = [f"plan: {'FEASIBLE' if self.feasible else 'NOT FEASIBLE (lowest-latency fallback)'}  ({self.link})"]
        if self.w is not None:
            lines.append(f"  autoregressive hand-off at step w={self.w}, split {what}")
        else:
            lines.append(f"  split: {what}")
        if self.sparsity is not None:
            lines.append(f"  codec: sparsity={self.sparsity:g} blocks(M+,M-)={tuple(self.blocks)} "
                         f"qbits={list(self.qbits)}")
        lines.append(f"  payload: {self.bits} bits = {self.bits / 8 / 1024:.1f} KiB;  device memory "
                     f"{self.memory_bytes / 2**20:.1f} MiB")
        for name, v in (("device compute", self.device_ms), ("encode", self.encode_ms),
                        ("transfer", self.transfer_ms), ("decode", self.decode_ms),
                        ("server compute", self.server_ms)):
            lines.append(f"  {name:<15s}{v:10.2f} ms")
        lines.append(f"  {'total':<15s}{self.total_ms:10.2f} ms   (constrained latency {self.latency_ms:.2f} ms)")
        if self.loss_pp is None:
            loss = "not bounded (no measured quality table)"
        elif math.isinf(self.loss_pp):
            loss = "unknown: the quality table has no measurement of this configuration"
        else:
            loss = f"{self.loss_pp:.2f} pp, measured (quality table)"
        lines.append(f"  accuracy loss: {loss}")
        lines.append(f"  configurations evaluated: {self.evaluated}")
        return "\n".join(lines)


class Planner:
    """Plans splits for one model (profile) on one device (calibration) over one link.

    link: anything with transfer_time(nbytes, start_ms, rtt_ms) -> ms: collab.net.Trace,
    collab.net.FixedRateLink, or planner.outage.OutageLink (Eq. 1).
    server_profile: the same model profiled on the server (same layers); without it the
    server time is the device time divided by server_speedup.
    """

    def __init__(self, profile: Profile, calibration: CalibrationTable, link, *, rtt_ms: float = 0.0,
                 budget: Budget = Budget(), space: SearchSpace = SearchSpace(), server_profile: Profile = None,
                 server_speedup: float = 1.0, quality=None):
        if not hasattr(link, "transfer_time"):
            raise InvalidArgument(f"link must have transfer_time(nbytes, start_ms, rtt_ms), got {link!r}")
        if server_profile is not None and (server_profile.n_layers != profile.n_layers
                                           or server_profile.kind != profile.kind):
            raise InvalidArgument("server profile must describe the same layers as the device profile")
        if not (server_speedup > 0 and math.isfinite(server_speedup)):
            raise InvalidArgument("server_speedup must be > 0")
        if not (rtt_ms >= 0 and math.isfinite(rtt_ms)):
            raise InvalidArgument("rtt_ms must be finite and >= 0")
        self.profile, self.calibration, self.link = profile, calibration, link
        self.rtt_ms, self.budget, self.space = float(rtt_ms), budget, space
        self.ar = profile.kind == "autoregressive"
        L = profile.n_layers
        if space.splits is None:
            splits = list(range(1, L + 1)) + ([0] if space.allow_raw and not self.ar else [])
        else:
            splits = sorted(set(int(s) for s in space.splits))
            if any(not (0 if not self.ar else 1) <= s <= L for s in splits):
                raise InvalidArgument(f"splits must be in {0 if not self.ar else 1}..{L}, got {space.splits!r}")
        self.splits = sorted(splits, reverse=True)
        sp = server_profile or profile
        div = 1.0 if server_profile is not None else server_speedup
        if self.ar:
            self._dev_step = profile.device_ms("decode_ms")          # T_{1:l}
            self._full_step = self._dev_step[-1]                     # T_full
            self._prefill_full = profile.device_ms("prefill_ms_per_token")[-1]
            self._srv_prefill_rest = sp.server_ms("prefill_ms_per_token") / div
            w = np.array([l.weight_bytes for l in profile.layers], dtype=np.float64)
            self._ar_mem_static = w.sum() + max(l.work_bytes for l in profile.layers)
            self._kv_per_token = float(sum(l.kv_bytes_per_token for l in profile.layers))
        else:
            self._dev = profile.device_ms("ms")
            self._srv = sp.server_ms("ms") / div
            self._mem = profile.memory_bytes()
        self._bits_cache = {}
        self._losses = self._loss_lookup(quality)

    def _loss_lookup(self, quality):
        """{(split, s, blocks, qbits): measured loss in pp} from a collab.quality/1 table of SLICER
        configurations, or None without one. A bound on the loss needs the table: configurations
        it does not hold are then infeasible (unmeasured means unbounded), the raw input loses 0."""
        if quality is None:
            if math.isfinite(self.budget.max_loss):
                from .quality import NoTableError
                raise NoTableError("a bound on the accuracy loss needs a measured quality table of this model "
                                   "(e.g. benchmarks/codec/frontier.py --quality-table): without one the planner "
                                   "cannot bound accuracy")
            return None
        from .quality import QualityError
        if quality.model_name != self.profile.model:
            raise QualityError(f"the quality table was measured on {quality.model_name!r}, the profile is of "
                               f"{self.profile.model!r}: its numbers do not hold for this model")
        out = {}
        for e in quality.entries:
            c = e.config
            if (e.policy != "slicer" or float(c.get("delta", 0.0)) != 0.0
                    or not {"sparsity", "blocks", "qbits"} <= set(c)):
                continue  # the planner tunes (s, M+, M-) with fixed bits: other entries are not its choices
            q = c["qbits"] if isinstance(c["qbits"], (list, tuple)) else [c["qbits"]]
            out[(e.split, float(c["sparsity"]), tuple(int(b) for b in c["blocks"]),
                 tuple(int(v) for v in q))] = quality.loss(e)
        return out

    def loss_pp(self, split, s, blocks):
        """Measured loss of one configuration (pp): 0 for the raw input, inf when not measured,
        None without a quality table."""
        if self._losses is None:
            return None
        if split == 0:
            return 0.0
        b = (int(blocks[0]), int(blocks[1]))
        return self._losses.get((int(split), float(s), b, tuple(self.space.qbits_for(b))), math.inf)

    # -- model pieces ---------------------------------------------------------------------------
    def link_name(self):
        return f"{getattr(self.link, 'name', None) or self.link}, rtt {self.rtt_ms:g} ms"

    def shape_at(self, split, w=None):
        if self.ar:
            return (self.space.prompt_tokens + int(w), self.profile.hidden(split))
        return self.profile.split_shape(split)

    def bits(self, shape, s, blocks):
        key = (shape, s, blocks)
        v = self._bits_cache.get(key)
        if v is None:
            from .. import codec

            v = self._bits_cache[key] = codec.predict_bits(shape, s, blocks=blocks, qbits=self.space.qbits_for(blocks))
        return v

    def evaluate(self, split, s, blocks, w=None, start_ms=0.0):
        """Evaluate configurations (arrays broadcast together; split 0 = the raw input, no codec).
        Returns a dict of numpy arrays: bits, device, encode, transfer, decode, server, latency,
        memory, feasible."""
        split = np.atleast_1d(np.asarray(split, dtype=np.int64))
        s = np.atleast_1d(np.asarray(s, dtype=np.float64))
        blocks = np.atleast_2d(np.asarray(blocks, dtype=np.int64))
        n = max(split.size, s.size, blocks.shape[0])
        split, s = np.broadcast_to(split, (n,)), np.broadcast_to(s, (n,))
        blocks = np.broadcast_to(blocks, (n, 2))
        w = None if w is None else np.broadcast_to(np.atleast_1d(np.asarray(w, dtype=np.int64)), (n,))
        raw = split == 0
        shapes = [self.shape_at(int(split[i]), None if w is None else int(w[i])) for i in range(n)]
        numel = np.array([math.prod(sh) for sh in shapes], dtype=np.float64)
        bits = np.array([self.profile.input_bytes() * 8 if raw[i] else
                         self.bits(shapes[i], float(s[i]), (int(blocks[i, 0]), int(blocks[i, 1])))
                         for i in range(n)], dtype=np.float64)
        nbytes = np.ceil(bits / 8)
        enc = np.where(raw, 0.0, self.calibration.encode_time_ms(numel, np.maximum(s, 0), np.maximum(blocks, 1)))
        dec = np.where(raw, 0.0, self.calibration.decode_time_ms(numel, np.maximum(s, 0), np.maximum(blocks, 1)))
        if self.ar:
            device = (self.space.prompt_tokens * self._prefill_full + (w - 1) * self._full_step
                      + self._dev_step[split])
            server = (self.space.prompt_tokens + w) * self._srv_prefill_rest[split]
            memory = self._ar_mem_static + self._kv_per_token * (self.space.prompt_tokens + w) + nbytes
        else:
            device = self._dev[split]
            server = self._srv[split]
            memory = self._mem[split] + nbytes
        start = float(start_ms) + device + enc
        transfer = np.asarray(self.link.transfer_time(nbytes, start, self.rtt_ms), dtype=np.float64)
        transfer = np.broadcast_to(transfer, (n,))
        latency = device + enc + transfer
        if self.budget.include_server:
            latency = latency + dec + server
        feasible = (latency <= self.budget.deadline_ms) & (memory <= self.budget.memory_bytes)
        within = np.ones(n, dtype=bool)
        if self._losses is not None:
            loss = np.array([self.loss_pp(int(split[i]), float(s[i]), blocks[i]) for i in range(n)])
            within = loss <= self.budget.max_loss + 1e-9  # a difference of measured numbers: no float dust
            feasible &= within
        if self.ar:
            feasible &= bits <= self.budget.ar_bits
        return dict(bits=bits, device=device, encode=enc, transfer=transfer, decode=dec, server=server,
                    latency=latency, memory=memory, feasible=feasible, within_loss=within)

    def _plan_from(self, split, s, blocks, w, ev, i, evaluated):
        raw = split == 0
        return Plan(feasible=bool(ev["feasible"][i]), kind=self.profile.kind, split=int(split),
                    sparsity=None if raw else float(s), blocks=None if raw else (int(blocks[0]), int(blocks[1])),
                    qbits=None if raw else self.space.qbits_for((int(blocks[0]), int(blocks[1]))),
                    w=None if w is None else int(w), bits=int(ev["bits"][i]), device_ms=float(ev["device"][i]),
                    encode_ms=float(ev["encode"][i]), transfer_ms=float(ev["transfer"][i]),
                    decode_ms=float(ev["decode"][i]), server_ms=float(ev["server"][i]),
                    latency_ms=float(ev["latency"][i]), memory_bytes=float(ev["memory"][i]),
                    n_layers=self.profile.n_layers, evaluated=evaluated, link=self.link_name(),
                    loss_pp=self.loss_pp(int(split), float(s), blocks))

    # -- configuration space ---------------------------------------------------------------------
    def configurations(self):
        """All configurations as arrays (split, s, blocks[n,2], w or None)."""
        sp, bl = self.space.sparsities, self.space.blocks
        rows = []
        ws = list(range(1, self.space.max_new_tokens + 1)) if self.ar else [0]
        for w in ws:
            for l in self.splits:
                if l == 0:
                    rows.append((0, -1.0, 0, 0, w))
                    continue
                for s in sp:
                    for b in bl:
                        rows.append((l, s, b[0], b[1], w))
        a = np.array(rows, dtype=np.float64)
        return (a[:, 0].astype(np.int64), a[:, 1], a[:, 2:4].astype(np.int64),
                a[:, 4].astype(np.int64) if self.ar else None)

    def _tier1_keys(self, blocks, latency):
        """np.lexsort keys (last = primary) ordering block choices at one (split, s)."""
        if self.space.block_policy == "finest":
            return [blocks[:, 1], blocks[:, 0], latency, -blocks.sum(1)]
        return [blocks[:, 1], blocks[:, 0], blocks.sum(1), latency]

    def _order(self, split, s, blocks, w, latency):
        """Preference order (best first) for feasible configurations: deepest (w,) split,
        lowest sparsity (raw input counts as no sparsity), then the Tier-1 block order."""
        keys = self._tier1_keys(blocks, latency) + [s, -split]
        if w is not None:
            keys.append(-w)
        return np.lexsort(keys)

    def _fallback(self, split, s, blocks, w, ev, evaluated):
        """Nothing feasible: the lowest-latency configuration that fits memory and the loss bound
        (else memory only, else any): missing the deadline is better than losing accuracy."""
        ok = ev["memory"] <= self.budget.memory_bytes
        if (ok & ev["within_loss"]).any():
            ok &= ev["within_loss"]
        if self.ar:
            ok &= ev["bits"] <= self.budget.ar_bits
        cand = np.flatnonzero(ok) if ok.any() else np.arange(split.size)
        keys = [blocks[cand, 1], blocks[cand, 0], blocks[cand].sum(1), s[cand], -split[cand]]
        if w is not None:
            keys.append(-w[cand])
        keys.append(ev["latency"][cand])
        i = cand[np.lexsort(keys)[0]]
        return self._plan_from(split[i], s[i], blocks[i], None if w is None else w[i], ev, i, evaluated)

    def brute_force(self, start_ms=0.0) -> Plan:
        """Evaluate every configuration; return the preferred feasible one (or the fallback)."""
        split, s, blocks, w = self.configurations()
        ev = self.evaluate(split, s, blocks, w, start_ms)
        f = np.flatnonzero(ev["feasible"])
        if f.size == 0:
            return self._fallback(split, s, blocks, w, ev, split.size)
        order = self._order(split[f], s[f], blocks[f], None if w is None else w[f], ev["latency"][f])
        i = f[order[0]]
        return self._plan_from(split[i], s[i], blocks[i], None if w is None else w[i], ev, i, split.size)

    def search(self, start_ms=0.0) -> Plan:
        """SLICER's hierarchical search (Tier 3 retreat split / Tier 2 sparsity / Tier 1 blocks)."""
        D, M = self.budget.deadline_ms, self.budget.memory_bytes
        bl = np.array(self.space.blocks, dtype=np.int64)
        evaluated = 0
        ws = range(self.space.max_new_tokens, 0, -1) if self.ar else [None]
        for w in ws:
            if w is not None:
                # Device time and memory only grow with l and with w: prune whole steps.
                base = self.space.prompt_tokens * self._prefill_full + (w - 1) * self._full_step
                if base > D or self._ar_mem_static + self._kv_per_token * (self.space.prompt_tokens + w) > M:
                    continue
            for l in self.splits:                                   # Tier 3: retreat the split
                if w is None:
                    if self._mem[l] > M or self._dev[l] > D:        # cannot fit whatever the codec does
                        continue
                elif base + self._dev_step[l] > D:
                    continue
                if l == 0:
                    ev = self.evaluate(0, -1.0, (0, 0), None, start_ms)
                    evaluated += 1
                    if ev["feasible"][0]:
                        return self._plan_from(0, -1.0, (0, 0), None, ev, 0, evaluated)
                    continue
                for s in self.space.sparsities:                     # Tier 2: raise sparsity
                    ev = self.evaluate(l, s, bl, w, start_ms)       # Tier 1: all block counts
                    evaluated += len(bl)
                    f = np.flatnonzero(ev["feasible"])
                    if f.size:
                        i = f[np.lexsort(self._tier1_keys(bl[f], ev["latency"][f]))[0]]
                        return self._plan_from(l, s, bl[i], w, ev, i, evaluated)
        plan = self.brute_force(start_ms)
        plan.evaluated += evaluated
        return plan

    def with_link(self, link, rtt_ms=None) -> "Planner":
        """The same planner over another link (re-planning)."""
        p = object.__new__(Planner)
        p.__dict__.update(self.__dict__)
        p.link = link
        if rtt_ms is not None:
            p.rtt_ms = float(rtt_ms)
        return p
