"""Split a llama.cpp GGUF decoder into a head (layers [0, l)) and a tail (layers [l, L)).

    head, tail = collab.llm.split_gguf("model.gguf", "out/", at=15)

Both parts are complete GGUF models llama.cpp can load on their own:

* every non-layer tensor (token embedding, output norm, output head, rope factors, ...) is
  kept in both parts: the head needs the embedding, the tail the output head (and, for
  models with tied embeddings, the embedding matrix *is* the output head). The tail's own
  embedding also lets a server embed tokens (decoding shortcut, kv-handoff);
* the head holds ``blk.0 .. blk.{l-1}`` unchanged; the tail holds ``blk.l .. blk.{L-1}``
  renumbered to ``blk.0 ..``;
* ``{arch}.block_count`` is set to the part's layer count, per-layer metadata arrays (length
  ``L``) are sliced, and ``collab.split.*`` keys record where the part came from;
* tensor bytes are copied bit for bit (quantized types included): nothing is converted.

Only decoder-only architectures that name their layers ``blk.N.`` are accepted; anything
else (encoder-decoder, vision towers, multi-token-prediction layers, gaps in the layer
numbering) raises :class:`GGUFSplitError`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgument

__all__ = ["split_gguf", "GGUFSplitError", "SplitInfo", "gguf_layer_count", "read_split_info"]

_BLK = re.compile(r"^blk\.(\d+)\.(.+)$")
# Architectures llama.cpp loads that are not plain decoder stacks (an encoder, a vision tower,
# an embedding model without a causal LM head): splitting them here would produce something
# llama.cpp cannot run as a head/tail pair.
_REFUSED_ARCHES = {
    "t5", "t5encoder", "bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "neo-bert",
    "modern-bert", "clip", "wavtokenizer-dec", "dream", "llada", "llada-moe",
}
# Non-layer tensors whose name prefix means "a second stack" (encoder/decoder/vision/audio).
_FOREIGN_PREFIXES = ("enc.", "dec.", "v.", "mm.", "a.", "posnet.", "convnext.")


class GGUFSplitError(InvalidArgument):
    """The GGUF cannot be split (unsupported architecture, bad split point, malformed file)."""


@dataclass(frozen=True)
class SplitInfo:
    """Where a head/tail part came from (the ``collab.split.*`` metadata)."""

    part: str          # "head" or "tail"
    at: int            # split point l: the head has layers [0, l), the tail [l, L)
    n_layer_total: int  # L
    first_layer: int   # index in the full model of this part's blk.0
    n_layer: int       # layers in this part
    source: str        # file name of the full model


def _open(src):
    import gguf  # the `gguf` package (llama.cpp's gguf-py); only needed to split

    src = Path(src)
    if not src.is_file():
        raise GGUFSplitError(f"no such GGUF file: {src}")
    try:
        return gguf, gguf.GGUFReader(str(src), "r")
    except Exception as e:  # the reader raises ValueError/struct.error/IndexError on junk
        raise GGUFSplitError(f"{src} is not a readable GGUF file: {e}") from None


def _arch(reader) -> str:
    f = reader.fields.get("general.architecture")
    if f is None:
        raise GGUFSplitError("GGUF has no general.architecture key")
    return str(f.contents())


def gguf_layer_count(path) -> int:
    """``{arch}.block_count`` of a GGUF file."""
    _, reader = _open(path)
    arch = _arch(reader)
    f = reader.fields.get(f"{arch}.block_count")
    if f is None:
        raise GGUFSplitError(f"GGUF ({arch}) has no {arch}.block_count key")
    return int(f.contents())


def read_split_info(path) -> SplitInfo | None:
    """The collab.split.* metadata of a part written by :func:`split_gguf` (None for a full model)."""
    _, reader = _open(path)
    f = reader.fields
    if "collab.split.part" not in f:
        return None
    return SplitInfo(part=str(f["collab.split.part"].contents()), at=int(f["collab.split.at"].contents()),
                     n_layer_total=int(f["collab.split.n_layer_total"].contents()),
                     first_layer=int(f["collab.split.first_layer"].contents()),
                     n_layer=int(f["collab.split.n_layer"].contents()),
                     source=str(f["collab.split.source"].contents()))


def _check_splittable(reader, arch: str):
    if arch in _REFUSED_ARCHES:
        raise GGUFSplitError(f"architecture {arch!r} is not a decoder-only stack; split_gguf only handles "
                             "llama.cpp decoder architectures with blk.N. layers")
    if "collab.split.part" in reader.fields:
        raise GGUFSplitError("this GGUF is already a head/tail part; split the full model instead")
    bc = reader.fields.get(f"{arch}.block_count")
    if bc is None:
        raise GGUFSplitError(f"architecture {arch!r} has no {arch}.block_count key: not a blk.N. decoder")
    n_layer = int(bc.contents())
    nextn = reader.fields.get(f"{arch}.nextn_predict_layers")
    if nextn is not None and int(nextn.contents()) > 0:
        raise GGUFSplitError(f"{arch}: models with multi-token-prediction layers (nextn_predict_layers) "
                             "are not supported")
    seen = set()
    for t in reader.tensors:
        m = _BLK.match(t.name)
        if m:
            seen.add(int(m.group(1)))
        elif t.name.startswith(_FOREIGN_PREFIXES):
            raise GGUFSplitError(f"{arch}: tensor {t.name!r} belongs to a second stack (encoder, vision or audio "
                                 "tower); only decoder-only blk.N. models can be split")
    if not seen:
        raise GGUFSplitError(f"{arch}: no blk.N. tensors: not a llama.cpp decoder with standard layer naming")
    if seen != set(range(n_layer)):
        raise GGUFSplitError(f"{arch}: block_count is {n_layer} but the layers present are "
                             f"{sorted(seen)[:5]}..{sorted(seen)[-1]} ({len(seen)} of them)")
    return n_layer


def _field_value(gguf, field):
    vtype = field.types[0]
    sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
    return vtype, sub, field.contents()


def _read_fields(gguf, reader):
    out = []
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        out.append((field.name, *_field_value(gguf, field)))
    return out


def _write_part(gguf, reader, fields, arch, dst: Path, part: str, lo: int, hi: int, n_layer: int, at: int,
                source: str, alignment: int | None, source_digest: str = ""):
    writer = gguf.GGUFWriter(str(dst), arch)
    if alignment is not None:
        writer.data_alignment = alignment
    count = hi - lo
    per_layer_keys = []
    for name, vtype, sub, value in fields:
        if name == f"{arch}.block_count":
            value = count
        elif name == f"{arch}.leading_dense_block_count":
            # The first n layers are dense (DeepSeek-style MoE): keep that in layer terms.
            value = max(0, min(int(value), hi) - lo)
        elif (vtype == gguf.GGUFValueType.ARRAY and name.startswith(arch + ".") and sub != gguf.GGUFValueType.STRING
              and isinstance(value, list) and len(value) == n_layer):
            value = value[lo:hi]  # per-layer array (head counts, window sizes, ...)
            per_layer_keys.append(name)
        writer.add_key_value(name, value, vtype, sub_type=sub)
    writer.add_string("collab.split.part", part)
    writer.add_uint32("collab.split.at", at)
    writer.add_uint32("collab.split.n_layer_total", n_layer)
    writer.add_uint32("collab.split.first_layer", lo)
    writer.add_uint32("collab.split.n_layer", count)
    writer.add_string("collab.split.source", source)
    if source_digest:  # lets trained nets (collab.llm.artifact) check which model a part came from
        writer.add_string("collab.split.source_sha256", source_digest)

    chosen = []
    for t in reader.tensors:
        m = _BLK.match(t.name)
        if m is None:
            chosen.append((t.name, t))
            continue
        i = int(m.group(1))
        if lo <= i < hi:
            chosen.append((f"blk.{i - lo}.{m.group(2)}", t))
    for name, t in chosen:
        writer.add_tensor_info(name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, t in chosen:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    return per_layer_keys


def split_gguf(src, out_dir, at, *, prefix: str | None = None, overwrite: bool = True):
    """Write ``<prefix>.head-<at>.gguf`` (layers [0, at)) and ``<prefix>.tail-<at>.gguf`` (layers
    [at, L), renumbered) into out_dir and return ``(head_path, tail_path)``; 1 <= at <= L-1.

    ``at`` may also be a list of split points: the source is parsed once (the gguf reader is
    the slow part) and a list of (head, tail) pairs comes back.
    """
    many = not isinstance(at, (int, bool)) and hasattr(at, "__iter__")
    points = list(at) if many else [at]
    if not points:
        raise GGUFSplitError("no split point given")
    for a in points:
        if isinstance(a, bool) or not isinstance(a, int):
            raise GGUFSplitError(f"at must be an integer layer index, got {a!r}")
    gguf, reader = _open(src)
    arch = _arch(reader)
    n_layer = _check_splittable(reader, arch)
    swa = reader.fields.get(f"{arch}.attention.sliding_window_pattern")
    period = int(swa.contents()) if swa is not None and len(swa.types) == 1 else 0
    for a in points:
        if not 1 <= a <= n_layer - 1:
            raise GGUFSplitError(f"split point at={a} out of range: the model has {n_layer} layers, so "
                                 f"1 <= at <= {n_layer - 1}")
        if period > 0 and a % period:
            raise GGUFSplitError(f"{arch}: sliding-window layers repeat every {period} layers; the tail would "
                                 f"renumber them wrongly unless at is a multiple of {period}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = prefix or Path(src).name.removesuffix(".gguf")
    align = reader.fields.get("general.alignment")
    alignment = int(align.contents()) if align is not None else None
    fields = _read_fields(gguf, reader)
    from .artifact import gguf_digest

    digest = gguf_digest(src).hex()
    results = []
    for a in points:
        head = out_dir / f"{stem}.head-{a}.gguf"
        tail = out_dir / f"{stem}.tail-{a}.gguf"
        if not overwrite:
            for p in (head, tail):
                if p.exists():
                    raise GGUFSplitError(f"{p} exists (overwrite=False)")
        for dst, part, lo, hi in ((head, "head", 0, a), (tail, "tail", a, n_layer)):
            tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
            try:
                _write_part(gguf, reader, fields, arch, tmp, part, lo, hi, n_layer, a, Path(src).name, alignment,
                            digest)
                os.replace(tmp, dst)
            finally:
                if tmp.exists():
                    tmp.unlink()
        results.append((head, tail))
    return results if many else results[0]
