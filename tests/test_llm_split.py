"""collab.llm.split_gguf: head/tail GGUF parts, bit-for-bit tensors, consistent metadata,
clear refusals. Uses a tiny random-weight GGUF written here (no download)."""
from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the gguf package is needed to split GGUF files")

from collab.cli import main as cli_main  # noqa: E402
from collab.llm import GGUFSplitError, read_split_info, split_gguf  # noqa: E402
from collab.llm.tiny import write_tiny_gguf  # noqa: E402

N_LAYER = 5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return write_tiny_gguf(d / "tiny.gguf", n_layer=N_LAYER, seed=3, per_layer_arrays=True)


def _fields(r):
    out = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        out[f.name] = f.contents()
    return out


def _tensors(r):
    return {t.name: t for t in r.tensors}


@pytest.mark.parametrize("at", list(range(1, N_LAYER)))
def test_parts_hold_exact_layers(tiny, tmp_path, at):
    head, tail = split_gguf(tiny, tmp_path, at=at)
    src = gguf.GGUFReader(tiny)
    rh, rt = gguf.GGUFReader(head), gguf.GGUFReader(tail)
    ts, th, tt = _tensors(src), _tensors(rh), _tensors(rt)
    non_layer = {n for n in ts if not n.startswith("blk.")}
    assert {n for n in th if not n.startswith("blk.")} == non_layer
    assert {n for n in tt if not n.startswith("blk.")} == non_layer
    # head: blk.0..at-1 unchanged; tail: blk.at.. renumbered from 0
    expect_head = {n: n for n in ts if not n.startswith("blk.") or int(n.split(".")[1]) < at}
    expect_tail = {}
    for n in ts:
        if not n.startswith("blk."):
            expect_tail[n] = n
        else:
            i = int(n.split(".")[1])
            if i >= at:
                expect_tail["blk.%d.%s" % (i - at, n.split(".", 2)[2])] = n
    assert set(th) == set(expect_head)
    assert set(tt) == set(expect_tail)
    for part, expect in ((th, expect_head), (tt, expect_tail)):
        for name, src_name in expect.items():
            a, b = part[name], ts[src_name]
            assert a.tensor_type == b.tensor_type, name
            assert list(a.shape) == list(b.shape), name
            assert bytes(np.asarray(a.data).tobytes()) == bytes(np.asarray(b.data).tobytes()), name
    # quantized types really are in there
    types = {t.tensor_type.name for t in rh.tensors} | {t.tensor_type.name for t in rt.tensors}
    assert {"Q8_0", "Q4_0", "F32"} <= types

    fs, fh, ft = _fields(src), _fields(rh), _fields(rt)
    assert fh["llama.block_count"] == at and ft["llama.block_count"] == N_LAYER - at
    assert fh["llama.feed_forward_length"] == fs["llama.feed_forward_length"][:at]
    assert ft["llama.attention.head_count_kv"] == fs["llama.attention.head_count_kv"][at:]
    for k, v in fs.items():  # everything else copied unchanged
        if k in ("llama.block_count", "llama.feed_forward_length", "llama.attention.head_count_kv"):
            continue
        assert fh[k] == v and ft[k] == v, k
    ih, it = read_split_info(head), read_split_info(tail)
    assert (ih.part, ih.at, ih.first_layer, ih.n_layer, ih.n_layer_total) == ("head", at, 0, at, N_LAYER)
    assert (it.part, it.at, it.first_layer, it.n_layer, it.n_layer_total) == ("tail", at, at, N_LAYER - at, N_LAYER)
    assert read_split_info(tiny) is None


def test_many_points_one_parse(tiny, tmp_path):
    pairs = split_gguf(tiny, tmp_path, at=[1, 3])
    assert [p[0].name for p in pairs] == ["tiny.head-1.gguf", "tiny.head-3.gguf"]
    assert all(p.is_file() for pair in pairs for p in pair)


@pytest.mark.parametrize("at", [0, N_LAYER, -1, N_LAYER + 7])
def test_bad_split_point(tiny, tmp_path, at):
    with pytest.raises(GGUFSplitError, match="out of range"):
        split_gguf(tiny, tmp_path, at=at)


@pytest.mark.parametrize("at", [True, 1.5, "2", None, []])
def test_bad_split_point_type(tiny, tmp_path, at):
    with pytest.raises(GGUFSplitError):
        split_gguf(tiny, tmp_path, at=at)
    assert issubclass(GGUFSplitError, ValueError)


def test_not_a_gguf(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    with pytest.raises(GGUFSplitError, match="not a readable GGUF"):
        split_gguf(junk, tmp_path, at=1)
    with pytest.raises(GGUFSplitError, match="no such"):
        split_gguf(tmp_path / "missing.gguf", tmp_path, at=1)


def test_refuses_non_decoder_arch(tmp_path):
    p = write_tiny_gguf(tmp_path / "t5.gguf", n_layer=2, arch="t5")
    with pytest.raises(GGUFSplitError, match="not a decoder-only"):
        split_gguf(p, tmp_path, at=1)


def _rewrite(src, dst, rename=None, drop=(), extra_kv=None):
    """Copy a GGUF with some tensors renamed/dropped (to build malformed models)."""
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(dst), arch)
    for f in r.fields.values():
        if f.name == "general.architecture" or f.name.startswith("GGUF."):
            continue
        vt = f.types[0]
        w.add_key_value(f.name, f.contents(), vt, sub_type=f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)
    for k, (v, vt) in (extra_kv or {}).items():
        w.add_key_value(k, v, vt)
    keep = [t for t in r.tensors if t.name not in drop]
    for t in keep:
        w.add_tensor_info((rename or {}).get(t.name, t.name), t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in keep:
        w.write_tensor_data(t.data)
    w.close()
    return dst


def test_refuses_second_stack(tiny, tmp_path):
    p = _rewrite(tiny, tmp_path / "enc.gguf", rename={"output_norm.weight": "enc.output_norm.weight"})
    with pytest.raises(GGUFSplitError, match="second stack"):
        split_gguf(p, tmp_path, at=1)


def test_refuses_layer_gap(tiny, tmp_path):
    r = gguf.GGUFReader(tiny)
    drop = {t.name for t in r.tensors if t.name.startswith("blk.2.")}
    p = _rewrite(tiny, tmp_path / "gap.gguf", drop=drop)
    with pytest.raises(GGUFSplitError, match="block_count"):
        split_gguf(p, tmp_path, at=1)


def test_refuses_nonstandard_naming(tiny, tmp_path):
    r = gguf.GGUFReader(tiny)
    ren = {t.name: t.name.replace("blk.", "layers.") for t in r.tensors if t.name.startswith("blk.")}
    p = _rewrite(tiny, tmp_path / "layers.gguf", rename=ren)
    with pytest.raises(GGUFSplitError, match="blk.N"):
        split_gguf(p, tmp_path, at=1)


def test_refuses_mtp_layers(tiny, tmp_path):
    p = _rewrite(tiny, tmp_path / "mtp.gguf",
                 extra_kv={"llama.nextn_predict_layers": (1, gguf.GGUFValueType.UINT32)})
    with pytest.raises(GGUFSplitError, match="multi-token"):
        split_gguf(p, tmp_path, at=1)


def test_sliding_window_period(tiny, tmp_path):
    p = _rewrite(tiny, tmp_path / "swa.gguf",
                 extra_kv={"llama.attention.sliding_window_pattern": (2, gguf.GGUFValueType.UINT32)})
    with pytest.raises(GGUFSplitError, match="multiple of 2"):
        split_gguf(p, tmp_path, at=1)
    head, tail = split_gguf(p, tmp_path, at=2)
    assert read_split_info(tail).first_layer == 2


def test_refuses_resplitting_a_part(tiny, tmp_path):
    head, _ = split_gguf(tiny, tmp_path, at=3)
    with pytest.raises(GGUFSplitError, match="already a head/tail part"):
        split_gguf(head, tmp_path / "again", at=1)


def test_cli(tiny, tmp_path, capsys):
    assert cli_main(["split-gguf", str(tiny), "--at", "2", "--at", "4", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "at=2" in out and "at=4" in out
    assert (tmp_path / "tiny.tail-4.gguf").is_file()
    assert cli_main(["split-gguf", str(tiny), "--at", "9", "-o", str(tmp_path)]) == 2
    assert "out of range" in capsys.readouterr().err
