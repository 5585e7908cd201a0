"""The split VLM's device in one native call (collab_vlm_device_ask): its messages are byte for
byte the Python device's (collab.vlm.split.VlmDevice + image_row_policy), so it answers as the
Python device does, through the same server; bad inputs get clear errors. Tiny models."""
from __future__ import annotations

import io

import numpy as np
import pytest

from _llm_common import require_llama, tiny_split
from _vlm_common import TINY_EMBD, tiny_llm, tiny_parts

from collab.errors import CollabError, FrameError, InvalidArgument


def _need_native_device():
    require_llama()
    from collab.vlm.native import native_device_available

    if not native_device_available():
        pytest.skip("collab was built without libmtmd (no native VLM device)")


class Recording:
    """A client whose sessions record what the device sends: [(kind, payload, meta), ...]."""

    def __init__(self, client):
        self.client = client
        self.sent: list = []
        self.opened: list = []
        self.closed: list = []

    def session(self, task, meta):
        self.opened.append((task, dict(meta)))
        sess = self.client.session(task, meta)
        rec = self

        class S:
            def send(self, kind, payload=b"", meta=None):
                rec.sent.append((kind, bytes(payload), dict(meta or {})))
                sess.send(kind, payload, meta or {})

            def recv(self, timeout=None):
                return sess.recv(timeout=timeout)

            def close(self):
                rec.closed.append("close")
                sess.close()

            def cancel(self):
                rec.closed.append("cancel")
                getattr(sess, "cancel", sess.close)()

        return S()


def _codec_file(tmp_path, *, at=2, model=None, seed=0):
    from collab.llm.artifact import KIND_CODEC, FcNet, expected_tensors, model_digest

    rng = np.random.default_rng(seed)
    t = {n: (rng.standard_normal(s) * 0.1).astype(np.float32) for n, s in expected_tensors(KIND_CODEC, TINY_EMBD, 8)}
    net = FcNet(KIND_CODEC, TINY_EMBD, at, 4, model_digest(model or tiny_llm()), t, code_dim=8,
                meta={"rows": "image"})
    return net.save(tmp_path / f"codec-{at}-{seed}.clfn")


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _world(codec_path=None):
    """(python device, LinkClient over a VlmTask that decodes with codec_path, head, mmproj)."""
    from collab.llm.fcnet import FcCodecs, load_net
    from collab.net.link import LinkClient
    from collab.vlm.codec import VlmTask
    from collab.vlm.split import VlmDevice

    head, tail = tiny_split(4, 2)
    _, _, mmproj = tiny_parts()
    dev = VlmDevice(mmproj, head=head, full=tiny_llm(), n_ctx=256)
    task = VlmTask(head=head, tail=tail, n_ctx=256, image_codecs=[])
    codec = None
    if codec_path is not None:
        codec = load_net(codec_path, kind="codec", model=head, split_at=2)
        task._codecs = FcCodecs([codec])
    return dev, LinkClient([task]), head, mmproj, codec


def _native(head, mmproj, **kw):
    from collab.vlm.native import NativeVlmDevice

    kw.setdefault("n_ctx", 256)
    kw.setdefault("n_threads", 1)
    return NativeVlmDevice(head, mmproj, **kw)


@pytest.mark.parametrize("mode", ["kv-handoff", "roundtrip", "shortcut"])
@pytest.mark.parametrize("codes", [None, "f16", "int8", "f32"])
def test_native_messages_equal_python_device(tmp_path, mode, codes):
    """Same image bytes and question: the same messages (kinds, payload bytes, meta) and tokens
    as the Python device, for each mode, exact rows and FC codes of each dtype."""
    _need_native_device()
    from collab.vlm.codec import image_row_policy
    from collab.vlm.mtmd import decode_image

    cpath = _codec_file(tmp_path) if codes else None
    dev, client, head, mmproj, codec = _world(cpath)
    nat = _native(head, mmproj, codec=cpath, mode=mode, code_dtype=codes or "f16", max_tokens=5)
    rng = np.random.default_rng(3)
    for q in ("What is this item?", "  Is this footwear?\n"):
        png = _png(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
        rp, rn = Recording(client), Recording(client)
        before, after = dev.layout(q)
        pol = image_row_policy(codec, before, after, dtype=codes) if codes else None
        g = dev.ask(decode_image(png), q, mode=mode, client=rp, max_tokens=5, policy=pol, ignore_eog=False)
        a = nat.ask(png, q, rn)
        assert a.tokens == g.tokens and a.text == g.text
        assert rn.opened == rp.opened
        assert [m[0] for m in rn.sent] == [m[0] for m in rp.sent]
        for (k, pn, mn), (_, pp, mp) in zip(rn.sent, rp.sent):
            assert pn == pp, f"{mode}/{codes}: payload of {k!r} differs"
            assert mn == mp
        assert rn.closed == ["close"]
        assert a.bytes_up == g.bytes_up and a.bytes_down == g.bytes_down
        assert a.prompt_tokens == g.prompt_tokens and a.image_rows == 4
        assert a.stop == g.stop


@pytest.mark.parametrize("shape", [(14, 14), (40, 30), (17, 61), (3, 3)])
def test_native_resize_equals_python_device(shape):
    """Images not at the encoder's size (nearest repeat when the side divides it, else bicubic):
    PNG decode, resize, encode and head give the Python device's prefill payload exactly."""
    _need_native_device()
    from collab.vlm.mtmd import decode_image

    dev, client, head, mmproj, _ = _world()
    nat = _native(head, mmproj, mode="kv-handoff", max_tokens=2)
    png = _png(np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8))
    rp, rn = Recording(client), Recording(client)
    dev.ask(decode_image(png), "What is it?", mode="kv-handoff", client=rp, max_tokens=2)
    nat.ask(png, "What is it?", rn)
    rows_p = [p for k, p, _ in rp.sent if k == "rows"]
    rows_n = [p for k, p, _ in rn.sent if k == "rows"]
    assert rows_n == rows_p


def test_resize_matches_numpy_reference():
    """collab_vlm_image_resize against its numpy twin on fresh random images: up and down,
    one axis only, 1-pixel sides, size 1, integer factors; and close to Pillow's BICUBIC."""
    from PIL import Image

    from collab import _native
    from collab.vlm.reference import resize_rgb

    rng = np.random.default_rng()
    shapes = [(1, 1, 28), (1, 40, 28), (40, 1, 28), (7, 7, 28), (28, 28, 28), (30, 28, 28), (28, 30, 28), (5, 9, 1)]
    shapes += [(int(h), int(w), int(s)) for h, w, s in zip(rng.integers(1, 120, 40), rng.integers(1, 120, 40),
                                                               rng.choice([14, 28, 37, 56, 112], 40))]
    for h, w, s in shapes:
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        got = _native.vlm_image_resize(a, s)
        np.testing.assert_array_equal(got, resize_rgb(a, s), err_msg=f"{h}x{w} -> {s}")
        if h > 1 and w > 1 and s > 1 and not (h == w and s % w == 0):  # bicubic cases
            pil = np.asarray(Image.fromarray(a).resize((s, s), Image.BICUBIC)).astype(int)
            assert np.abs(pil - got).mean() < 1.0
    smooth = np.linspace(0, 255, 50 * 30 * 3).reshape(50, 30, 3).astype(np.uint8)  # no ties at the edges
    assert _native.vlm_image_resize(smooth, 28).dtype == np.uint8
    with pytest.raises(InvalidArgument):
        _native.vlm_image_resize(np.zeros((0, 4, 3), np.uint8), 28)
    with pytest.raises(InvalidArgument):
        _native.vlm_image_resize(np.zeros((4, 4, 3), np.uint8), 0)


def test_jpeg_and_grayscale_png_are_read():
    _need_native_device()
    from PIL import Image

    dev, client, head, mmproj, _ = _world()
    nat = _native(head, mmproj, max_tokens=2)
    a = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    for fmt, im in (("JPEG", Image.fromarray(a).convert("RGB")), ("PNG", Image.fromarray(a))):
        buf = io.BytesIO()
        im.save(buf, format=fmt)
        r = nat.ask(buf.getvalue(), "What is it?", client)
        assert 1 <= len(r.tokens) <= 2 and r.image_rows == 4


def _png_header(w, h):
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


@pytest.mark.parametrize("data, msg", [
    (b"", "empty"),
    (b"GIF89a\x01\x00\x01\x00", "neither PNG nor JPEG"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated"),
    (_png_header(100000, 100000), "outside"),           # a decompression bomb's header
    (_png_header(0, 5), "outside"),
    (_png_header(28, 28) + b"\x00" * 40, "cannot decode"),  # no image data
    (b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 20, "JPEG"),
])
def test_bad_image_bytes_are_refused(data, msg):
    _need_native_device()
    dev, client, head, mmproj, _ = _world()
    nat = _native(head, mmproj)
    rec = Recording(client)
    with pytest.raises(InvalidArgument, match=msg):
        nat.ask(data, "What is it?", rec)
    assert rec.opened == []  # refused before any session


def test_bad_questions_and_parameters_are_refused(tmp_path):
    _need_native_device()
    dev, client, head, mmproj, _ = _world()
    nat = _native(head, mmproj)
    png = _png(np.zeros((28, 28, 3), np.uint8))
    for q in ("", "   \n", "x" * 5000):
        with pytest.raises(InvalidArgument, match="question"):
            nat.ask(png, q, client)
    with pytest.raises(InvalidArgument, match="mode"):
        _native(head, mmproj, mode="fast")
    with pytest.raises(InvalidArgument, match="max_tokens"):
        _native(head, mmproj, max_tokens=0)
    with pytest.raises(InvalidArgument, match="n_ctx"):
        _native(head, mmproj, n_ctx=20).ask(png, "What is it?", client)
    # the full model is not a head part
    with pytest.raises(InvalidArgument, match="head part"):
        _native(tiny_llm(), mmproj)
    # a codec for another split point, another model, a shortcut net
    with pytest.raises(InvalidArgument, match="split point"):
        _native(head, mmproj, codec=_codec_file(tmp_path, at=3))
    from _llm_common import tiny_model

    with pytest.raises(InvalidArgument, match="another model"):
        _native(head, mmproj, codec=_codec_file(tmp_path, model=tiny_model(4, 1), seed=1))
    bad = tmp_path / "bad.clfn"
    bad.write_bytes(_codec_file(tmp_path).read_bytes()[:-3])
    with pytest.raises(FrameError):
        _native(head, mmproj, codec=bad)


def test_transport_errors_propagate_and_cancel():
    """An exception in the app's transport comes back as itself; the session is cancelled."""
    _need_native_device()
    dev, client, head, mmproj, _ = _world()
    nat = _native(head, mmproj, max_tokens=4)
    png = _png(np.zeros((28, 28, 3), np.uint8))

    class Boom(RuntimeError):
        pass

    class Failing(Recording):
        def session(self, task, meta):
            s = super().session(task, meta)
            orig = s.send

            def send(kind, payload=b"", meta=None):
                if kind == "rows":
                    raise Boom("link down")
                orig(kind, payload, meta)

            s.send = send
            return s

    rec = Failing(client)
    with pytest.raises(Boom, match="link down"):
        nat.ask(png, "What is it?", rec)
    assert rec.closed == ["cancel"]


def test_server_error_comes_back():
    """FC codes to a server without the codec: the server's refusal surfaces as an error."""
    _need_native_device()
    import tempfile
    from pathlib import Path

    dev, client, head, mmproj, _ = _world()  # server without any image codec
    with tempfile.TemporaryDirectory() as d:
        nat = _native(head, mmproj, codec=_codec_file(Path(d)))
    with pytest.raises((CollabError, ValueError), match="codec"):
        nat.ask(_png(np.zeros((28, 28, 3), np.uint8)), "What is it?", client)


def test_early_stop_by_callback_cancels():
    _need_native_device()
    dev, client, head, mmproj, _ = _world()
    nat = _native(head, mmproj, max_tokens=6)
    rec = Recording(client)
    seen = []
    a = nat.ask(_png(np.zeros((28, 28, 3), np.uint8)), "What is it?", rec,
                on_token=lambda t, piece: seen.append(t) or len(seen) >= 2)
    ref = nat.ask(_png(np.zeros((28, 28, 3), np.uint8)), "What is it?", client)
    if len(ref.tokens) > 2:  # the tiny model did not stop by itself first
        assert a.stop == "callback" and a.tokens == ref.tokens[:2] and rec.closed == ["cancel"]
    else:
        assert a.tokens == ref.tokens
