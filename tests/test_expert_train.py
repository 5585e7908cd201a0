"""Training pieces (torch): masked forward, loss-based importance, structured pruning, Eq. 1-3."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from collab.expert.model import Classifier, random_params  # noqa: E402
from collab.expert.train.distill import omega, sample_weights, weighted_hard_distill_loss  # noqa: E402
from collab.expert.train.masked import VitClassifier, ones_masks  # noqa: E402
from collab.expert.train.prune import importance, keep_indices, prune  # noqa: E402
from collab.expert.partitions import expert_sets  # noqa: E402
from collab.expert.train.recipe import CFG, from_flat, stage_plan, to_flat  # noqa: E402


def tiny(heads=3, seed=0):
    return from_flat(random_params(heads=heads, depth=2, grid=2, seed=seed), 2)


def test_masked_forward_with_ones_equals_plain(rng):
    m = tiny()
    x = torch.from_numpy(rng.standard_normal((3, 3, 28, 28)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(m(x, masks=ones_masks(m)), m(x))


def test_flat_round_trip_and_onnx_agree(rng):
    p = random_params(heads=2, depth=2, grid=2, seed=3)
    m = from_flat(p, 2)
    q = to_flat(m)
    for k in p:
        np.testing.assert_array_equal(np.asarray(q[k]), np.asarray(p[k]))
    x = rng.standard_normal((2, 3, 28, 28)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(m(torch.from_numpy(x)).numpy(), Classifier(p, 2).logits(x), rtol=1e-4, atol=1e-4)


def test_prune_keeping_everything_is_identity(rng):
    m = tiny()
    imp = {"head": rng.random((2, 3)), "neuron": rng.random((2, 768)), "channel": rng.random(192)}
    x = torch.from_numpy(rng.standard_normal((2, 3, 28, 28)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(prune(m, imp, 3)(x), m(x))


def test_prune_keeps_the_most_important_units(rng):
    m = tiny()
    imp = {"head": rng.random((2, 3)), "neuron": rng.random((2, 768)), "channel": rng.random(192)}
    heads, neurons, chans = keep_indices(imp, 1)
    for i in range(2):
        assert list(heads[i]) == [int(np.argmax(imp["head"][i]))]
        assert set(neurons[i]) == set(np.argsort(-imp["neuron"][i])[:256])
    assert set(chans) == set(np.argsort(-imp["channel"])[:64])
    s = prune(m, imp, 1)
    assert s.body.dim == 64 and s.heads == 1 and s.body.blocks[0].fc1.out_features == 256
    # the kept head's query weights are the teacher's rows for that head and kept channels
    h = heads[0][0]
    torch.testing.assert_close(s.body.blocks[0].q.weight,
                               m.body.blocks[0].q.weight[h * 64:(h + 1) * 64][:, torch.as_tensor(chans)])


def test_importance_is_abs_grad_of_masks(rng):
    m = tiny(heads=2)
    x = torch.from_numpy(rng.standard_normal((4, 3, 28, 28)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, 4))
    w = torch.ones(4)
    imp = importance(m, [(x, y, w)], lambda lg, yy, ww: weighted_hard_distill_loss(lg, yy, None, ww))
    masks = ones_masks(m)
    weighted_hard_distill_loss(m(x, masks=masks), y, None, w).backward()
    for k in imp:
        np.testing.assert_allclose(imp[k], masks[k].grad.abs().numpy(), rtol=1e-5, atol=1e-8)
    assert imp["head"].shape == (2, 2) and imp["channel"].shape == (128,)


def test_progressive_weights_eq_1_2():
    assert omega(0, 10, 14.0) == 1.0 and omega(10, 10, 14.0) == 14.0 and omega(5, 10, 14.0) == 7.5
    tgt = torch.tensor([True, False, True])
    assert sample_weights(tgt, 5, 10, 14.0, "progressive").tolist() == [7.5, 1.0, 7.5]
    assert sample_weights(tgt, 0, 10, 14.0, "static").tolist() == [14.0, 1.0, 14.0]
    assert sample_weights(tgt, 5, 10, 14.0, "none").tolist() == [1.0, 1.0, 1.0]


def test_loss_eq_3_half_label_half_teacher():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    y, yt, w = torch.tensor([0, 2]), torch.tensor([1, 1]), torch.tensor([3.0, 1.0])
    logp = torch.log_softmax(logits, 1)
    want = sum(float(w[i]) * (-0.5 * float(logp[i, y[i]]) - 0.5 * float(logp[i, yt[i]])) for i in range(2)) / 2
    assert float(weighted_hard_distill_loss(logits, y, yt, w)) == pytest.approx(want, rel=1e-6)


def test_stage_plan_covers_the_s_sweep_and_the_second_expert_size():
    plan = stage_plan(CFG)
    names = [st["name"] for st in plan]
    assert len(names) == len(set(names))
    order = {n: i for i, n in enumerate(names)}
    for s in (2, 3, 4):  # Table 3: both schedules for every set of every S at the main size
        for key in expert_sets(s, 2):
            for sch in ("progressive", "static"):
                assert any(st.get("S") == s and st.get("set") == key and st["heads"] == 3 and st["schedule"] == sch
                           for st in plan if st["kind"] == "exp")
    four = [st for st in plan if st["kind"] == "exp" and st["heads"] == 4]
    assert {(st["set"], st["schedule"]) for st in four} == {(k, sch) for k in expert_sets(3, 2)
                                                            for sch in ("progressive", "static")}
    for st in plan:  # every start is trained before the stages that continue from it
        if st.get("init"):
            assert order[st["init"]] < order[st["name"]]
    by = {st["name"]: st for st in plan}
    assert by["gen-4H"]["init"] == "base-4H" and by["gen-3H"]["init"] == "base-3H" and by["gen-2H"]["init"] is None
    # the served S=3 library comes before the sweep
    assert max(order[f"exp-S3-p{k}-3H-progressive"] for k in ("0", "1", "2")) < order["exp-S2-p0-3H-progressive"]
    assert stage_plan({**CFG, "more_expert_heads": ()})[-1]["name"] == "gen-4H"  # then pruned from M_D
    # a class set that recurs under another S is trained once and linked
    for st in plan:
        if st["kind"] == "exp" and st["same_as"]:
            src = by[st["same_as"]]
            assert order[src["name"]] < order[st["name"]] and src["same_as"] is None
            assert (src["classes"], src["heads"], src["schedule"]) == (st["classes"], st["heads"], st["schedule"])
    trained = [st for st in plan if st["kind"] == "exp" and not st["same_as"]]
    assert len({(st["classes"], st["heads"], st["schedule"]) for st in trained}) == len(trained)
    assert by["exp-S4-p0-3H-progressive"]["same_as"] == "exp-S3-p0-3H-progressive"  # tops at S = 3 and 4
    assert by["exp-S2-p1-3H-static"]["same_as"] == "exp-S3-p1-2-3H-static"          # everything but tops
