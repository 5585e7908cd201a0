"""The ONNX Runtime classifier against the numpy ViT reference; artifact quantisation."""
import numpy as np
import pytest

from collab.errors import InvalidArgument
from collab.expert.artifacts import load_params, quantize
from collab.expert.model import Classifier, numpy_logits, random_params
from collab.vit.data import preprocess


@pytest.mark.parametrize("heads,grid", [(1, 2), (2, 4), (3, 2)])
def test_onnx_equals_numpy_reference(rng, heads, grid):
    p = random_params(heads=heads, depth=2, grid=grid, seed=int(rng.integers(1 << 30)))
    c = Classifier(p, grid)
    x = rng.standard_normal((3, 3, 14 * grid, 14 * grid)).astype(np.float32)
    np.testing.assert_allclose(c.logits(x), numpy_logits(p, grid, x), rtol=1e-4, atol=1e-4)


def test_classify_preprocesses_uint8(rng):
    p = random_params(grid=2)
    c = Classifier(p, 2)
    img = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    np.testing.assert_allclose(c.classify(img), numpy_logits(p, 2, preprocess(img, 28)), rtol=1e-4, atol=1e-4)
    for bad in (img.astype(np.float32), img[:, :27], img[0], img[:0]):
        with pytest.raises(InvalidArgument):
            c.classify(bad)


@pytest.mark.parametrize("mode,tol", [("fp16", 2e-3), ("int8", 2e-2)])
def test_quantized_roundtrip(tmp_path, rng, mode, tol):
    p = random_params(heads=2, grid=2, seed=int(rng.integers(1 << 30)))
    q = quantize(p, mode)
    np.savez(tmp_path / "m.npz", **q)
    back = load_params(tmp_path / "m.npz")
    assert set(back) == set(p)
    for k, v in p.items():
        assert back[k].shape == np.shape(v)
        if np.ndim(v):
            assert back[k].dtype == np.float32
            np.testing.assert_allclose(back[k], v, atol=tol * max(1e-3, float(np.abs(v).max())))
    x = rng.standard_normal((2, 3, 28, 28)).astype(np.float32)
    a, b = numpy_logits(p, 2, x), Classifier(back, 2).logits(x)
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max() + 1e-3


def test_bad_model_file(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidArgument):
        load_params(tmp_path / "x.npz")
    with pytest.raises(InvalidArgument):
        quantize({}, "int4")
