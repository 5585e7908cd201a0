"""collab.vit.baselines: the ToMe patch gives what the per-block ToMe code path gave, top-k and the
reconstruction alternatives of Table II."""
import math

import numpy as np
import pytest

from collab.vit import prune_count
from collab.vit.runtime import tiny_params

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from collab.vit import baselines as bl  # noqa: E402
from collab.vit.torch_vit import TorchViT  # noqa: E402


def _old_tome_forward(tm, images, sched):
    """The block loop as it was before the patch point: proportional attention with log(size),
    ToMe merge between the attention residual and the MLP, sizes carried through the blocks."""
    x, size = tm.embed(images), None
    for blk, r in zip(tm.blocks, sched):
        bias = None if size is None else size.log().transpose(1, 2)[:, None]
        att = blk.attention(x, bias)
        x = x + blk.ls1 * att.out
        if r > 0:
            x, size = bl.tome_merge(x, att.key_mean, size, r)
        x = x + blk.ls2 * blk.fc2(F.gelu(blk.fc1(blk.ln2(x))))
    return tm.features(x), size


@pytest.mark.parametrize("kind,r", [("constant", 1), ("constant", 3), ("decay", 4), ("decay", 7)])
def test_tome_patch_matches_old_path(rng, kind, r):
    tm = TorchViT.from_numpy_params(tiny_params(grid=4, depth=4, seed=int(rng.integers(2**31))), grid=4).eval()
    images = torch.from_numpy(rng.standard_normal((3, 3, 8, 8)).astype(np.float32))
    sched = bl.tome_schedule(kind, r, 4, 17)
    with torch.no_grad():
        want, size = _old_tome_forward(tm, images, sched)
        got = bl.apply_tome(tm, r, kind)(images)
    assert tm.tome.schedule == sched
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    torch.testing.assert_close(tm.tome.size, size, atol=0, rtol=0)


def test_tome_schedules():
    assert bl.tome_schedule("constant", 2, 12, 65) == [2] * 12
    d = bl.tome_schedule("decay", 18, 12, 65)
    assert d[0] == 18 and all(a >= b for a, b in zip(d, d[1:]))
    big = bl.tome_schedule("constant", 40, 12, 65)
    assert 65 - sum(big) >= 2   # CLS and one patch token always remain
    with pytest.raises(ValueError):
        bl.tome_schedule("linear", 2)


def test_kept_topk_keeps_most_attended(rng):
    a = rng.random((3, 16))
    for rate in (0.0, 0.25, 0.5, 0.75):
        kept = bl.kept_topk(a, rate)
        k = prune_count(16, rate)
        assert kept.shape == (3, 17 - k) and np.all(kept[:, 0] == 0) and np.all(np.diff(kept, axis=1) > 0)
        for b in range(3):
            dropped = sorted(set(range(1, 17)) - set(kept[b].tolist()))
            if dropped:
                assert a[b, np.array(dropped) - 1].max() <= a[b, kept[b, 1:] - 1].min()


def test_duplicate_fill_copies_the_regions_kept_token(rng):
    grid = 4
    x = torch.from_numpy(rng.standard_normal((2, 17, 5)).astype(np.float32))
    ao = rng.standard_normal((2, 17, 5)).astype(np.float32)
    from collab.vit import mercury
    xs, kept = mercury.prune(x, ao, 0.75)   # one kept token per 2x2 region
    out = bl.duplicate_fill(xs, kept, grid)
    assert out.shape == (2, 17, 5)
    for b in range(2):
        region_token = {}
        for j, t in enumerate(kept[b, 1:].tolist(), 1):
            r, c = divmod(t - 1, grid)
            region_token[(r // 2, c // 2)] = xs[b, j]
        pruned = [t for t in range(1, 17) if t not in set(kept[b].tolist())]
        for j, t in enumerate(pruned):
            r, c = divmod(t - 1, grid)
            torch.testing.assert_close(out[b, 5 + j], region_token[(r // 2, c // 2)])


def test_zero_fill_and_deconv_shapes():
    x = torch.randn(2, 5, 8)
    z = bl.zero_fill(x, 12)
    assert z.shape == (2, 17, 8) and float(z[:, 5:].abs().sum()) == 0
    kept = np.array([[0, 1, 4, 9, 16]] * 2)
    gen = bl.DeconvGenerator(8, hidden=6)
    y = gen(x, kept, 4)
    assert y.shape == (2, 17, 8)
    torch.testing.assert_close(y[:, :5], x)
    assert bl.n_params(gen) == 8 * 6 * 4 + 6 + 6 * 8 * 4 + 8
    assert bl.deconv_flops(4, 8, 6) == 2.0 * 4 * (8 * 6 * 4) * 2
    assert math.isfinite(float(y.detach().sum()))
