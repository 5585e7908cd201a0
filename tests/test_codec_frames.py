"""Truncated, corrupted and hostile frames raise FrameError: no crash, hang or over-read."""
import numpy as np
import pytest

import collab.codec as codec
from collab.errors import FrameError, InvalidArgument
from collab.reference import slicer as ref
from codec_inputs import refresh_crc


@pytest.fixture
def frames(rng):
    x = rng.standard_normal((12, 10)).astype(np.float32)
    return [codec.encode(x, s, blocks=(2, 2), qbits=(8, 3), index_code=c) for s in (0.3, 0.8) for c in range(4)]


def test_every_truncation_is_rejected(frames):
    for f in frames:
        for n in range(len(f)):
            with pytest.raises(FrameError):
                codec.decode(f[:n])


def test_every_single_bit_flip_is_rejected(frames):
    f = frames[3]
    for i in range(len(f)):
        for bit in (0, 3, 7):
            g = bytearray(f)
            g[i] ^= 1 << bit
            with pytest.raises(FrameError):
                codec.decode(bytes(g))


def test_random_garbage_is_rejected(rng):
    for n in (0, 1, 11, 12, 50, 1000):
        with pytest.raises(FrameError):
            codec.decode(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        with pytest.raises(FrameError):
            codec.decode(refresh_crc(b"CLBF" + rng.integers(0, 256, n, dtype=np.uint8).tobytes()))


def test_hostile_mutations_agree_with_reference(frames, rng):
    """Mutate bytes, fix the CRC, and check native and reference accept/reject alike.

    When both accept, they must decode to the same tensor.
    """
    for f in frames:
        body = f[:-4]
        for _ in range(300):
            g = bytearray(body)
            for _ in range(int(rng.integers(1, 4))):
                g[int(rng.integers(4, len(g)))] = int(rng.integers(0, 256))
            g = refresh_crc(bytes(g))
            try:
                expected = ref.decode(g)
            except FrameError:
                expected = None
            except (MemoryError, OverflowError):
                continue  # the slow reference cannot even represent it; native must still not crash
            try:
                got = codec.decode(g)
            except FrameError:
                got = None
            if expected is None:
                assert got is None, "native accepted a frame the reference rejects"
            else:
                assert got is not None, "native rejected a frame the reference accepts"
                assert got.tobytes() == expected.tobytes()


def test_huge_shape_is_refused_before_allocating():
    x = np.zeros(4, np.float32)
    x[0] = 1
    # delta+varint: the only index code whose size does not follow from the shape alone
    f = bytearray(codec.encode(x, 0.5, index_code="delta_varint")[:-4])
    # shape varint at byte 8: replace 4 by 2**32-1 (5-byte varint), keep everything else
    assert f[7] == 1 and f[8] == 4
    f[8:9] = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
    g = refresh_crc(bytes(f))
    with pytest.raises(FrameError, match="max_elements"):
        codec.decode(g)
    with pytest.raises(FrameError, match="max_output_bytes"):
        codec.decode(g, max_elements=2**32)
    # It is otherwise a well-formed frame (one non-zero in a 2**32-1 element tensor).
    assert codec.inspect(g)["numel"] == 2**32 - 1


def test_overlapping_blocks_are_rejected(rng):
    # Two blocks claiming the same position: forge a CSR frame whose blocks overlap.
    x = np.array([[1.0, 2.0, -3.0, -4.0]], np.float32)
    f = codec.encode(x, 0.0, index_code="delta_varint")
    h = ref.parse_header(f)
    start = h["header_bytes"]
    index = bytearray(f[start:start + h["index_bytes"]])
    # positive block positions [0, 1], negative [2, 3] as gaps 0,0 | 2,0 -> make negative 0,0
    assert bytes(index) == bytes([0, 0, 2, 0])
    index[2] = 0
    g = refresh_crc(f[:start] + bytes(index) + f[start + len(index):-4])
    with pytest.raises(FrameError, match="same position"):
        codec.decode(g)
    with pytest.raises(FrameError, match="same position"):
        ref.decode(g)


def test_frame_types_accepted(rng):
    f = codec.encode(rng.standard_normal(10).astype(np.float32), 0.5)
    a = codec.decode(f)
    assert np.array_equal(codec.decode(bytearray(f)), a)
    assert np.array_equal(codec.decode(memoryview(f)), a)
    with pytest.raises(InvalidArgument):
        codec.decode("not bytes")
    with pytest.raises(FrameError):
        codec.inspect(f[:-1])


def test_ml_dtypes_is_loaded_only_for_bfloat16(tmp_path, rng):
    """ml_dtypes takes seconds to import: float32/float16 users never load it, and a bfloat16
    frame decoded in a process that never imported it still comes back as bfloat16."""
    import subprocess
    import sys

    import ml_dtypes

    x = rng.standard_normal((6, 8)).astype(ml_dtypes.bfloat16)
    frame = codec.encode(x, 0.5)
    (tmp_path / "bf16.frame").write_bytes(frame)
    code = (
        "import sys, numpy as np, collab.codec as c\n"
        "from collab.reference import slicer as ref\n"
        "f = c.encode(np.ones((4, 4), np.float16), 0.5); c.decode(f); ref.decode(f); c.inspect(f)\n"
        "assert 'ml_dtypes' not in sys.modules, 'float16 work loaded ml_dtypes'\n"
        f"y = c.decode(open({str(tmp_path / 'bf16.frame')!r}, 'rb').read())\n"
        "print(y.dtype.name, y.shape)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["bfloat16", "(6,", "8)"]
    assert np.array_equal(codec.decode(frame).astype(np.float32), ref.decode(frame).astype(np.float32))
