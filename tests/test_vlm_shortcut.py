"""The VLM's own decoding shortcut (MindFusion's D for collab-vlm-tiny): its artifact checks
(projector, text model, split point, a text LLM's shortcut) and the server's shortcut mode with
it (first token = the full model's). Tiny models; the shipped artifact on the real VLM is the
slow test."""
from __future__ import annotations

import numpy as np
import pytest

from _llm_common import require_llama, smollm2_or_skip, tiny_split
from _vlm_common import TINY_EMBD, tiny_llm, tiny_parts


def _shortcut_file(tmp_path, *, at=2, answers="vlm", projector=b"projector-a", model=None, name="s.clfn"):
    from collab.llm.artifact import KIND_SHORTCUT, FcNet, expected_tensors, model_digest
    from collab.vlm.codec_train import projector_digest

    proj = tmp_path / "projector.bin"
    proj.write_bytes(projector)
    rng = np.random.default_rng(0)
    t = {n: (rng.standard_normal(s) * 0.05).astype(np.float32) for n, s in expected_tensors(KIND_SHORTCUT, TINY_EMBD)}
    meta = {"answers": answers, "projector_sha256": projector_digest(proj)} if answers else {}
    net = FcNet(KIND_SHORTCUT, TINY_EMBD, at, 4, model_digest(model or tiny_llm()), t, meta=meta)
    return net.save(tmp_path / name), proj


def test_vlm_shortcut_refused_for_another_projector_model_or_split(tmp_path):
    require_llama()
    from collab.llm.artifact import ArtifactError
    from collab.vlm.shortcut import load_vlm_shortcut, vlm_shortcut_matches

    head, tail = tiny_split(4, 2)
    good, proj = _shortcut_file(tmp_path)
    sc = load_vlm_shortcut(good, model=tail, split_at=2, projector=proj)
    assert sc.trained and sc.n_embd == TINY_EMBD and sc(np.ones((3, TINY_EMBD), np.float32)).shape == (3, TINY_EMBD)
    assert vlm_shortcut_matches(good, proj)
    other = tmp_path / "other.bin"
    other.write_bytes(b"projector-b")
    assert not vlm_shortcut_matches(good, other)
    with pytest.raises(ArtifactError, match="another projector"):
        load_vlm_shortcut(good, model=tail, split_at=2, projector=other)
    with pytest.raises(ArtifactError, match="split point"):
        load_vlm_shortcut(good, model=tail, split_at=1, projector=proj)
    other_model, _ = _shortcut_file(tmp_path, model=tiny_split(4, 2, seed=1)[0], name="m.clfn")
    with pytest.raises(ArtifactError, match="different model"):
        load_vlm_shortcut(other_model, model=tail, split_at=2, projector=proj)
    text, _ = _shortcut_file(tmp_path, answers=None, name="text.clfn")  # a text LLM's shortcut
    with pytest.raises(ArtifactError, match="not a VLM decoding shortcut"):
        load_vlm_shortcut(text, model=tail, split_at=2, projector=proj)
    bad = tmp_path / "bad.clfn"
    bad.write_bytes(good.read_bytes()[:-9] + b"x" * 9)
    with pytest.raises(ArtifactError):
        load_vlm_shortcut(bad, model=tail, split_at=2, projector=proj)


def _need_native_vision():
    require_llama()
    from collab.vlm.split import vision_available

    if not vision_available():
        pytest.skip("collab was built without libmtmd (VLM image encoder stubbed)")


def test_shortcut_mode_uses_the_vlm_shortcut_and_keeps_the_first_token(tmp_path):
    _need_native_vision()
    from collab.llm.artifact import ArtifactError
    from collab.net.link import LinkClient
    from collab.vlm.codec import VlmTask
    from collab.vlm.split import VlmDevice

    head, tail = tiny_split(4, 2)
    _, _, mmproj = tiny_parts()
    path, proj = _shortcut_file(tmp_path)
    task = VlmTask(head=head, tail=tail, n_ctx=256, image_codecs=[], projector=proj, vlm_shortcut=path)
    assert task.vlm_shortcut_path() == path
    dev = VlmDevice(mmproj, head=head, full=tiny_llm(), n_ctx=256)
    client = LinkClient([task])
    img = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    for q in ("What is this item?", "Is this footwear?"):
        ref = dev.ask(img, q, mode="device-only", max_tokens=6, ignore_eog=True)
        g = dev.ask(img, q, mode="shortcut", client=client, max_tokens=6, ignore_eog=True)
        assert g.tokens[0] == ref.tokens[0] and len(g.tokens) == 6
        assert g.bytes_up == dev.ask(img, q, mode="shortcut", client=client, max_tokens=1).bytes_up  # prefill only
    sc, _ = task._shortcut_parts()
    assert sc.trained and sc.source == str(path)
    other = tmp_path / "other.bin"
    other.write_bytes(b"projector-b")
    bad = VlmTask(head=head, tail=tail, n_ctx=256, image_codecs=[], projector=other, vlm_shortcut=path)
    with pytest.raises(ArtifactError, match="another projector"):
        bad._shortcut_parts()
    # no VLM shortcut for this split point: the text LLM's fallback (untrained identity for the tiny model)
    plain = VlmTask(head=head, tail=tail, n_ctx=256, image_codecs=[], projector=proj)
    assert plain.vlm_shortcut_path() is None and not plain._shortcut_parts()[0].trained


@pytest.mark.slow
def test_shipped_vlm_shortcut_on_the_real_vlm():
    """The shipped collab-vlm-tiny shortcut: loaded for the shipped projector at split 15 only,
    and the shortcut mode's first answer token equals the full VLM's."""
    _need_native_vision()
    full = smollm2_or_skip()
    from collab.llm.artifact import ArtifactError
    from collab.llm.server import prepare_parts
    from collab.net.link import LinkClient
    from collab.vit.data import load_fmnist
    from collab.vlm.codec import VlmTask
    from collab.vlm.models import mmproj_path
    from collab.vlm.shortcut import find_vlm_shortcut, load_vlm_shortcut
    from collab.vlm.split import VlmDevice

    path = find_vlm_shortcut(15)
    if path is None:
        pytest.skip("no trained VLM shortcut for split 15 in this checkout / install")
    head, tail, at = prepare_parts(full, 15)
    with pytest.raises(ArtifactError, match="split point"):
        load_vlm_shortcut(path, model=prepare_parts(full, 14)[1], split_at=14)
    with pytest.raises(ArtifactError, match="different model"):
        load_vlm_shortcut(path, model=tiny_llm(), split_at=15)
    task = VlmTask(head=head, tail=tail, n_ctx=512, image_codecs=[])
    assert task.vlm_shortcut_path() == path
    dev = VlmDevice(mmproj_path(), head=head, full=full, n_threads=1)
    client = LinkClient([task])
    x, _ = load_fmnist("test")
    for i, q in ((0, "What is this item?"), (1, "Is this footwear?")):
        ref = dev.ask(x[i], q, mode="device-only", max_tokens=4)
        g = dev.ask(x[i], q, mode="shortcut", client=client, max_tokens=4)
        assert g.tokens[0] == ref.tokens[0]
    assert task._shortcut_parts()[0].source == str(path)


def test_serve_refuses_a_shortcut_that_is_not_the_vlms(tmp_path, capsys):
    """`collab vlm serve --shortcut F` loads F before serving: a text LLM's shortcut is refused
    with a clear message and exit status 2, not at the first request."""
    require_llama()
    pytest.importorskip("grpc")
    from collab.cli import main

    text, _ = _shortcut_file(tmp_path, answers=None, name="text.clfn")
    rc = main(["vlm", "serve", "--model", str(tiny_llm()), "--at", "2", "--port", "0", "--threads", "1",
               "--workdir", str(tmp_path / "parts"), "--shortcut", str(text)])
    assert rc == 2
    assert "not a VLM decoding shortcut" in capsys.readouterr().err
