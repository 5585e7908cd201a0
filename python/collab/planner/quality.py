"""Measured quality tables and the row-policy chooser: bytes against measured quality loss.

A split system can send the rows it hands to the server exactly, through SLICER, or through a
trained codec (MindFusion's FC encoder); each costs a known number of bytes per item (row,
patch, token) and loses a *measured* amount of quality. The table holds those measurements;
the chooser picks, for a link and a quality-loss bound, the policy with the least expected
latency that stays within the bound. Nothing here knows about LLMs or ViTs: the system that
measured the table names its policies and configs, and reads the choice back.

JSON schema "collab.quality/1":
    {"schema": "collab.quality/1",
     "system": "llm",                                 # who measured it and reads the choice
     "model": {"name": "...", "sha256": "<64 hex>"},  # the model the numbers hold for
     "metric": {"name": "tf_top1", "unit": "fraction", "higher_is_better": true,
                "description": "..."},
     "item": "early row (a row before the question)",
     "measured": {"by": "...", "command": "...", "items": "...", "n": 12, "created": "...",
                  "splits": {"15": {...the same keys, for the run that measured split 15}, ...}},
     "entries": [{"split": 15, "policy": "exact", "config": {}, "reference": true,
                  "bytes_per_item": 2304.0, "quality": 0.977, "extra": {"ppl": 2.0},
                  "encode_ms_per_item": 0.0, "decode_ms_per_item": 0.0}, ...]}
Each split has exactly one reference entry (the exact policy, loss 0 by definition); an
entry's loss is (reference quality - its quality) in percentage points for a fraction metric
(the other way round when lower is better), in the metric's own unit otherwise.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .._validate import check_float, check_int
from ..errors import InvalidArgument
from ._io import read_json, write_json

__all__ = ["SCHEMA", "QualityError", "QualityEntry", "QualityTable", "Choice", "load_quality_table", "merge_tables",
           "choose", "NoTableError", "BoundError"]

SCHEMA = "collab.quality/1"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class QualityError(InvalidArgument):
    """A quality table that does not follow collab.quality/1, or one for another model."""


class NoTableError(InvalidArgument):
    """No measured quality table: the quality loss of a lossy policy cannot be bounded."""


class BoundError(InvalidArgument):
    """No policy in the table meets the quality-loss bound (or the latency target)."""


def _num(what, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise QualityError(f"{what} must be a finite number, got {v!r}")
    v = float(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise QualityError(f"{what} must be in [{lo}, {hi}], got {v!r}")
    return v


@dataclass(frozen=True)
class QualityEntry:
    split: int
    policy: str
    config: dict
    bytes_per_item: float
    quality: float
    reference: bool = False
    encode_ms_per_item: float = 0.0
    decode_ms_per_item: float = 0.0
    extra: dict = field(default_factory=dict)

    def key(self):
        return self.split, self.policy, tuple(sorted((k, str(v)) for k, v in self.config.items()))

    def label(self) -> str:
        cfg = ",".join(f"{k}={v}" for k, v in sorted(self.config.items()))
        return f"{self.policy}({cfg})" if cfg else self.policy

    def as_dict(self) -> dict:
        return {"split": self.split, "policy": self.policy, "config": dict(self.config), "reference": self.reference,
                "bytes_per_item": self.bytes_per_item, "quality": self.quality,
                "encode_ms_per_item": self.encode_ms_per_item, "decode_ms_per_item": self.decode_ms_per_item,
                "extra": dict(self.extra)}


@dataclass
class QualityTable:
    system: str
    model_name: str
    model_sha256: str
    metric: dict
    entries: list
    item: str = "item"
    measured: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.system, str) or not self.system:
            raise QualityError("system must be a non-empty string")
        if not isinstance(self.model_sha256, str) or not _HEX64.match(self.model_sha256):
            raise QualityError(f"model.sha256 must be 64 lower-case hex digits, got {self.model_sha256!r}")
        m = self.metric
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not m["name"]:
            raise QualityError("metric must be an object with a name")
        if not isinstance(m.get("higher_is_better"), bool):
            raise QualityError("metric.higher_is_better must be true or false")
        if m.get("unit", "fraction") not in ("fraction", "value"):
            raise QualityError("metric.unit must be 'fraction' or 'value'")
        if not self.entries:
            raise QualityError("a quality table needs at least one entry")
        seen, refs = set(), {}
        for e in self.entries:
            if e.key() in seen:
                raise QualityError(f"duplicate entry {e.label()} at split {e.split}")
            seen.add(e.key())
            if e.reference:
                if e.split in refs:
                    raise QualityError(f"split {e.split} has two reference entries")
                refs[e.split] = e
        missing = sorted({e.split for e in self.entries} - set(refs))
        if missing:
            raise QualityError(f"split(s) {missing} have no reference entry (the exact policy, loss 0)")
        self._refs = refs

    # ---------------------------------------------------------------- reading
    @property
    def fraction(self) -> bool:
        return self.metric.get("unit", "fraction") == "fraction"

    def splits(self):
        return sorted(self._refs)

    def loss(self, e: QualityEntry) -> float:
        """Quality lost against the split's reference (pp for a fraction metric); >= 0 is worse."""
        ref = self._refs[e.split].quality
        d = (ref - e.quality) if self.metric["higher_is_better"] else (e.quality - ref)
        return 100.0 * d if self.fraction else d

    def at(self, split: int) -> list:
        if split not in self._refs:
            raise QualityError(f"the quality table has no entries for split {split} (it has {self.splits()})")
        return [e for e in self.entries if e.split == split]

    def check_model(self, sha256: str, what: str = "the model in use") -> None:
        if sha256 != self.model_sha256:
            raise QualityError(f"the quality table was measured on {self.model_name} (sha256 {self.model_sha256[:12]}...), "
                               f"not on {what} (sha256 {sha256[:12]}...): its numbers do not hold here")

    # ---------------------------------------------------------------- files
    def as_dict(self) -> dict:
        return {"schema": SCHEMA, "system": self.system, "model": {"name": self.model_name, "sha256": self.model_sha256},
                "metric": dict(self.metric), "item": self.item, "measured": dict(self.measured),
                "entries": [e.as_dict() for e in self.entries]}

    def save(self, path) -> None:
        write_json(path, self.as_dict())

    @classmethod
    def from_dict(cls, d) -> "QualityTable":
        if not isinstance(d, dict):
            raise QualityError("a quality table is a JSON object")
        if d.get("schema") != SCHEMA:
            raise QualityError(f"schema must be {SCHEMA!r}, got {d.get('schema')!r}")
        model = d.get("model")
        if not isinstance(model, dict):
            raise QualityError("model must be an object {name, sha256}")
        raw = d.get("entries")
        if not isinstance(raw, list):
            raise QualityError("entries must be a list")
        entries = []
        for i, r in enumerate(raw):
            if not isinstance(r, dict):
                raise QualityError(f"entries[{i}] must be an object")
            w = f"entries[{i}]"
            split = r.get("split")
            if isinstance(split, bool) or not isinstance(split, int) or split < 0:
                raise QualityError(f"{w}.split must be an integer >= 0, got {split!r}")
            if not isinstance(r.get("policy"), str) or not r["policy"]:
                raise QualityError(f"{w}.policy must be a non-empty string")
            cfg = r.get("config", {})
            if not isinstance(cfg, dict):
                raise QualityError(f"{w}.config must be an object")
            extra = r.get("extra", {})
            if not isinstance(extra, dict):
                raise QualityError(f"{w}.extra must be an object")
            ref = r.get("reference", False)
            if not isinstance(ref, bool):
                raise QualityError(f"{w}.reference must be true or false")
            entries.append(QualityEntry(
                split=split, policy=r["policy"], config=cfg, reference=ref, extra=extra,
                bytes_per_item=_num(f"{w}.bytes_per_item", r.get("bytes_per_item"), lo=0.0),
                quality=_num(f"{w}.quality", r.get("quality")),
                encode_ms_per_item=_num(f"{w}.encode_ms_per_item", r.get("encode_ms_per_item", 0.0), lo=0.0),
                decode_ms_per_item=_num(f"{w}.decode_ms_per_item", r.get("decode_ms_per_item", 0.0), lo=0.0)))
        metric = d.get("metric")
        t = cls(system=d.get("system"), model_name=str(model.get("name", "")), model_sha256=model.get("sha256"),
                metric=metric, entries=entries, item=str(d.get("item", "item")),
                measured=d.get("measured") if isinstance(d.get("measured"), dict) else {})
        if t.fraction:
            for e in entries:
                if not 0.0 <= e.quality <= 1.0:
                    raise QualityError(f"{e.label()} at split {e.split}: quality {e.quality} is not a fraction in [0, 1]")
        return t


def load_quality_table(path, *, system: str | None = None, model_sha256: str | None = None) -> QualityTable:
    """Read and validate a table; with system / model_sha256 also check it is the right one."""
    d, name = read_json(path, QualityError, "quality table")
    try:
        t = QualityTable.from_dict(d)
    except QualityError as e:
        raise QualityError(f"{name}: {e}") from None
    if system is not None and t.system != system:
        raise QualityError(f"{name}: measured for system {t.system!r}, not {system!r}")
    if model_sha256 is not None:
        t.check_model(model_sha256)
    return t


def merge_tables(old: QualityTable, new: QualityTable) -> QualityTable:
    """new's entries, plus old's entries at the splits new did not measure: a table measured one
    split point at a time keeps the others. Both must describe the same system, model and metric.
    measured["splits"] keeps each split's own measurement record (command, items, date)."""
    for what, a, b in (("system", old.system, new.system), ("model", old.model_sha256, new.model_sha256),
                       ("metric", old.metric.get("name"), new.metric.get("name")),
                       ("metric direction", old.metric.get("higher_is_better"), new.metric.get("higher_is_better")),
                       ("metric unit", old.metric.get("unit", "fraction"), new.metric.get("unit", "fraction")),
                       ("item", old.item, new.item)):
        if a != b:
            raise QualityError(f"cannot merge quality tables with a different {what} ({a!r} vs {b!r})")
    mine = set(new.splits())
    record = {k: v for k, v in new.measured.items() if k != "splits"}
    per = {str(s): dict(v) for s, v in (old.measured.get("splits") or {}).items()
           if isinstance(v, dict) and int(s) not in mine}
    old_record = {k: v for k, v in old.measured.items() if k != "splits"}
    for s in old.splits():
        if s not in mine:
            per.setdefault(str(s), old_record)
    per.update({str(s): record for s in mine})
    measured = dict(record, splits=dict(sorted(per.items(), key=lambda kv: int(kv[0]))))
    entries = [e for e in old.entries if e.split not in mine] + list(new.entries)
    return QualityTable(system=new.system, model_name=new.model_name, model_sha256=new.model_sha256,
                        metric=dict(new.metric), entries=sorted(entries, key=lambda e: e.split), item=new.item,
                        measured=measured)


@dataclass
class Choice:
    entry: QualityEntry
    loss: float             # measured loss against the reference (pp for a fraction metric)
    bytes: float            # expected bytes for the given number of items
    latency_ms: float       # transfer + RTT + codec time
    considered: list        # (entry, loss, bytes, latency_ms, why rejected or "") for every entry at the split

    def describe(self, unit: str = "pp") -> str:
        lines = [f"chose {self.entry.label()}: {self.bytes / 1024:.1f} KiB, expected {self.latency_ms:.1f} ms, "
                 f"measured loss {self.loss:.2f} {unit}"]
        for e, loss, b, lat, why in self.considered:
            mark = "*" if e is self.entry else " "
            lines.append(f" {mark} {e.label():<28} {b / 1024:9.1f} KiB {lat:9.1f} ms  loss {loss:6.2f} {unit}"
                         + (f"  ({why})" if why else ""))
        return "\n".join(lines)


def choose(table: QualityTable | None, *, split: int, items: int, bandwidth_bps: float | None = None,
           rtt_ms: float = 0.0, max_loss: float, latency_target_ms: float | None = None, fixed_bytes: float = 0.0,
           policies=None, link=None, start_ms: float = 0.0, accept=None) -> Choice:
    """The entry at ``split`` with the least expected latency whose measured loss is at most
    ``max_loss`` (pp for a fraction metric) and, when given, whose latency meets the target.
    Expected latency = transfer of (fixed_bytes + items * bytes_per_item) + RTT + items *
    (encode + decode ms per item); the transfer at ``bandwidth_bps``, or on ``link`` (a
    collab.net link: fixed rate or trace, its transfer_time from ``start_ms``). policies: only
    these policy names (the ones the caller can run); accept: a function entry -> "" when the
    caller can run that entry, else why not (finer than policies: a config the other end lacks).
    Raises NoTableError without a table and
    BoundError when nothing qualifies."""
    if table is None:
        raise NoTableError("no measured quality table: the quality loss of a compressed row policy cannot be "
                           "bounded; give one (measured by the benchmark) or pick the policy yourself")
    check_int("split", split, lo=0)
    items = check_int("items", items, lo=0)
    rtt = check_float("rtt_ms", rtt_ms, lo=0.0)
    if link is None:
        bw = check_float("bandwidth_bps", bandwidth_bps, lo=0.0, lo_open=True)
        transfer = lambda b: b * 8.0 / bw * 1e3 + rtt  # noqa: E731
    else:
        transfer = lambda b: float(link.transfer_time(b, start_ms, rtt))  # noqa: E731
    bound = check_float("max_loss", max_loss, lo=0.0)
    fixed = check_float("fixed_bytes", fixed_bytes, lo=0.0)
    if latency_target_ms is not None:
        check_float("latency_target_ms", latency_target_ms, lo=0.0, lo_open=True)
    considered, best = [], None
    for e in table.at(split):
        loss = table.loss(e)
        b = fixed + items * e.bytes_per_item
        lat = transfer(b) + items * (e.encode_ms_per_item + e.decode_ms_per_item)
        why = "not available here" if policies is not None and e.policy not in policies else ""
        if not why and accept is not None:
            why = accept(e) or ""
        if not why and loss > bound + 1e-9:  # the loss is a difference of two measured numbers: no float dust
            why = f"loss above {bound:g}"
        if not why and latency_target_ms is not None and lat > latency_target_ms:
            why = f"slower than {latency_target_ms:g} ms"
        considered.append((e, loss, b, lat, why))
        if not why and (best is None or (lat, loss) < (best[3], best[1])):
            best = (e, loss, b, lat)
    considered.sort(key=lambda c: c[3])
    if best is None:
        raise BoundError(f"no row policy at split {split} meets the bound (max loss {bound:g}"
                         + (f", latency <= {latency_target_ms:g} ms" if latency_target_ms is not None else "")
                         + "): " + "; ".join(f"{e.label()} {why}" for e, _, _, _, why in considered))
    return Choice(entry=best[0], loss=best[1], bytes=best[2], latency_ms=best[3], considered=considered)
