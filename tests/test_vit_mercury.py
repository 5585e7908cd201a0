"""collab.vit.mercury: apply() on both ViTs gives what the step-by-step code path gave (with the
pure-numpy reference of the pruning), split runs, the Eq. 19 training step, bad arguments."""
import numpy as np
import pytest

from collab.errors import InvalidArgument
from collab.reference import mercury as ref
from collab.vit import mercury, prune_count
from collab.vit.runtime import tiny_params
from collab.vit.runtime_model import NumpyViT

torch = pytest.importorskip("torch")
from collab.vit.torch_vit import TorchViT  # noqa: E402

GRID, DIM = 4, 32
CASES = [(0.5, 1, True), (0.75, 2, True), (0.25, 1, False), (0.0, 2, True), (0.6, 3, False)]


def _inputs(rng, depth=4):
    p = tiny_params(grid=GRID, dim=DIM, depth=depth, seed=int(rng.integers(2**31)))
    images = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    return p, images


def _old_path(block, run_blocks, features, cat, x, rate, split, meta):
    """What the code did before apply(): layer 1 whole, kept indices from the numpy reference of
    Algorithm 1 on its attention outputs, gather, device blocks, meta tokens appended, server blocks."""
    x, ao = block(x)
    kept = ref.regional_prune(np.asarray(ao, np.float32), rate)
    x = mercury.gather(x, kept)
    x = run_blocks(x, 1, split)
    if meta is not None and len(meta):
        x = cat(x, meta)
    return features(run_blocks(x, split, None)), kept


@pytest.mark.parametrize("rate,split,with_meta", CASES)
def test_apply_numpy_matches_old_path(rng, rate, split, with_meta):
    p, images = _inputs(rng)
    vit = NumpyViT(p, GRID)
    k = prune_count(GRID * GRID, rate)
    meta = rng.standard_normal((k, DIM)).astype(np.float32) if with_meta else None
    want, kept = _old_path(lambda x: vit.block(x, 0, need_attn=True), lambda x, a, b: vit.run_blocks(x, a, b or vit.depth),
                           vit.features, lambda x, m: np.concatenate([x, np.broadcast_to(m, (len(x),) + m.shape)], 1),
                           vit.embed(images), rate, split, meta)
    got = mercury.apply(vit, rate, split=split, meta=meta).forward(images)
    np.testing.assert_array_equal(vit.mercury.kept, kept)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    mercury.remove(vit)
    assert not vit.hooks and vit.mercury is None


@pytest.mark.parametrize("rate,split,with_meta", CASES)
def test_apply_torch_matches_old_path(rng, rate, split, with_meta):
    p, images = _inputs(rng)
    tm = TorchViT.from_numpy_params(p, grid=GRID).eval()
    k = prune_count(GRID * GRID, rate)
    meta = torch.from_numpy(rng.standard_normal((k, DIM)).astype(np.float32)) if with_meta else None
    x = torch.from_numpy(images)
    with torch.no_grad():
        want, kept = _old_path(lambda x: (lambda y, a: (y, a.out))(*tm.blocks[0].run(x)),
                               lambda x, a, b: tm.run_blocks(x, a, b or tm.depth), tm.features,
                               lambda x, m: torch.cat([x, m.expand(len(x), -1, -1)], 1), tm.embed(x), rate, split, meta)
        got = mercury.apply(tm, rate, split=split, meta=meta)(x)
    np.testing.assert_array_equal(tm.mercury.kept.numpy(), kept)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # torch and numpy patched models agree
    np.testing.assert_allclose(got.numpy(), mercury.apply(NumpyViT(p, GRID), rate, split=split, meta=meta).forward(images),
                               atol=1e-3, rtol=1e-3)
    mercury.remove(tm)
    with torch.no_grad():
        plain = tm(x)
        assert all(b.hook is None for b in tm.blocks)
        torch.testing.assert_close(plain, tm.features(tm.run_blocks(tm.embed(x), 0, tm.depth)))


def test_patched_model_split_into_device_and_server(rng):
    p, images = _inputs(rng)
    vit = NumpyViT(p, GRID)
    rate, split = 0.75, 2
    meta = rng.standard_normal((prune_count(16, rate), DIM)).astype(np.float32)
    mercury.apply(vit, rate, split=split, meta=meta)
    sent = vit.run_blocks(vit.embed(images), 0, split)          # device part
    assert sent.shape == (3, 1 + 16 - 12, DIM)
    got = vit.features(vit.run_blocks(sent, split, vit.depth))  # server part
    np.testing.assert_allclose(got, vit.forward(images), atol=1e-6)


def test_prune_and_pad_shapes(rng):
    x = rng.standard_normal((2, 17, DIM)).astype(np.float32)
    ao = rng.standard_normal((2, 17, DIM)).astype(np.float32)
    kept_x, kept = mercury.prune(x, ao, 0.5)
    np.testing.assert_array_equal(kept, ref.regional_prune(ao, 0.5))
    np.testing.assert_array_equal(kept_x, x[np.arange(2)[:, None], kept])
    m = rng.standard_normal((8, DIM)).astype(np.float32)
    padded = mercury.pad(kept_x, m)
    assert padded.shape == (2, 17, DIM)
    np.testing.assert_array_equal(padded[1, 9:], m)
    tx, tkept = mercury.prune(torch.from_numpy(x), torch.from_numpy(ao), 0.5)
    np.testing.assert_array_equal(tx.numpy(), kept_x)
    with pytest.raises(InvalidArgument):
        mercury.prune(x, ao[:, :9], 0.5)
    with pytest.raises(InvalidArgument):
        mercury.pad(kept_x, m[:, :5])


def test_train_step_moves_only_meta_and_head():
    """Eq. 19: the transformer stays frozen; M and the head learn (the loss on the batch falls)."""
    torch.manual_seed(0)
    tm = TorchViT.from_numpy_params(tiny_params(grid=GRID, dim=DIM, depth=3, seed=1), grid=GRID).eval()
    frozen = {n: v.clone() for n, v in tm.state_dict().items()}
    images = torch.randn(8, 3, 8, 8)
    y = torch.arange(8) % 4
    with torch.no_grad():
        h, att = tm.layer1(images)
        x, _ = mercury.prune(h, att.out, 0.5)
        x = tm.run_blocks(x, 1, 2)
    meta = mercury.init_meta(x, prune_count(16, 0.5))
    assert meta.shape == (8, DIM) and meta.requires_grad
    head = torch.nn.Linear(DIM, 4)
    m0 = meta.detach().clone()
    opt = torch.optim.Adam([{"params": head.parameters(), "lr": 1e-2}, {"params": [meta], "lr": 1e-2}])
    losses = [mercury.train_step(tm, x, y, 2, head, opt, meta) for _ in range(30)]
    assert losses[-1] < 0.7 * losses[0]
    assert not torch.equal(meta.detach(), m0)
    for n, v in tm.state_dict().items():
        torch.testing.assert_close(v, frozen[n], atol=0, rtol=0)
    # the patched model with the trained M gives the logits the training step saw
    with torch.no_grad():
        want = mercury.cloud_logits(tm, x, 2, head, meta)
        got = head(mercury.apply(tm, 0.5, split=2, meta=meta)(images))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(rate=0.8), dict(rate=float("nan")), dict(rate=0.5, region=3),
                                    dict(rate=0.5, split=1, meta=np.zeros((7, DIM), np.float32)),
                                    dict(rate=0.5, split=1, meta=np.zeros((8, DIM + 1), np.float32)),
                                    dict(rate=0.5, split=1, meta=np.full((8, DIM), np.nan, np.float32)),
                                    dict(rate=0.5, split=0, meta=np.zeros((8, DIM), np.float32)),
                                    dict(rate=0.5, split=4, meta=np.zeros((8, DIM), np.float32)),
                                    dict(rate=0.5, split=None, meta=np.zeros((8, DIM), np.float32)),
                                    dict(rate=0.5, split=True), dict(rate=0.5, split=5)])
def test_apply_rejects_bad_arguments(kwargs):
    vit = NumpyViT(tiny_params(grid=GRID, dim=DIM, depth=4), GRID)
    with pytest.raises(InvalidArgument):
        mercury.apply(vit, **kwargs)
    assert not vit.hooks


def test_apply_rejects_other_models():
    with pytest.raises(InvalidArgument):
        mercury.apply(torch.nn.Linear(3, 3), 0.5)
    with pytest.raises(InvalidArgument):
        mercury.apply(NumpyViT(tiny_params(grid=GRID, dim=DIM, depth=1), GRID), 0.5)
