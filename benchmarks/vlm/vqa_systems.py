"""Shared by table3_compression.py and table4_ablation.py: the held-out VQA questions, the split
(device = VlmDevice, server = VlmTask over an in-process emulated link: bytes counted, times not
the point), and one function per evaluated system. Results are written after every system
(resumable: a finished system is not rerun).

A system is a dict: mode (roundtrip, or shortcut = the decoding shortcut D), policy (how the
prefill rows travel), reduce (token dropping), image_bytes (what the image rows cost on the
wire) and, for Table III, codec spans applied on the device (``SimulatedCodes``: the rows the
server would reconstruct, sent exact; bytes counted as codes), used where one payload would
need two codecs (text rows: the LLM's text codec, image rows: the image codec).
"""
from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from collab.llm.fcnet import FcRowPolicy
from collab.llm.protocol import RowPolicy, encode_rows
from collab.vlm.vqa import exact_match

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
_CODE_BYTES = {"f32": lambda m, k: 4 * m * k, "f16": lambda m, k: 2 * m * k, "int8": lambda m, k: m * (k + 4)}


def code_bytes(dtype: str, m: int, k: int) -> int:
    return _CODE_BYTES[dtype](m, k)


class SimulatedCodes:
    """Device-side Eq. 1 with several codecs: rows in each span go through encode -> codes
    rounded to ``dtype`` (as FcRowPolicy sends them) -> decode; everything then travels f32.
    ``coded_bytes`` / ``raw_bytes``: what the spans would cost as codes / as f32 rows."""

    def __init__(self, spans, dtype: str = "f16"):
        self.spans, self.dtype = spans, dtype      # [(lo, hi, codec)]
        self.coded_bytes = self.raw_bytes = 0

    def _q(self, c):
        if self.dtype == "f16":
            return c.astype(np.float16).astype(np.float32)
        if self.dtype == "int8":
            s = np.abs(c).max(1, keepdims=True) / 127.0
            s[s == 0] = 1.0
            return np.clip(np.rint(c / s), -127, 127) * s
        return c

    def encode(self, rows) -> bytes:
        rows = np.array(rows, np.float32)
        self.coded_bytes = self.raw_bytes = 0
        for lo, hi, codec in self.spans:
            hi = rows.shape[0] + hi if hi <= 0 else hi
            if hi > lo:
                rows[lo:hi] = codec.decode(self._q(np.asarray(codec.encode(rows[lo:hi]), np.float32)))
                self.coded_bytes += code_bytes(self.dtype, hi - lo, codec.code_dim)
                self.raw_bytes += 4 * (hi - lo) * rows.shape[1]
        return encode_rows(rows)


class Harness:
    def __init__(self, n: int, seed: int, at: int | None, threads: int, out: str, image_codecs: dict,
                 merge_from=(), redo=(), keep_as: str = ""):
        from collab.llm.models import default_model_path
        from collab.llm.server import prepare_parts
        from collab.net.link import LinkClient
        from collab.vit.data import load_fmnist
        from collab.vlm.codec import VlmTask
        from collab.vlm.models import mmproj_path
        from collab.vlm.split import VlmDevice
        from collab.vlm.vqa import make_set

        self.x, y = load_fmnist("test")
        self.samples = make_set(y, n, seed)
        self.full = default_model_path()
        self.head, self.tail, self.at = prepare_parts(self.full, at)
        self.mmproj = mmproj_path()
        self.dev = VlmDevice(self.mmproj, head=self.head, full=self.full, n_threads=threads)
        self.task = VlmTask(head=self.head, tail=self.tail, n_threads=threads, n_ctx=512,
                            image_codecs=list(image_codecs.values()))
        self.task.warm_up(nets=True)
        self.client = LinkClient([self.task])
        self.out, self.n, self.seed = Path(out), n, seed
        self.res = {}
        for p in [self.out, *map(Path, merge_from)]:  # earlier (or parallel) runs on the same questions
            if p.exists():
                old = json.loads(p.read_text())
                if old.get("n") == n and old.get("seed") == seed and old.get("split_at") == self.at:
                    self.res.update({k: v for k, v in old.get("results", {}).items() if k not in self.res})
        for name in redo:  # run again; the earlier result kept under name-keep_as when asked
            prev = self.res.pop(name, None)
            if prev is not None and keep_as:
                self.res[f"{name}-{keep_as}"] = prev
        self.meta = {}

    def log(self, msg):
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    def save(self):
        from collab.bench_io import save_json

        save_json(str(self.out), dict(n=self.n, seed=self.seed, split_at=self.at, mmproj=str(self.mmproj),
                                      **self.meta, questions=[s.to_dict() for s in self.samples],
                                      results=self.res))

    def finish(self, plot) -> int:
        """Write the JSON and plot(results, png path, n) next to it."""
        self.save()
        png = self.out.with_suffix(".png")
        plot(self.res, str(png), self.n)
        print(f"wrote {self.out} and {png}")
        return 0

    def run(self, name: str, make, mode: str = "roundtrip", max_tokens: int = 8):
        """make(sample, before, after, img) -> dict(policy=..., reduce=..., image_bytes=int)."""
        if name in self.res:
            self.log(f"{name}: done before (accuracy {self.res[name]['accuracy']:.3f})")
            return self.res[name]
        t0 = time.time()
        hits, per_t, answers, up, img_b, coded = 0, defaultdict(lambda: [0, 0]), [], [], [], []
        for k, s in enumerate(self.samples):
            img = self.x[s.image]
            before, after = self.dev.layout(s.question)
            spec = make(s, before, after, img)
            g = self.dev.ask(img, s.question, mode=mode, client=self.client, max_tokens=max_tokens,
                             policy=spec.get("policy") or RowPolicy.exact(), reduce=spec.get("reduce"))
            ans = g.text.strip()
            ok = exact_match(ans, s.answer)
            hits += ok
            per_t[s.template][0] += ok
            per_t[s.template][1] += 1
            answers.append(ans)
            up.append(g.extra["prefill_payload"])
            pol = spec.get("policy")
            if isinstance(pol, SimulatedCodes):  # all coded rows (text and image), known after encode
                coded.append((pol.coded_bytes, pol.raw_bytes))
            ib = spec.get("image_bytes", 4 * 64 * 576)
            img_b.append(np.nan if ib is None else ib)
            if (k + 1) % 20 == 0:
                self.log(f"{name}: {k + 1}/{len(self.samples)} acc {hits / (k + 1):.3f} ({time.time() - t0:.0f} s)")
        r = dict(accuracy=hits / len(self.samples), per_template={t: v[0] / v[1] for t, v in per_t.items()},
                 mode=mode, prefill_bytes_median=float(np.median(up)), image_bytes_median=float(np.nanmedian(img_b)) if not np.all(np.isnan(img_b)) else None,
                 answers=answers, seconds=round(time.time() - t0, 1))
        if coded:
            r["coded_bytes_median"], r["coded_raw_f32_median"] = (float(np.median([c[0] for c in coded])),
                                                                 float(np.median([c[1] for c in coded])))
        self.res[name] = r
        self.log(f"{name}: accuracy {r['accuracy']:.3f}, prefill {r['prefill_bytes_median'] / 1024:.1f} KiB, "
                 f"image rows {r['image_bytes_median']} B ({r['seconds']:.0f} s)")
        self.save()
        return r


def fc_policy(codec, dtype):
    def make(s, before, after, img):
        m = 64
        return {"policy": FcRowPolicy(codec, keep_last=len(after), skip_first=len(before), dtype=dtype),
                "image_bytes": code_bytes(dtype, m, codec.code_dim)}
    return make


def exact(s, before, after, img):
    return {"policy": RowPolicy.exact()}


def load_codecs(at: int, ratios, model):
    """{ratio: path} of the image codecs found for this split point (collab.vlm.codec)."""
    from collab.vlm.codec import find_image_codec

    out = {}
    for r in ratios:
        p = find_image_codec(at, r)
        if p is None:
            print(f"no image codec for split {at} ratio {r}: train it (python -m collab.vlm.codec_train "
                  f"--at {at} --ratio {r})", file=sys.stderr)
        else:
            out[r] = p
    return out


def add_common_arguments(ap, out_name: str) -> None:
    ap.add_argument("--n", type=int, default=100, help="held-out questions (Fashion-MNIST test images)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--at", type=int, default=15, help="split point l")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / out_name))
    ap.add_argument("--merge-from", nargs="*", default=[], help="JSONs of runs on the same questions whose "
                    "systems are taken as done (e.g. a part run in parallel with another --out)")
    ap.add_argument("--redo", default="", help="comma-separated systems to run again although done before")
    ap.add_argument("--keep-as", default="", help="keep the earlier results of --redo systems as NAME-KEEP_AS")
