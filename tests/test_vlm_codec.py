"""The image-row codec in the VLM split (Eq. 1: image rows as FC codes, text exact; the server
decodes before the tail), its artifact checks, and the token-dropping baselines. Tiny models."""
from __future__ import annotations

import numpy as np
import pytest

from _llm_common import require_llama, tiny_split
from _vlm_common import TINY_EMBD, tiny_llm, tiny_parts

from collab.errors import InvalidArgument


def _need_native_vision():
    require_llama()
    from collab.vlm.split import vision_available

    if not vision_available():
        pytest.skip("collab was built without libmtmd (VLM image encoder stubbed)")


class IdentityCodec:
    """R = identity as an FC codec: codes are the rows themselves."""

    n_embd = code_dim = TINY_EMBD

    def encode(self, x):
        return np.asarray(x, np.float32)

    decode = encode


def _setup(codecs=None, image_codecs=(), projector=None):
    from collab.llm.fcnet import FcCodecs
    from collab.net.link import LinkClient
    from collab.vlm.codec import VlmTask
    from collab.vlm.split import VlmDevice

    head, tail = tiny_split(4, 2)
    _, _, mmproj = tiny_parts()
    dev = VlmDevice(mmproj, head=head, full=tiny_llm(), n_ctx=256)
    task = VlmTask(head=head, tail=tail, n_ctx=256, image_codecs=list(image_codecs), projector=projector)
    if codecs is not None:
        task._codecs = FcCodecs(codecs)
    return dev, LinkClient([task])


def _img(seed):
    return np.random.default_rng(seed).integers(0, 256, (28, 28, 3), dtype=np.uint8)


def _codec_file(tmp_path, *, at=2, rows="image", projector=b"projector-a", model=None, seed=0, name="c.clfn"):
    from collab.llm.artifact import KIND_CODEC, FcNet, expected_tensors, model_digest
    from collab.vlm.codec_train import projector_digest

    proj = tmp_path / "projector.bin"
    proj.write_bytes(projector)
    rng = np.random.default_rng(seed)
    t = {n: (rng.standard_normal(s) * 0.1).astype(np.float32) for n, s in expected_tensors(KIND_CODEC, TINY_EMBD, 8)}
    meta = {"rows": rows, "projector_sha256": projector_digest(proj)} if rows else {}
    net = FcNet(KIND_CODEC, TINY_EMBD, at, 4, model_digest(model or tiny_llm()), t, code_dim=8, meta=meta)
    return net.save(tmp_path / name), proj


def test_identity_image_codec_split_equals_exact_split():
    """R with an identity codec (f32 codes) answers exactly as the uncompressed split; the
    prefill payload is an FC payload whose coded span is the image rows."""
    _need_native_vision()
    from collab.vlm.codec import image_row_policy

    dev, client = _setup([IdentityCodec()])
    for seed, q in ((0, "What is this item?"), (1, "Is this footwear?")):
        img = _img(seed)
        before, after = dev.layout(q)
        ref = dev.ask(img, q, mode="roundtrip", client=client, max_tokens=6)
        g = dev.ask(img, q, mode="roundtrip", client=client, max_tokens=6,
                    policy=image_row_policy(IdentityCodec(), before, after, dtype="f32"))
        assert g.tokens == ref.tokens
        segs = g.extra["prefill_segments"]
        assert [s[:2] for s in segs] == [("f32", len(before)), ("fc-f32", 4), ("f32", len(after))]


def test_server_decodes_image_codes_as_the_device_would():
    """A real CLFN image codec through the wire (float16 codes, decoded by the server's native
    net) gives the tokens of the same reconstruction done on the device and sent exact."""
    _need_native_vision()
    from collab.llm.protocol import RowPolicy
    from collab.vlm.codec import image_row_policy, load_image_codec

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path, proj = _codec_file(Path(d))
        head, _ = tiny_split(4, 2)
        codec = load_image_codec(path, model=head, split_at=2, projector=proj)
        dev, client = _setup(image_codecs=[path], projector=proj)
        q = "Is this a bag?"
        before, after = dev.layout(q)
        img = _img(3)
        g = dev.ask(img, q, mode="roundtrip", client=client, max_tokens=6,
                    policy=image_row_policy(codec, before, after, dtype="f16"))
        f16 = lambda c: np.asarray(c, np.float32).astype(np.float16).astype(np.float32)  # noqa: E731
        ref = dev.ask(img, q, mode="roundtrip", client=client, max_tokens=6, policy=RowPolicy.exact(),
                      reduce=lambda x: codec.decode(f16(codec.encode(x))))
        assert g.tokens == ref.tokens
        assert g.extra["prefill_payload"] < ref.extra["prefill_payload"]


def test_mismatched_image_codec_artifacts_are_refused(tmp_path):
    require_llama()
    from collab.llm.artifact import ArtifactError
    from collab.vlm.codec import load_image_codec

    head, _ = tiny_split(4, 2)
    good, proj = _codec_file(tmp_path)
    assert load_image_codec(good, model=head, split_at=2, projector=proj).code_dim == 8
    other_proj = tmp_path / "other.bin"
    other_proj.write_bytes(b"projector-b")
    with pytest.raises(ArtifactError, match="another projector"):
        load_image_codec(good, model=head, split_at=2, projector=other_proj)
    with pytest.raises(ArtifactError, match="split point"):
        load_image_codec(good, model=head, split_at=1, projector=proj)
    text, _ = _codec_file(tmp_path, rows=None, name="text.clfn")
    with pytest.raises(ArtifactError, match="not an image-row codec"):
        load_image_codec(text, model=head, split_at=2, projector=proj)
    other_model, _ = _codec_file(tmp_path, model=tiny_split(4, 2, seed=1)[0], name="m.clfn")
    with pytest.raises(ArtifactError, match="different model"):
        load_image_codec(other_model, model=head, split_at=2, projector=proj)
    bad = tmp_path / "bad.clfn"
    bad.write_bytes(good.read_bytes()[:-9] + b"x" * 9)
    with pytest.raises(ArtifactError):
        load_image_codec(bad, model=head, split_at=2, projector=proj)


def test_server_refuses_image_codes_without_a_matching_codec():
    _need_native_vision()
    from collab.vlm.codec import image_row_policy

    dev, client = _setup([])
    q = "Is this a bag?"
    before, after = dev.layout(q)
    with pytest.raises(Exception, match="no trained FC codec"):
        dev.ask(_img(0), q, mode="roundtrip", client=client, max_tokens=4,
                policy=image_row_policy(IdentityCodec(), before, after, dtype="f32"))


# -- token dropping --------------------------------------------------------------------------
def test_kept_rows_and_topk():
    from collab.vlm.drop import kept_rows, topk_sorted

    assert kept_rows(64, 8) == 8 and kept_rows(64, 4) == 16 and kept_rows(4, 8) == 1
    assert list(topk_sorted([0.1, 0.9, 0.3, 0.9, 0.0], 3)) == [1, 2, 3]
    with pytest.raises(InvalidArgument):
        topk_sorted([1.0, 2.0], 3)


@pytest.mark.parametrize("m,k", [(64, 8), (64, 16), (7, 3), (5, 5), (4, 1)])
def test_tome_merges_to_k_groups_that_partition_the_rows(m, k):
    from collab.vlm.drop import tome_merge

    x = np.random.default_rng(m + k).standard_normal((m, 12)).astype(np.float32)
    out, groups = tome_merge(x, k)
    assert out.shape == (k, 12) and len(groups) == k
    assert sorted(i for g in groups for i in g) == list(range(m))
    assert [g[0] for g in groups] == sorted(g[0] for g in groups)
    for row, g in zip(out, groups):
        np.testing.assert_allclose(row, x[g].mean(0), rtol=1e-5, atol=1e-5)


def test_tome_merges_the_most_similar_rows_first():
    from collab.vlm.drop import tome_merge

    x = np.eye(6, dtype=np.float32)
    x[3] = x[2] * 2.0  # rows 2 and 3 point the same way
    _, groups = tome_merge(x, 5)
    assert [2, 3] in groups


def test_fastv_and_prumerge_keep_the_top_rows():
    from collab.vlm.drop import fastv_keep, prumerge

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 10)).astype(np.float32)
    scores = rng.random(16)
    rows, idx = fastv_keep(x, scores, 4)
    assert list(idx) == sorted(np.argsort(-scores)[:4]) and np.array_equal(rows, x[idx])
    keys = rng.standard_normal((16, 6)).astype(np.float32)
    rows, idx = prumerge(x, scores, keys, 4)
    assert rows.shape == (4, 10) and list(idx) == sorted(np.argsort(-scores)[:4])
    # with all the weight on the kept patches, merging changes nothing
    w = np.zeros(16)
    w[idx] = 1.0
    np.testing.assert_allclose(prumerge(x, w, keys, 4)[0], x[idx], rtol=1e-6)
    with pytest.raises(InvalidArgument):
        prumerge(x, scores[:5], keys, 4)


def test_layer2_attention_matches_torch_mirror():
    """FastV's scores (numpy, from the GGUF) against the training mirror's layer (torch)."""
    torch = pytest.importorskip("torch")
    from collab.llm.train.mirror import LlamaMirror
    from collab.vlm.drop import Layer2Attention

    path = tiny_llm()
    m = LlamaMirror.from_gguf(path)
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((9, m.n_embd)).astype(np.float32))
    seen = {}
    orig = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):  # the mirror's call: is_causal, and attn_mask (None without a KV cache)
        s = (q[:, -1:] @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
        seen["p"] = torch.softmax(s, -1)[:, 0].mean(0)
        return orig(q, k, v, **kw)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        m.layer(2, x, torch.arange(9))
    finally:
        torch.nn.functional.scaled_dot_product_attention = orig
    got = Layer2Attention(path, 2).probs(x.numpy())
    assert got.shape == (9,) and abs(got.sum() - 1) < 1e-5
    np.testing.assert_allclose(got, seen["p"].numpy(), rtol=1e-4, atol=1e-6)


def test_split_with_dropped_image_rows_sends_fewer_rows():
    _need_native_vision()
    from collab.vlm.drop import KeptImageRows

    dev, client = _setup([])
    q = "Is this a bag?"
    before, after = dev.layout(q)
    img = _img(5)
    exact = dev.ask(img, q, mode="roundtrip", client=client, max_tokens=5)
    same = dev.ask(img, q, mode="roundtrip", client=client, max_tokens=5, reduce=lambda x: x)
    assert same.tokens == exact.tokens
    g = dev.ask(img, q, mode="roundtrip", client=client, max_tokens=5, policy=KeptImageRows(len(before), 2),
                reduce=lambda x: x[:2])
    assert [s[:2] for s in g.extra["prefill_segments"]] == [("f32", len(before)), ("f16", 2), ("f32", len(after))]
    with pytest.raises(InvalidArgument):
        dev.ask(img, q, mode="kv-handoff", client=client, reduce=lambda x: x[:2])
    with pytest.raises(InvalidArgument):
        dev.ask(img, q, mode="roundtrip", client=client, reduce=lambda x: np.zeros((0, TINY_EMBD)))


def test_cls_attention_is_a_distribution_over_patches():
    from collab.vit.runtime_model import NumpyViT
    from collab.vlm.drop import cls_attention

    tower, _, _ = tiny_parts()
    flat = {"patch_w": tower.patch_w, "patch_b": tower.patch_b, "cls": tower.cls, "pos": tower.pos,
            "norm_w": tower.norm_w, "norm_b": tower.norm_b, "heads": tower.heads}
    for i, b in enumerate(tower.blocks):
        for k, v in b.items():
            flat[f"b{i}.{k}"] = v
    att, keys = cls_attention(NumpyViT(flat, tower.grid), _img(1))
    assert att.shape == (4,) and keys.shape[0] == 4
    assert 0 < att.sum() < 1  # CLS also attends to itself
