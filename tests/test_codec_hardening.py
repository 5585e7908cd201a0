"""Memory safety of the codec's Python boundary: strided frame buffers, read-only or
mismatched `out`, frames that declare a huge tensor, and the output size limit.

Where a regression would crash (read past a buffer, write into immutable memory), the
check runs in a child process so that a crash fails the test instead of killing pytest.
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import collab.codec as codec
from collab.errors import FrameError, InvalidArgument
from codec_inputs import refresh_crc


def run_child(code: str) -> str:
    """Run code in a fresh interpreter; a crash (signal) or non-zero exit fails the test."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"child exited with {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p.stdout


def inflated(index_code: str, numel: int) -> bytes:
    """The frame of x = [1, 2, 0, 0] with its shape varint replaced by (numel,)."""
    f = codec.encode(np.array([1.0, 2.0, 0.0, 0.0], np.float32), 0.5, index_code=index_code)
    assert f[7] == 1 and f[8] == 4, "header layout: ndim at byte 7, shape from byte 8"
    v, varint = numel, bytearray()
    while True:
        varint.append((v & 0x7F) | (0x80 if v >= 0x80 else 0))
        v >>= 7
        if not v:
            break
    return refresh_crc(f[:8] + bytes(varint) + f[9:-4])


def test_strided_frame_next_to_a_guard_page_is_refused():
    """A reversed memoryview whose start pointer is the last byte before a PROT_NONE page:
    reading len bytes forward from it would fault. Every entry point must refuse it."""
    out = run_child("""
        import ctypes, mmap
        import numpy as np
        import collab.codec as codec
        from collab import _native
        from collab.errors import InvalidArgument

        frame = codec.encode(np.random.default_rng(0).standard_normal(64).astype(np.float32), 0.5)
        page = mmap.PAGESIZE
        m = mmap.mmap(-1, 2 * page)
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        assert libc.mprotect(base + page, page, 0) == 0, "mprotect failed"
        n = len(frame)
        m[page - n:page] = frame[::-1]
        rev = memoryview(m)[page - n:page][::-1]   # logically the frame; starts at the page end
        assert bytes(rev) == frame
        for call in (lambda: codec.decode(rev), lambda: codec.inspect(rev)):
            try:
                call()
                print("accepted")
            except InvalidArgument as e:
                print("refused:", e)
        for call in (lambda: _native.frame_info(rev),
                     lambda: _native.decode_into(None, rev, 0, 0, [64], 0, 0)):
            try:
                call()
                print("accepted")
            except BufferError:
                print("refused: BufferError")
        assert np.array_equal(codec.decode(bytes(rev)), codec.decode(frame))
    """)
    assert out.count("refused") == 4 and "accepted" not in out, out


def test_frame_buffer_types():
    f = codec.encode(np.arange(1, 17, dtype=np.float32), 0.5)
    want = codec.decode(f)
    assert np.array_equal(codec.decode(np.frombuffer(f, np.uint8)), want)
    assert np.array_equal(codec.decode(memoryview(f).cast("B", (1, len(f)))), want)  # 2-D, contiguous
    for bad in ("frame", 12, None, [1, 2, 3], np.frombuffer(f, np.uint8)[::2]):
        with pytest.raises(InvalidArgument):
            codec.decode(bad)
        with pytest.raises(InvalidArgument):
            codec.inspect(bad)


def test_read_only_out_is_never_written():
    out = run_child("""
        import numpy as np
        import collab.codec as codec
        from collab.errors import InvalidArgument

        frame = codec.encode(np.random.default_rng(1).standard_normal((10, 10)).astype(np.float32), 0.5)
        immutable = bytes(400)
        targets = [np.frombuffer(immutable, np.float32).reshape(10, 10)]
        ro = np.zeros((10, 10), np.float32)
        ro.flags.writeable = False
        targets.append(ro)
        for t in targets:
            try:
                codec.decode(frame, out=t)
                print("written")
            except InvalidArgument as e:
                print("refused:", e)
        assert immutable == bytes(400), "the bytes object changed"
        assert not ro.any(), "the read-only array changed"
    """)
    assert out.count("refused") == 2 and "written" not in out, out


def test_mismatched_out_is_refused(rng):
    x = rng.standard_normal((6, 8)).astype(np.float32)
    f = codec.encode(x, 0.5)
    for bad in (np.empty((6, 8), np.float16), np.empty((8, 6), np.float32), np.empty(48, np.float32),
                np.empty((8, 6), np.float32).T, np.empty((6, 16), np.float32)[:, ::2],
                np.empty((6, 8), np.dtype(">f4")), bytearray(192), [[0.0] * 8] * 6):
        with pytest.raises(InvalidArgument):
            codec.decode(f, out=bad)
    good = np.full((6, 8), 7, np.float32)
    assert codec.decode(f, out=good) is good and np.array_equal(good, codec.decode(f))


def test_huge_declared_shape_is_refused_without_allocating():
    """A few dozen bytes declaring a (2**28,) float32 tensor (1 GiB): FrameError, and the
    process does not grow (the old decoder allocated the output before failing)."""
    out = run_child("""
        import resource, struct, zlib
        import numpy as np
        import collab.codec as codec
        from collab.errors import FrameError

        f = codec.encode(np.array([1.0, 2.0, 0.0, 0.0], np.float32), 0.5, index_code="delta_varint")
        body = f[:8] + bytes([0x80, 0x80, 0x80, 0x80, 0x01]) + f[9:-4]      # shape (2**28,)
        g = body + struct.pack("<I", zlib.crc32(body))
        assert codec.inspect(g)["numel"] == 2**28
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            codec.decode(g)
            print("decoded")
        except FrameError as e:
            print("refused:", e)
        grew_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print("grew_kib", grew_kib)
        assert grew_kib < 64 * 1024, grew_kib
    """)
    assert "refused:" in out and "max_output_bytes" in out, out


@pytest.mark.parametrize("index_code", ["csr", "bitmap", "delta_rice"])
def test_index_section_must_match_the_declared_shape(index_code):
    """CSR and bitmap sizes follow from the header, Rice has a lower bound: a frame whose
    shape was inflated is refused by the parser, before any output exists."""
    g = inflated(index_code, 2**28)
    with pytest.raises(FrameError, match="index section"):
        codec.inspect(g)
    with pytest.raises(FrameError, match="index section"):
        codec.decode(g, max_output_bytes=2**40, max_elements=2**40)


def test_max_output_bytes_is_inclusive_and_checked(rng):
    f = codec.encode(rng.standard_normal((8, 8)).astype(np.float32), 0.5)  # 256 bytes decoded
    with pytest.raises(FrameError, match="max_output_bytes=255"):
        codec.decode(f, max_output_bytes=255)
    assert codec.decode(f, max_output_bytes=256).shape == (8, 8)
    assert codec.DEFAULT_MAX_OUTPUT_BYTES == 256 << 20
    for bad in (-1, 2**64, 1.5, "256", None, True):
        with pytest.raises(InvalidArgument, match="max_output_bytes"):
            codec.decode(f, max_output_bytes=bad)
    # The native layer enforces the same limit for callers that skip the Python checks.
    from collab import _native
    y = np.empty((8, 8), np.float32)
    with pytest.raises(FrameError, match="max_output_bytes"):
        _native.decode_into(None, f, y.ctypes.data, 0, [8, 8], 0, 0, 255)
