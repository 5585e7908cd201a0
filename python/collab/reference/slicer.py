"""Pure-numpy reference of the SLICER feature codec (SLICER paper, section 3).

Written from the equations, for clarity rather than speed. The native CPU and CUDA codecs
must produce exactly the bytes this module produces for the same input and parameters; the
tests compare them on fresh random inputs. The frame layout is documented in
docs/frame_format.md. Where this code deviates from the paper, the comment says so and why.

Pipeline (encode):
  1. ATKF  (Sec. 3.1, Eq. 7)  keep exactly k_keep = floor((1-s) T) elements.
  2. Sign separation + MS (Sec. 3.2) equal-cardinality magnitude blocks per sign.
  3. AIQ + ABQ (Sec. 3.2.1, Eq. 8-9) per-block asymmetric integer quantization, with the
     bit-width lowered greedily while the integer mismatch DS stays within delta.
  4. Positions: CSR (Sec. 3.2 step 3) or a smaller lossless index code, chosen per frame.
"""
from __future__ import annotations

import math
import struct
import zlib

import numpy as np

from .._tensors import DTYPE_BF16, DTYPE_NAMES, dtype_code, numpy_dtype
from .._validate import check_float, check_int, check_int_seq
from ..errors import FrameError

# ----------------------------------------------------------------------------------------
# Frame constants (docs/frame_format.md)
MAGIC = b"CLBF"
VERSION = 1
INDEX_CSR, INDEX_BITMAP, INDEX_DELTA_VARINT, INDEX_DELTA_RICE = 0, 1, 2, 3
INDEX_NAMES = {0: "csr", 1: "bitmap", 2: "delta_varint", 3: "delta_rice"}
MAX_NDIM = 8
MAX_BLOCKS = 64
MAX_QBITS = 16
MAX_ELEMENTS = 2**32 - 1
GOLDEN = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1



# ----------------------------------------------------------------------------------------
# Parameters


def k_keep_for(numel: int, sparsity: float) -> int:
    """k_keep = floor((1 - s) * T), evaluated in IEEE double like the native code."""
    return int(math.floor((1.0 - float(sparsity)) * float(numel)))


def bits_for_block(qbits, m: int) -> int:
    """Q lists bits largest-magnitude block first; a short list repeats its last entry."""
    return int(qbits[min(m, len(qbits) - 1)])


def block_sizes(n: int, m_blocks: int) -> list[int]:
    """Equal-cardinality split of n sorted values into M blocks (Sec. 3.2, step 2).

    The paper sets K = floor(n / M) per block; it leaves the n mod M remainder open. Here
    the first (n mod M) blocks, i.e. the largest magnitudes, take one extra element, so
    block sizes differ by at most one.
    """
    base, rem = divmod(n, m_blocks)
    return [base + (1 if m < rem else 0) for m in range(m_blocks)]


def check_params(sparsity, lam, blocks, qbits, delta, seed):
    """The validated parameters (same rules and InvalidArgument messages as collab.codec)."""
    blocks = check_int_seq("blocks", blocks, lo=1, hi=MAX_BLOCKS, min_len=2, max_len=2)
    qbits = check_int_seq("qbits", qbits, lo=1, hi=MAX_QBITS, min_len=1, max_len=max(blocks), scalar_ok=True)
    return (check_float("sparsity", sparsity, 0.0, 1.0, hi_open=True), check_float("lam", lam, 0.0, 1.0, hi_open=True),
            blocks, qbits, check_float("delta", delta, lo=0.0), check_int("seed", seed, 0, MASK64))


# ----------------------------------------------------------------------------------------
# 1. ATKF (Sec. 3.1)


def tie_priority(seed: int, idx: np.ndarray) -> np.ndarray:
    """Seeded pseudo-random priority of element idx (SplitMix64 of seed + (idx+1)*golden).

    Ties at the threshold are resolved by keeping the tied elements with the smallest
    priority (then smallest index): a uniformly random, seed-deterministic subset that a GPU
    can evaluate per element without a sequential RNG stream.
    """
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (idx.astype(np.uint64) + np.uint64(1)) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def atkf_keys(x32: np.ndarray, lam: float) -> np.ndarray:
    """Asymmetric magnitude used to rank elements.

    The paper (Eq. 7) takes tau = k_keep-th largest |x| and keeps x > (1+lam) tau or
    x < -(1-lam) tau. For lam > 0 that set can hold more or fewer than k_keep elements
    (the negative cut-off lies below tau), which breaks the exact-ratio guarantee ATKF is
    for. We keep the paper's cut-off shape but rank by a(x) = x/(1+lam) for x > 0 and
    |x|/(1-lam) for x < 0, and take tau as the k_keep-th largest a(x): then
    x > (1+lam) tau  <=>  a(x) > tau  (same for the negative side) and exactly k_keep
    survive. For lam = 0, a(x) = |x| and this is the paper's rule unchanged.
    """
    mag = np.abs(x32).astype(np.float64)
    if lam == 0.0:
        return mag
    return np.where(x32 > 0, mag / (1.0 + lam), mag / (1.0 - lam))


def atkf_survivors(x32: np.ndarray, sparsity: float, lam: float, seed: int) -> np.ndarray:
    """Sorted flat indices of the non-zero elements that ATKF keeps (Eq. 7)."""
    t = x32.size
    k = k_keep_for(t, sparsity)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    key = atkf_keys(x32, lam)
    tau = np.partition(key, t - k)[t - k]  # k-th largest
    strict = key > tau
    if tau == 0.0:
        # The fill would pick zeros, which carry nothing: every non-zero already survives.
        return np.flatnonzero(strict)
    need = k - int(strict.sum())
    ties = np.flatnonzero(key == tau)
    if need < len(ties):
        order = np.lexsort((ties, tie_priority(seed, ties)))
        ties = np.sort(ties[order[:need]])
    keep = strict.copy()
    keep[ties] = True
    return np.flatnonzero(keep)


# ----------------------------------------------------------------------------------------
# 2. Sign separation + magnitude splitting (Sec. 3.2)


def magnitude_split(idx: np.ndarray, mag: np.ndarray, m_blocks: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split one sign's non-zeros into M equal-cardinality blocks by descending magnitude.

    Ranking is by magnitude descending, then flat index ascending (a total order, so block
    membership is deterministic). Within a block, elements stay in ascending index order,
    which is the order CSR and the delta codes need.
    """
    order = np.lexsort((idx, -mag.astype(np.float64)))
    rank = np.empty(len(idx), dtype=np.int64)
    rank[order] = np.arange(len(idx))
    bounds = np.cumsum(block_sizes(len(idx), m_blocks))
    block_of = np.searchsorted(bounds, rank, side="right")
    return [(idx[block_of == m], mag[block_of == m]) for m in range(m_blocks)]


# ----------------------------------------------------------------------------------------
# 3. AIQ + ABQ (Sec. 3.2.1)


def aiq_step(lo: np.float32, hi: np.float32, bits: int) -> np.float32:
    """Quantization step o_m = (v_max - v_min) / (2^q - 1), computed in double, stored f32."""
    return np.float32((float(hi) - float(lo)) / float((1 << bits) - 1))


def aiq_codes(mag: np.ndarray, lo: np.float32, step: np.float32, bits: int) -> np.ndarray:
    """Integer codes round((v - v_min) / o_m), clamped to [0, 2^q - 1] (float32 arithmetic).

    Deviation: Eq. 8 writes ceil(v/o + z) with z = ceil(v_min/o), whose range does not fit in
    q bits and whose zero-point overflows for narrow blocks far from zero. We use the usual
    asymmetric form with the block minimum as a float zero-point: codes span [0, 2^q - 1]
    exactly and the reconstruction v_min + code * o_m is within half a step of v (Eq. 8's
    intent), plus float32 rounding.
    """
    top = np.float32((1 << bits) - 1)
    if step == 0:
        return np.zeros(len(mag), dtype=np.int64)
    with np.errstate(over="ignore"):
        r = (mag - lo) / step  # float32 ops
        return np.clip(np.rint(r), np.float32(0), top).astype(np.int64)


def abq_bits(mag: np.ndarray, lo, hi, q_bit: int, delta: float) -> int:
    """ABQ (Sec. 3.2.1): lower q from q_bit while DS(T0, q_bit, T_q, q) <= delta (Eq. 9).

    DS = mean |floor(T0 / 2^(q_bit - q)) - T_q| on integers. Greedy as the paper describes:
    stop at the first q whose mismatch exceeds delta.
    """
    n = len(mag)
    t0 = aiq_codes(mag, lo, aiq_step(lo, hi, q_bit), q_bit)
    best = q_bit
    for q in range(q_bit - 1, 0, -1):
        tq = aiq_codes(mag, lo, aiq_step(lo, hi, q), q)
        mismatch = int(np.abs((t0 >> (q_bit - q)) - tq).sum())
        if float(mismatch) <= delta * float(n):
            best = q
        else:
            break
    return best


# ----------------------------------------------------------------------------------------
# Bit and byte helpers


def bit_length(v: int) -> int:
    return int(v).bit_length()


def pack_bits(values: np.ndarray, width: int) -> bytes:
    """Pack unsigned integers LSB-first, `width` bits each, padded to a whole byte."""
    if width == 0 or len(values) == 0:
        return b""
    v = np.asarray(values, dtype=np.uint64)
    bits = ((v[:, None] >> np.arange(width, dtype=np.uint64)[None, :]) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits.reshape(-1), bitorder="little").tobytes()


def unpack_bits(buf: bytes, count: int, width: int) -> np.ndarray:
    if width == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    need = (count * width + 7) // 8
    if len(buf) < need:
        raise FrameError("truncated bit-packed array")
    bits = np.unpackbits(np.frombuffer(buf[:need], dtype=np.uint8), bitorder="little")[: count * width]
    bits = bits.reshape(count, width).astype(np.int64)
    return (bits << np.arange(width, dtype=np.int64)[None, :]).sum(axis=1)


def varint(v: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint_len(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.uint64)
    n = np.ones(v.shape, dtype=np.int64)
    for s in range(7, 64, 7):
        n += (v >> np.uint64(s)) > 0
    return n


def read_varint(buf: bytes, pos: int, limit: int = MASK64) -> tuple[int, int]:
    value, shift = 0, 0
    for i in range(10):
        if pos >= len(buf):
            raise FrameError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if value > limit:
                raise FrameError("varint value out of range")
            return value, pos
        shift += 7
    raise FrameError("varint longer than 10 bytes")


# ----------------------------------------------------------------------------------------
# 4. Index codes (positions of each block's non-zeros)


def csr_view(shape) -> tuple[int, int]:
    """CSR sees the tensor as N rows x K columns, K = last dimension (scalars: 1 x 1)."""
    t = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    k = int(shape[-1]) if len(shape) else 1
    if k == 0:
        return 0, 0
    return t // k, k


def gaps_of(pos: np.ndarray) -> np.ndarray:
    """Gaps between consecutive positions: p0, then p_j - p_{j-1} - 1 (all >= 0)."""
    if len(pos) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.diff(pos, prepend=-1) - 1


def rice_parameter(numel: int, n: int) -> int:
    """Rice parameter k for n positions spread over numel slots (integer-only).

    Gaps are close to geometric with mean mu = (T - n) / n; the best Rice parameter is near
    log2(mu * ln 2). k = floor(log2(floor(mu * ln2))), 0 when that is below 1. 45426/65536
    approximates ln 2, so every implementation gets the same k from integers alone.
    """
    if n == 0:
        return 0
    t = ((numel - n) * 45426) // (n * 65536)
    return min(max(bit_length(t) - 1, 0), 31)


def encode_csr(blocks, shape) -> bytes:
    n_rows, n_cols = csr_view(shape)
    wc = bit_length(n_cols - 1) if n_cols > 0 else 0
    out = bytearray()
    for pos, _ in blocks:
        if len(pos) == 0:
            continue
        rows, cols = pos // n_cols, pos % n_cols
        row_ptr = np.searchsorted(rows, np.arange(n_rows + 1), side="left")
        out += pack_bits(row_ptr, bit_length(len(pos)))
        out += pack_bits(cols, wc)
    return bytes(out)


def encode_bitmap(blocks, numel) -> bytes:
    mask = np.zeros(numel, dtype=np.uint8)
    label = np.zeros(numel, dtype=np.int64)
    for b, (pos, _) in enumerate(blocks):
        mask[pos] = 1
        label[pos] = b
    wl = bit_length(len(blocks) - 1)
    return np.packbits(mask, bitorder="little").tobytes() + pack_bits(label[mask.astype(bool)], wl)


def encode_delta_varint(blocks) -> bytes:
    return b"".join(varint(int(g)) for pos, _ in blocks for g in gaps_of(pos))


def encode_delta_rice(blocks, numel) -> bytes:
    """Rice code of each block's gaps: (g >> k) zero bits, a one bit, then k low bits."""
    out = bytearray()
    for pos, _ in blocks:
        if len(pos) == 0:
            continue
        k = rice_parameter(numel, len(pos))
        g = gaps_of(pos)
        quot = g >> k
        length = quot + 1 + k
        start = np.concatenate(([0], np.cumsum(length)[:-1]))
        bits = np.zeros(int(length.sum()), dtype=np.uint8)
        bits[start + quot] = 1
        for j in range(k):
            bits[start + quot + 1 + j] = (g >> j) & 1
        out += np.packbits(bits, bitorder="little").tobytes()
    return bytes(out)


def index_sizes(blocks, shape, numel) -> list[int]:
    """Exact byte size of each index code, so the encoder can pick the smallest."""
    n_rows, n_cols = csr_view(shape)
    wc = bit_length(n_cols - 1) if n_cols > 0 else 0
    counts = [len(p) for p, _ in blocks]
    n = sum(counts)
    csr = sum(((n_rows + 1) * bit_length(c) + 7) // 8 + (c * wc + 7) // 8 for c in counts if c)
    bitmap = (numel + 7) // 8 + (n * bit_length(len(blocks) - 1) + 7) // 8
    gaps = [gaps_of(p) for p, _ in blocks]
    dvar = int(sum(varint_len(g).sum() for g in gaps))
    rice = 0
    for g, c in zip(gaps, counts):
        if c:
            k = rice_parameter(numel, c)
            rice += (c * (k + 1) + int((g >> k).sum()) + 7) // 8
    return [csr, bitmap, dvar, rice]


# ----------------------------------------------------------------------------------------
# Frame writer


def _as_f32(x) -> tuple[np.ndarray, np.dtype]:
    arr = np.asarray(x)
    if dtype_code(arr.dtype) is None:
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {arr.dtype}")
    x32 = arr.astype(np.float32).reshape(-1)
    if not np.isfinite(x32).all():
        raise ValueError("input contains NaN or Inf")
    return x32, arr.dtype


def encode(x, sparsity, *, lam=0.0, blocks=(1, 1), qbits=(8,), delta=0.0, seed=0, index_code=None) -> bytes:
    """Reference encoder. Same contract as collab.codec.encode."""
    sparsity, lam, blocks, qbits, delta, seed = check_params(sparsity, lam, blocks, qbits, delta, seed)
    arr = np.asarray(x)
    if arr.ndim > MAX_NDIM:
        raise ValueError(f"at most {MAX_NDIM} dimensions")
    if arr.size > MAX_ELEMENTS:
        raise ValueError("too many elements")
    x32, dtype = _as_f32(arr)
    numel = x32.size

    keep = atkf_survivors(x32, sparsity, lam, seed)
    vals = x32[keep]
    mag = np.abs(vals)
    all_blocks = []  # (positions, magnitudes), positive blocks then negative blocks
    for sign_mask, m_blocks in ((vals > 0, blocks[0]), (vals < 0, blocks[1])):
        all_blocks += magnitude_split(keep[sign_mask], mag[sign_mask], m_blocks)

    meta, payload = [], bytearray()
    for b, (pos, m) in enumerate(all_blocks):
        if len(pos) == 0:
            meta.append((0, np.float32(0), np.float32(0)))
            continue
        rank = b if b < blocks[0] else b - blocks[0]
        lo, hi = m.min(), m.max()
        q = abq_bits(m, lo, hi, bits_for_block(qbits, rank), delta)
        step = aiq_step(lo, hi, q)
        meta.append((q, lo, step))
        payload += pack_bits(aiq_codes(m, lo, step, q), q)

    sizes = index_sizes(all_blocks, arr.shape, numel)
    code = int(np.argmin(sizes)) if index_code is None else int(index_code)
    if code not in INDEX_NAMES:
        raise ValueError(f"index_code must be one of {sorted(INDEX_NAMES)} or None")
    index = [
        lambda: encode_csr(all_blocks, arr.shape),
        lambda: encode_bitmap(all_blocks, numel),
        lambda: encode_delta_varint(all_blocks),
        lambda: encode_delta_rice(all_blocks, numel),
    ][code]()
    assert len(index) == sizes[code]

    n_pos = sum(len(p) for p, _ in all_blocks[: blocks[0]])
    n_neg = sum(len(p) for p, _ in all_blocks[blocks[0]:])
    head = bytearray(MAGIC)
    head += bytes([VERSION, dtype_code(dtype), code, arr.ndim])
    for d in arr.shape:
        head += varint(int(d))
    head += struct.pack("<ddd", float(sparsity), float(lam), float(delta))
    head += varint(int(seed))
    head += bytes([blocks[0], blocks[1], len(qbits), *qbits])
    head += varint(n_pos) + varint(n_neg)
    for q, lo, step in meta:
        head += struct.pack("<Bff", q, lo, step)
    head += varint(len(index))
    frame = bytes(head) + index + bytes(payload)
    return frame + struct.pack("<I", zlib.crc32(frame))


# ----------------------------------------------------------------------------------------
# Frame reader


class _Reader:
    def __init__(self, buf: bytes, end: int):
        self.buf, self.pos, self.end = buf, 0, end

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise FrameError("frame is truncated")
        out = self.buf[self.pos: self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def varint(self, limit=MASK64) -> int:
        v, p = read_varint(self.buf[: self.end], self.pos, limit)
        self.pos = p
        return v


def _dtype_limits(dtype):
    if dtype_code(dtype) == DTYPE_BF16:
        import ml_dtypes  # loaded already: the dtype came from it

        info = ml_dtypes.finfo(dtype)
    else:
        info = np.finfo(dtype)
    return float(info.smallest_subnormal)


def parse_header(buf: bytes) -> dict:
    """Validate checksum and header; return everything needed to decode."""
    buf = bytes(buf)
    if len(buf) < 4 + 4 + 4:
        raise FrameError("frame is too short")
    if buf[:4] != MAGIC:
        raise FrameError("not a collab frame (bad magic)")
    if struct.unpack("<I", buf[-4:])[0] != zlib.crc32(buf[:-4]):
        raise FrameError("checksum mismatch")
    r = _Reader(buf, len(buf) - 4)
    r.take(4)
    version = r.u8()
    if version != VERSION:
        raise FrameError(f"unsupported frame version {version}")
    dcode, code, ndim = r.u8(), r.u8(), r.u8()
    if dcode not in DTYPE_NAMES:
        raise FrameError(f"unknown dtype code {dcode}")
    if code not in INDEX_NAMES:
        raise FrameError(f"unknown index code {code}")
    if ndim > MAX_NDIM:
        raise FrameError("too many dimensions")
    shape = tuple(r.varint(MAX_ELEMENTS) for _ in range(ndim))
    numel = 1
    for d in shape:
        numel *= d
        if numel > MAX_ELEMENTS:
            raise FrameError("too many elements")
    sparsity, lam, delta = struct.unpack("<ddd", r.take(24))
    seed = r.varint()
    if not (0.0 <= sparsity < 1.0) or not (0.0 <= lam < 1.0) or not (math.isfinite(delta) and delta >= 0):
        raise FrameError("bad codec parameters")
    mp, mn, nq = r.u8(), r.u8(), r.u8()
    if not (1 <= mp <= MAX_BLOCKS and 1 <= mn <= MAX_BLOCKS and 1 <= nq <= max(mp, mn)):
        raise FrameError("bad block counts")
    qbits = tuple(r.take(nq))
    if any(not 1 <= q <= MAX_QBITS for q in qbits):
        raise FrameError("bad qbits")
    k = k_keep_for(numel, sparsity)
    n_pos, n_neg = r.varint(MAX_ELEMENTS), r.varint(MAX_ELEMENTS)
    if n_pos + n_neg > k:
        raise FrameError("more non-zeros than k_keep")
    dtype = numpy_dtype(dcode)
    tiny = _dtype_limits(dtype)
    blocks = []
    for sign, count, mb in ((1, n_pos, mp), (-1, n_neg, mn)):
        for rank, c in enumerate(block_sizes(count, mb)):
            raw = r.take(9)
            q, lo, step = struct.unpack("<Bff", raw)
            if c == 0:
                if raw != bytes(9):
                    raise FrameError("empty block with non-zero parameters")
            else:
                lo32, step32 = np.float32(lo), np.float32(step)
                with np.errstate(over="ignore", invalid="ignore"):
                    top = lo32 + np.float32((1 << q) - 1) * step32 if 1 <= q <= MAX_QBITS else np.float32(np.inf)
                if not (1 <= q <= bits_for_block(qbits, rank)):
                    raise FrameError("block bit-width out of range")
                if not (np.isfinite(lo32) and lo32 >= tiny and np.isfinite(step32) and step32 >= 0):
                    raise FrameError("bad block scale")
                with np.errstate(over="ignore"):
                    if not np.isfinite(np.float32(top).astype(dtype)):
                        raise FrameError("block range overflows the dtype")
            blocks.append(dict(sign=sign, rank=rank, count=c, bits=q, lo=np.float32(lo), step=np.float32(step)))
    index_len = r.varint(len(buf))
    header_len = r.pos
    value_len = sum((b["count"] * b["bits"] + 7) // 8 for b in blocks)
    if header_len + index_len + value_len + 4 != len(buf):
        raise FrameError("frame length does not match its sections")
    return dict(version=version, dtype=dtype, index_code=code, shape=shape, numel=numel,
                sparsity=sparsity, lam=lam, delta=delta, seed=seed, blocks=(mp, mn), qbits=qbits,
                k_keep=k, n_pos=n_pos, n_neg=n_neg, block_info=blocks, header_bytes=header_len,
                index_bytes=index_len, value_bytes=value_len, total_bytes=len(buf), _buf=buf)


def _check_positions(pos: np.ndarray, numel: int):
    if len(pos) and (pos[0] < 0 or pos[-1] >= numel or np.any(np.diff(pos) <= 0)):
        raise FrameError("positions out of range or not increasing")


def decode_positions(h: dict) -> list[np.ndarray]:
    buf, blocks, numel = h["_buf"], h["block_info"], h["numel"]
    start = h["header_bytes"]
    index = buf[start: start + h["index_bytes"]]
    code = h["index_code"]
    out = []
    if code == INDEX_CSR:
        n_rows, n_cols = csr_view(h["shape"])
        wc = bit_length(n_cols - 1) if n_cols > 0 else 0
        p = 0
        for b in blocks:
            c = b["count"]
            if c == 0:
                out.append(np.zeros(0, dtype=np.int64))
                continue
            wr = bit_length(c)
            nb = ((n_rows + 1) * wr + 7) // 8
            row_ptr = unpack_bits(index[p: p + nb], n_rows + 1, wr)
            p += nb
            nbc = (c * wc + 7) // 8
            cols = unpack_bits(index[p: p + nbc], c, wc)
            p += nbc
            if row_ptr[0] != 0 or row_ptr[-1] != c or np.any(np.diff(row_ptr) < 0) or np.any(cols >= n_cols):
                raise FrameError("bad CSR structure")
            rows = np.repeat(np.arange(n_rows), np.diff(row_ptr))
            pos = rows * n_cols + cols
            _check_positions(pos, numel)
            out.append(pos)
        if p != len(index):
            raise FrameError("CSR section has trailing bytes")
    elif code == INDEX_BITMAP:
        nbm = (numel + 7) // 8
        if len(index) < nbm:
            raise FrameError("truncated bitmap")
        bits = np.unpackbits(np.frombuffer(index[:nbm], dtype=np.uint8), bitorder="little")
        if bits[numel:].any():
            raise FrameError("bitmap padding is not zero")
        where = np.flatnonzero(bits[:numel])
        n = sum(b["count"] for b in blocks)
        if len(where) != n:
            raise FrameError("bitmap population does not match block counts")
        wl = bit_length(len(blocks) - 1)
        if len(index) != nbm + (n * wl + 7) // 8:
            raise FrameError("bitmap label section has the wrong size")
        labels = unpack_bits(index[nbm:], n, wl)
        for i, b in enumerate(blocks):
            sel = where[labels == i]
            if len(sel) != b["count"]:
                raise FrameError("bitmap labels do not match block counts")
            out.append(sel)
    elif code == INDEX_DELTA_VARINT:
        p = 0
        for b in blocks:
            gaps = []
            for _ in range(b["count"]):
                g, p = read_varint(index, p)
                gaps.append(g)
            pos = np.cumsum(np.array(gaps, dtype=np.int64) + 1) - 1 if gaps else np.zeros(0, dtype=np.int64)
            if gaps and max(gaps) >= numel:
                raise FrameError("gap out of range")
            _check_positions(pos, numel)
            out.append(pos)
        if p != len(index):
            raise FrameError("varint section has trailing bytes")
    else:  # INDEX_DELTA_RICE
        p = 0
        for b in blocks:
            c = b["count"]
            if c == 0:
                out.append(np.zeros(0, dtype=np.int64))
                continue
            k = rice_parameter(numel, c)
            bits = np.unpackbits(np.frombuffer(index[p:], dtype=np.uint8), bitorder="little")
            ones = np.flatnonzero(bits)  # candidate terminators of the unary parts
            weights = 1 << np.arange(k, dtype=np.int64)
            i, gaps = 0, np.empty(c, dtype=np.int64)
            for j in range(c):
                t = np.searchsorted(ones, i)  # next one bit at or after i ends the unary part
                if t == len(ones):
                    raise FrameError("truncated rice code")
                q = int(ones[t]) - i
                if q > numel:
                    raise FrameError("rice gap out of range")
                i = int(ones[t]) + 1
                if i + k > len(bits):
                    raise FrameError("truncated rice code")
                gaps[j] = (q << k) | int(bits[i:i + k] @ weights)
                i += k
            if gaps.max() >= numel:
                raise FrameError("gap out of range")
            pos = np.cumsum(gaps + 1) - 1
            _check_positions(pos, numel)
            out.append(pos)
            p += (i + 7) // 8
        if p != len(index):
            raise FrameError("rice section has trailing bytes")
    return out


def decode(buf) -> np.ndarray:
    """Reference decoder (Eq. 8): X~ = sum_m CSR^-1((v^_m) * o_m + v_min_m)."""
    h = parse_header(buf)
    positions = decode_positions(h)
    out = np.zeros(h["numel"], dtype=np.float32)
    seen = np.zeros(h["numel"], dtype=bool)
    p = h["header_bytes"] + h["index_bytes"]
    raw = h["_buf"]
    for b, pos in zip(h["block_info"], positions):
        nb = (b["count"] * b["bits"] + 7) // 8
        codes = unpack_bits(raw[p: p + nb], b["count"], b["bits"])
        p += nb
        vals = b["lo"] + codes.astype(np.float32) * b["step"]  # float32, no fused multiply-add
        if seen[pos].any():
            raise FrameError("two blocks claim the same position")
        seen[pos] = True
        out[pos] = vals if b["sign"] > 0 else -vals
    return out.astype(h["dtype"]).reshape(h["shape"])


def inspect(buf) -> dict:
    h = parse_header(buf)
    h.pop("_buf")
    h["index_code"] = INDEX_NAMES[h["index_code"]]
    h["dtype"] = str(h["dtype"])
    return h


def predict_bits(shape, sparsity, *, blocks=(1, 1), qbits=(8,)) -> int:
    """Conservative frame size bound B^UB (SLICER Sec. 3.3), in bits; every frame fits.

    value bits: k_keep * max(Q) plus one padding byte per block (the paper's sum of
    |Omega_m| * q_bit with q_bit the largest configured width);
    index bits: the smaller of the bitmap and CSR worst cases (the encoder picks a code no
    larger than either); header/meta: exact for this shape, worst case for the rest.
    """
    sparsity, _, blocks, qbits, _, _ = check_params(sparsity, 0.0, blocks, qbits, 0.0, 0)
    shape = tuple(int(d) for d in shape)
    numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
    k = k_keep_for(numel, sparsity)
    nblocks = blocks[0] + blocks[1]
    n_rows, n_cols = csr_view(shape)
    wc = bit_length(n_cols - 1) if n_cols > 0 else 0
    bitmap = (numel + 7) // 8 + (k * bit_length(nblocks - 1) + 7) // 8
    csr = nblocks * (((n_rows + 1) * bit_length(k) + 7) // 8) + (k * wc + 7) // 8 + nblocks
    index = min(bitmap, csr)
    values = (k * max(qbits) + 7) // 8 + nblocks
    header = (8 + sum(len(varint(d)) for d in shape) + 24 + 10 + 3 + len(qbits)
              + 2 * len(varint(k)) + 9 * nblocks + len(varint(index)))
    return 8 * (header + index + values + 4)
