"""Device side of the split VLM: mtmd encodes the image, the head runs layers [0, l) over text
and image rows, the server (collab.llm's "llm" task, unchanged: it only sees rows) runs the
tail and answers.

    dev = VlmDevice(mmproj="models/vlm/collab-vlm-tiny.mmproj.gguf", head=head, full=full)
    g = dev.ask(image_u8, "What is this item?", mode="roundtrip", client=client)

The prompt layout is mtmd's: text tokens, then the image rows between the literal "<img>" and
"</img>" (what mtmd's internvl path inserts), then the question. Everything native: the image
encoder is collab_vlm_vision_* (libmtmd), the head/tail are collab_llm_* sessions.

Image rows on the wire: ``policy`` (collab.llm.protocol.RowPolicy) applies to all prefill rows;
RowPolicy.exact() is the identity R (the split then answers exactly as the unsplit model).
MindFusion's R: collab.vlm.codec.image_row_policy (the trained FC codec on the image rows,
text exact; the server is collab.vlm.codec.VlmTask). ``reduce`` (ask) replaces the image rows
entering layer l by fewer rows before they travel (collab.vlm.drop's token-dropping baselines).
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import InvalidArgument
from ..llm.device import Device, Generation
from .mtmd import check_image, chat_text, to_model_size

IMG_OPEN, IMG_CLOSE = "<img>", "</img>"
SPLIT_MODES = ("device-only", "roundtrip", "kv-handoff", "shortcut")


def vision_available() -> bool:
    from .. import _native

    return bool(getattr(_native, "vlm_available", lambda: False)())


class NativeVision:
    """collab_vlm_vision over an mmproj + the text model file (n_embd must match)."""

    def __init__(self, mmproj, text_model, n_threads: int = 2):
        from .. import _native

        if not vision_available():
            raise InvalidArgument("this collab build has no VLM image encoder (libmtmd not found at build time)")
        self._v = _native.VlmVision(str(mmproj), str(text_model), int(n_threads))
        self.image_size, self.n_tokens, self.n_embd = self._v.image_size, self._v.n_tokens, self._v.n_embd

    def encode(self, img) -> np.ndarray:
        a = to_model_size(check_image(img), self.image_size)
        return self._v.encode(np.ascontiguousarray(a))


class VlmDevice(Device):
    """collab.llm.device.Device whose prompt holds an image: prefill = text, image rows, text."""

    def __init__(self, mmproj, head=None, full=None, *, n_ctx: int = 512, n_threads: int = 2, policy=None,
                 task: str = "llm"):
        super().__init__(head=head, full=full, n_ctx=n_ctx, n_threads=n_threads, policy=policy, task=task)
        self.vision = NativeVision(mmproj, head or full, n_threads)
        self._pending = None
        self._reduce, self._n_sent = None, 0

    def layout(self, question: str):
        """(tokens before the image, tokens after it) for a question."""
        text = chat_text(question, "\x00")
        pre, post = text.split("\x00")
        tok = self.vocab_model.tokenize
        # as mtmd_tokenize: each text piece on its own (a SentencePiece vocabulary prefixes each
        # with a space), special tokens (BOS, if the model adds one) only at the very start
        before = np.concatenate([tok(pre, add_special=True), tok(IMG_OPEN, add_special=False)])
        after = np.concatenate([tok(IMG_CLOSE, add_special=False), tok(post, add_special=False)])
        return before, after

    def ask(self, img, question: str, *, mode: str = "roundtrip", client=None, max_tokens: int = 16,
            policy=None, reduce=None, ignore_eog: bool = False) -> Generation:
        """reduce: None, or f(image rows entering layer l (m, d)) -> (k, d) rows that travel in
        their place (split modes; kv-handoff would hand over a head state of the full prompt,
        so it is refused with reduce)."""
        if mode not in SPLIT_MODES:
            raise InvalidArgument(f"mode must be one of {SPLIT_MODES}, got {mode!r}")
        if reduce is not None and mode in ("device-only", "kv-handoff"):
            raise InvalidArgument(f"reduce applies to the rows sent to the server's tail, not to mode {mode}")
        before, after = self.layout(question)
        t = time.perf_counter()
        rows = self.vision.encode(img)
        enc_s = time.perf_counter() - t
        self._pending = (np.asarray(before), rows, np.asarray(after))
        self._reduce, self._n_sent = reduce, rows.shape[0]
        try:
            g = self.generate(question, mode=mode, client=client, max_tokens=max_tokens, policy=policy,
                              ignore_eog=ignore_eog)
        finally:
            self._pending = self._reduce = None
        # the image encode is device work before the prefill: part of TTFT and device time
        g.ttft_s += enc_s
        g.total_s += enc_s
        g.device_s += enc_s
        g.extra.update(encode_s=enc_s, image_rows=int(rows.shape[0]))
        return g

    # -- hooks into collab.llm.device.Device ---------------------------------------------
    def prompt_tokens(self, prompt, chat=None):
        if self._pending is None:
            raise InvalidArgument("VlmDevice answers through ask(image, question)")
        before, rows, after = self._pending
        # positions only: the Device checks n_ctx and reports the prompt length with them
        return prompt, np.zeros(len(before) + rows.shape[0] + len(after), np.int32)

    def _prefill(self, s):
        before, rows, after = self._pending
        # head: hidden rows of every input; full: logits of the last one (only the last is used)
        return [s.decode(before), s.decode_rows(rows), s.decode(after)]

    def _head_rows(self, s, toks):
        hb, hi, ha = self._prefill(s)
        if self._reduce is not None:
            hi = np.asarray(self._reduce(hi), np.float32)
            if hi.ndim != 2 or not 1 <= hi.shape[0] <= self._pending[1].shape[0] or hi.shape[1] != hb.shape[1]:
                raise InvalidArgument(f"reduce must return 1..m rows of width {hb.shape[1]}, got {hi.shape}")
        self._n_sent = hi.shape[0]
        return np.concatenate([hb, hi, ha], 0)

    def _prefill_meta(self) -> dict:
        before, _, after = self._pending
        return {"chunks": f"{len(before)},{self._n_sent},{len(after)}"}

    def _full_prefill(self, s, toks):
        return self._prefill(s)[-1][-1]
