"""Eq. 3 with the prompt's tail K/V cached (no gradient) equals Eq. 3 over the whole sequence:
same loss, same gradient of the shortcut, same logits from the mirror."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gguf")

from _llm_common import tiny_model  # noqa: E402

from collab.llm.train.mirror import LlamaMirror  # noqa: E402
from collab.llm.train.nets import Shortcut  # noqa: E402
from collab.llm.train.shortcut import (PromptCache, eq3_loss, eq3_loss_whole_sequence,  # noqa: E402
                                       keep_fit_if_better, tf_eval)


@pytest.fixture(scope="module")
def mirror():
    return LlamaMirror.from_gguf(tiny_model(n_layer=4))


def _net(d, seed=0):
    torch.manual_seed(seed)
    net = Shortcut(d, (torch.zeros(d), torch.ones(d)), (torch.zeros(d), torch.ones(d)))
    for p in net.parameters():  # the last layer starts at zero: make the net do something
        torch.nn.init.normal_(p, std=0.05)
    return net


def _grad(net):
    return torch.cat([p.grad.flatten() for p in net.parameters()])


@pytest.mark.parametrize("at", [1, 2, 3])
def test_cached_prompt_loss_and_gradient_equal_the_full_sequence(mirror, at):
    g = torch.Generator().manual_seed(at)
    V = mirror.w("token_embd.weight").shape[0]
    rec = {"tokens": torch.randint(0, V, (23,), generator=g).tolist(),
           "answer": torch.randint(0, V, (9,), generator=g).tolist()}
    net = _net(mirror.n_embd)
    ref, ref0 = eq3_loss_whole_sequence(mirror, net, rec, at)
    ref.backward()
    g_ref = _grad(net).clone()
    cache = PromptCache()
    for _ in range(2):  # first call fills the cache, the second reads it
        net.zero_grad()
        got, got0 = eq3_loss(mirror, net, rec, at, cache)
        got.backward()
        assert float(got) == pytest.approx(float(ref), rel=1e-5, abs=1e-6)
        assert got0 == pytest.approx(ref0, rel=1e-5, abs=1e-6)
        assert torch.allclose(_grad(net), g_ref, rtol=1e-4, atol=1e-6)
    assert len(cache.kv) == 1 and cache.used > 0


def test_prompt_cache_budget_keeps_nothing_past_it(mirror):
    cache = PromptCache(budget=0)
    kv, first = cache.get(mirror, {"tokens": [1, 2, 3, 4]}, 2)
    assert not cache.kv and cache.used == 0 and first.shape[0] == 1 and len(kv) == mirror.n_layer - 2


def test_given_prompt_rows_stand_for_the_tokens(mirror):
    """A sample carrying its prompt rows (a VLM prompt: image rows that no token makes) gives the
    loss of the sample whose rows the mirror computes from the tokens."""
    at, toks, ans = 2, list(range(7, 30)), [5, 9, 11, 2]
    net = _net(mirror.n_embd)
    ref, ref0 = eq3_loss(mirror, net, {"tokens": toks, "answer": ans}, at)
    rows = mirror.rows(toks, upto=at).numpy()
    got, got0 = eq3_loss(mirror, net, {"key": "q0", "head_rows": rows, "answer": ans}, at, PromptCache())
    whole, whole0 = eq3_loss_whole_sequence(mirror, net, {"head_rows": rows, "answer": ans}, at)
    assert float(got) == pytest.approx(float(ref), rel=1e-5) and got0 == pytest.approx(ref0, rel=1e-5)
    assert float(whole) == pytest.approx(float(ref), rel=1e-5)
    other, _ = eq3_loss(mirror, net, {"key": "q1", "head_rows": rows[::-1].copy(), "answer": ans}, at)
    assert abs(float(other) - float(ref)) > 1e-4  # the rows given are the ones used


def test_tail_extend_matches_tail(mirror):
    x = mirror.rows(list(range(5, 30)), upto=2)
    full = mirror.tail(x, 2)
    kv, last = mirror.tail_prefill(x[:11], 2)
    assert torch.allclose(last[0], full[10], atol=1e-4)
    assert torch.allclose(mirror.tail_extend(x[11:], 2, kv), full[11:], atol=1e-4)


def _recs(mirror, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    V = mirror.w("token_embd.weight").shape[0]
    return [{"tokens": torch.randint(0, V, (11,), generator=g).tolist(),
             "answer": torch.randint(0, V, (6,), generator=g).tolist()} for _ in range(n)]


def test_fit_net_validated_on_other_prompts_is_validated_again(mirror):
    """A run continued on another data set has its fit-stage NLL from other validation prompts:
    it must not decide the export against the Eq. 3 net's NLL on these prompts."""
    at, recs = 2, _recs(mirror)
    eq3_net, fit_net = _net(mirror.n_embd, 0), _net(mirror.n_embd, 1)
    fit_state = {k: v.clone() for k, v in fit_net.state_dict().items()}
    on_these = tf_eval(mirror, fit_net, recs, at)
    ev3 = tf_eval(mirror, eq3_net, recs, at)
    # stale: measured on 7 other tokens, far better than anything here
    evals = {"fit": {"nll": 0.0, "tf_top1": 1.0, "tokens": 7}, "fit_net": fit_state, "eq3": ev3}
    swapped = keep_fit_if_better(mirror, eq3_net, evals, recs, at)
    assert evals["fit"]["tokens"] == ev3["tokens"]
    assert evals["fit"]["nll"] == pytest.approx(on_these["nll"], rel=1e-6)
    assert swapped == (on_these["nll"] < ev3["nll"])
    want = fit_state if swapped else _net(mirror.n_embd, 0).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in eq3_net.state_dict().items())


def test_fit_net_kept_only_when_better_on_the_same_prompts(mirror):
    at, recs = 2, _recs(mirror, seed=1)
    net = _net(mirror.n_embd, 0)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    ev = tf_eval(mirror, net, recs, at)
    worse = dict(ev, nll=ev["nll"] + 1.0)
    assert not keep_fit_if_better(mirror, net, {"fit": worse, "fit_net": state, "eq3": ev}, recs, at)
    assert keep_fit_if_better(mirror, net, {"fit": ev, "fit_net": state, "eq3": worse}, recs, at)
    assert not keep_fit_if_better(mirror, net, {"eq3": ev}, recs, at)  # no fit stage in this run
