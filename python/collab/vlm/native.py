"""The split VLM's device side in one native call (collab_vlm_device_ask), from Python.

    dev = NativeVlmDevice(head, mmproj, codec=find_image_codec(15, 8), mode="shortcut")
    a = dev.ask(open("boot.png", "rb").read(), "What is this item?", client)
    a.text, a.tokens, a.bytes_up, a.ttft_s

The same device a phone app links (collab.h, "VLM split, device side"): image decode and
resize, mtmd encode, head layers, the image rows as trained FC codes, the session protocol
of the "llm" task. Here its transport is a Python client session (collab.Client over gRPC,
collab.transport.InprocClient or collab.net.LinkClient); an app passes its own
collab_transport. Its messages are byte for byte those of collab.vlm.split.VlmDevice with
collab.vlm.codec.image_row_policy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidArgument

__all__ = ["NativeVlmDevice", "NativeAnswer", "SessionTransport", "native_device_available"]

_MODES = {"shortcut": 0, "kv-handoff": 1, "roundtrip": 2}
_CODES = {"f32": 0, "f16": 1, "int8": 2}


def native_device_available() -> bool:
    from .. import _native

    return hasattr(_native, "VlmDevice") and bool(getattr(_native, "vlm_available", lambda: False)())


class SessionTransport:
    """collab_transport's open / send / recv / close over a client's session (what the
    native device calls back into)."""

    def __init__(self, client):
        self.client = client
        self.sess = None

    def open(self, task: str, meta: dict) -> None:
        self.sess = self.client.session(task, meta)

    def send(self, kind: str, payload: bytes, meta: dict) -> None:
        self.sess.send(kind, payload, meta)

    def recv(self, timeout):
        return self.sess.recv() if timeout is None else self.sess.recv(timeout=timeout)

    def close(self, cancel: bool) -> None:
        cancel_fn = getattr(self.sess, "cancel", None)
        (cancel_fn if cancel and callable(cancel_fn) else self.sess.close)()


@dataclass
class NativeAnswer:
    tokens: list
    text: str
    stop: str
    prompt_tokens: int
    image_rows: int
    bytes_up: int
    bytes_down: int
    prefill_bytes: int
    state_bytes: int
    encode_s: float
    head_s: float
    ttft_s: float
    total_s: float
    extra: dict = field(default_factory=dict)


class NativeVlmDevice:
    """head: the head part GGUF (split_gguf); mmproj: the VLM's mmproj; codec: an image-row
    CLFN codec for this split (None: image rows exact). mode: shortcut, kv-handoff or
    roundtrip; code_dtype: f16, int8 or f32 (the codes of the image rows)."""

    def __init__(self, head, mmproj, *, codec=None, mode: str = "shortcut", code_dtype: str = "f16",
                 max_tokens: int = 16, n_ctx: int = 512, n_threads: int = 2, timeout_s: float = 300.0,
                 task: str = "llm"):
        from .. import _native
        from .._validate import check_choice, check_float, check_int

        if not native_device_available():
            raise InvalidArgument("this collab build has no native VLM device (libmtmd not found at build time)")
        check_choice("mode", mode, list(_MODES))
        check_choice("code_dtype", code_dtype, list(_CODES))
        check_int("max_tokens", max_tokens, 1, 4096)
        check_int("n_ctx", n_ctx, 16, 1 << 20)
        check_int("n_threads", n_threads, 1, 512)
        check_float("timeout_s", timeout_s, 0.001, 86400.0)
        self.mode = mode
        self._d = _native.VlmDevice(str(head), str(mmproj), "" if codec is None else str(codec), _MODES[mode],
                                    _CODES[code_dtype], int(max_tokens), int(n_ctx), int(n_threads),
                                    int(timeout_s * 1000), str(task))

    def ask(self, image: bytes, question: str, client, on_token=None) -> NativeAnswer:
        """image: PNG or JPEG bytes. on_token(token_id, piece_bytes) -> truthy stops early."""
        if not isinstance(image, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"image must be PNG/JPEG bytes, got {type(image).__name__}")
        if not isinstance(question, str):
            raise InvalidArgument("question must be a string")
        r = self._d.ask(bytes(image), question, SessionTransport(client), on_token)
        return NativeAnswer(tokens=list(r["tokens"]), text=r["text"], stop=r["stop"], prompt_tokens=r["n_prompt"],
                            image_rows=r["n_image_rows"], bytes_up=r["bytes_up"], bytes_down=r["bytes_down"],
                            prefill_bytes=r["prefill_bytes"], state_bytes=r["state_bytes"], encode_s=r["encode_s"],
                            head_s=r["head_s"], ttft_s=r["ttft_s"], total_s=r["total_s"])
