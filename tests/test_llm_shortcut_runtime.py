"""The trained nets inside the split runtime: the shortcut mode's first token is the full
model's, FC-coded early rows go through the server's decoder, R with an identity codec is
bit-identical to the uncompressed path, and nets for another model / split are refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _llm_common import require_llama, smollm2_or_skip, smollm2_split, tiny_model, tiny_split
from test_llm_codec_fc import IdentityCodec
from test_llm_shortcut_artifact import random_net

pytestmark = pytest.mark.usefixtures("_llama")

REPO_MODELS = Path(__file__).resolve().parents[1] / "models" / "llm"


@pytest.fixture(scope="module")
def _llama():
    require_llama()


def test_identity_codec_tail_logits_bit_identical():
    from collab.llm.fcnet import FcRowPolicy, decode_fc_rows
    from collab.llm.runtime import Model

    head, tail = tiny_split(4, 2)
    h, t = Model(head), Model(tail)
    toks = h.tokenize("the cat sat on the mat and looked at the dog")
    with h.session("head") as hs:
        rows = hs.decode(toks)
    pol = FcRowPolicy(IdentityCodec(h.n_embd), keep_last=3, dtype="f32")
    back = decode_fc_rows(pol.encode(rows), pol.codec)
    with t.session("tail") as a, t.session("tail") as b:
        ref = a.decode_rows(rows, n_outputs=len(toks))
        got = b.decode_rows(back, n_outputs=len(toks))
    assert np.array_equal(ref, got)


def _digest_for(model, kind, d, at, k=0):
    from collab.llm.artifact import KIND_CODEC, KIND_SHORTCUT, FcNet, model_digest

    net = random_net(KIND_SHORTCUT if kind == "shortcut" else KIND_CODEC, d=d, k=k, at=at)
    return FcNet(net.kind, d, at, 4, model_digest(model), net.tensors, code_dim=net.code_dim)


def test_fc_row_policy_end_to_end_and_refusals(tmp_path, monkeypatch):
    from collab.errors import FrameError
    from collab.llm.device import Device
    from collab.llm.fcnet import FcRowPolicy, load_net
    from collab.net.link import LinkClient
    from collab.llm.server import LlmTask

    head, tail = tiny_split(4, 2)
    d = 64
    codec_file = _digest_for(tail, "codec", d, 2, k=8).save(tmp_path / "smollm2-135m.codec-2-r8.clfn")
    monkeypatch.setenv("COLLAB_LLM_NETS", str(tmp_path))
    codec = load_net(codec_file, kind="codec", model=head, split_at=2)
    task = LlmTask(head=head, tail=tail, n_ctx=256)
    dev = Device(head=head, full=tiny_model(4), n_ctx=256)
    client = LinkClient([task])
    g = dev.generate("the cat sat on the mat", mode="roundtrip", client=client, max_tokens=4, chat=False,
                     policy=FcRowPolicy(codec, keep_last=2, dtype="int8"))
    exact = dev.generate("the cat sat on the mat", mode="roundtrip", client=client, max_tokens=4, chat=False)
    assert 1 <= g.n_generated <= 4
    assert g.extra["prefill_payload"] < exact.extra["prefill_payload"]
    # refused: another model's net, another split, a corrupt file
    other = _digest_for(tiny_model(4, seed=1), "codec", d, 2, k=8).save(tmp_path / "other.clfn")
    with pytest.raises(FrameError, match="different model"):
        load_net(other, kind="codec", model=head)
    with pytest.raises(FrameError, match="split point"):
        load_net(codec_file, kind="codec", model=head, split_at=3)
    with pytest.raises(FrameError, match="n_embd"):
        load_net(codec_file, kind="codec", n_embd=576)
    bad = tmp_path / "bad.clfn"
    b = bytearray(codec_file.read_bytes())
    b[-20] ^= 0xFF
    bad.write_bytes(bytes(b))
    with pytest.raises(FrameError, match="checksum"):
        load_net(bad, kind="codec")


@pytest.mark.slow
def test_smollm2_trained_shortcut_first_token_is_full_models(monkeypatch):
    """With the shipped trained shortcut for the demo's split (if committed): the first token
    comes from the original path and equals device-only's."""
    from collab.llm.device import Device
    from collab.net.link import LinkClient
    from collab.llm.server import LlmTask

    src = smollm2_or_skip()
    at = 15
    art = REPO_MODELS / f"smollm2-135m.shortcut-{at}.clfn"
    if not art.is_file():
        pytest.skip(f"{art} is not committed")
    monkeypatch.setenv("COLLAB_LLM_NETS", str(REPO_MODELS))
    head, tail = smollm2_split((at,))[at]
    task = LlmTask(head=head, tail=tail, n_ctx=512)
    proj, _ = task._shortcut_parts()
    assert proj.trained and proj.split_at == at
    dev = Device(head=head, full=src, n_ctx=512)
    client = LinkClient([task])
    for prompt in ("What is the capital of France?", "Name three primary colors."):
        ref = dev.generate(prompt, mode="device-only", max_tokens=8)
        sc = dev.generate(prompt, mode="shortcut", client=client, max_tokens=8)
        assert sc.tokens[0] == ref.tokens[0]


def test_shipped_nets_are_found_outside_the_source_tree(tmp_path, monkeypatch):
    """The wheel ships the committed models/llm nets (collab/llm/nets): an installed package
    finds them from any directory, without $COLLAB_LLM_NETS."""
    from collab.llm.fcnet import find_artifact

    committed = sorted(p.name for p in REPO_MODELS.glob("*.clfn"))
    if not committed:
        pytest.skip("no nets in models/llm")
    monkeypatch.delenv("COLLAB_LLM_NETS", raising=False)
    monkeypatch.chdir(tmp_path)
    found = find_artifact("shortcut", 15)
    assert found is not None and found.read_bytes() == (REPO_MODELS / found.name).read_bytes()
    assert find_artifact("codec", 15, 8) is not None
    assert find_artifact("shortcut", 999) is None
