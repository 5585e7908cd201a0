"""torch tensors in, same frames as numpy; CUDA tensors stay on the GPU."""
import ml_dtypes
import numpy as np
import pytest

import collab
import collab.codec as codec

torch = pytest.importorskip("torch", reason="torch is optional; these tests need it installed")

DT = [(torch.float32, np.float32), (torch.float16, np.float16), (torch.bfloat16, ml_dtypes.bfloat16)]


@pytest.mark.parametrize("tdt,ndt", DT, ids=["f32", "f16", "bf16"])
def test_torch_cpu_matches_numpy(rng, tdt, ndt):
    t = torch.from_numpy(rng.standard_normal((33, 20)).astype(np.float32)).to(tdt)
    a = t.view(torch.int16).numpy().view(ndt) if tdt == torch.bfloat16 else t.numpy()
    for s in (0.0, 0.5, 0.9):
        assert codec.encode(t, s, blocks=(2, 2)) == codec.encode(a, s, blocks=(2, 2))


def test_torch_non_contiguous_and_grad(rng):
    t = torch.randn(16, 32, requires_grad=True)
    assert codec.encode(t.t(), 0.5) == codec.encode(t.detach().t().contiguous().numpy(), 0.5)


def test_decode_into_torch_tensor(rng):
    x = rng.standard_normal((8, 9)).astype(np.float32)
    f = codec.encode(x, 0.5)
    out = torch.empty(8, 9)
    assert codec.decode(f, out=out) is out
    assert np.array_equal(out.numpy(), codec.decode(f))


def test_torch_wrong_dtype():
    with pytest.raises(ValueError, match="dtype"):
        codec.encode(torch.ones(3, dtype=torch.float64), 0.5)


@pytest.mark.skipif(not collab.cuda_available(), reason="no CUDA device (or this build has no CUDA kernels)")
@pytest.mark.parametrize("tdt,ndt", DT, ids=["f32", "f16", "bf16"])
def test_cuda_encode_decode_match_cpu(rng, tdt, ndt):
    for shape in [(197, 384), (1, 4096), (3,), (), (0, 4)]:
        x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).to(tdt)
        for kw in (dict(sparsity=0.5), dict(sparsity=0.9, blocks=(3, 2), qbits=(8, 4, 2), delta=0.1, lam=0.2)):
            cpu = codec.encode(x, **kw)
            gpu = codec.encode(x.cuda(), **kw)
            assert gpu == cpu, (shape, kw)
            y = codec.decode(gpu, device="cuda")
            assert y.is_cuda and y.dtype == tdt and tuple(y.shape) == tuple(shape)
            assert torch.equal(y.cpu().view(torch.int16 if tdt != torch.float32 else torch.int32),
                               torch.from_numpy(np.asarray(codec.decode(cpu)).view(
                                   np.int16 if tdt != torch.float32 else np.int32)))


def test_cuda_decode_request_without_gpu_is_clear():
    if collab.cuda_available():
        pytest.skip("a CUDA device is present; this checks the error path without one")
    with pytest.raises(Exception, match="CUDA|cuda"):
        codec.decode(codec.encode(np.ones(4, np.float32), 0.5), device="cuda")


def test_cuda_tensor_without_gpu_is_a_clear_error():
    """A CUDA device pointer with no usable GPU must give DeviceError, not a crash."""
    if collab.cuda_available():
        pytest.skip("a CUDA device is present")
    from collab import _native
    from collab.errors import DeviceError
    with pytest.raises(DeviceError, match="CUDA"):
        _native.encode(None, 0xdead0000, 0, [4], 1, 0, 0.5, 0.0, [1, 1], [8], 0.0, 0, -1, 0)
    frame = codec.encode(np.ones(4, np.float32), 0.5)
    with pytest.raises(DeviceError, match="CUDA"):
        _native.decode_into(None, frame, 0xdead0000, 0, [4], 1, 0)
