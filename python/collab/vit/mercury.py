"""Mercury: prune tokens hard on the device after the first layer, rebuild their count on the server.

Mercury's pieces in one place, next to the equations of the paper (Sec. III):

  Eq. 11-18, Algorithm 1   kept_indices(), prune(): regionally decentralized token pruning on the
                           first layer's attention outputs O_f (the native kernel
                           collab.vit.regional_prune; pure-numpy reference collab.reference.mercury).
                           Eq. 11 cosine similarity of the o_i, Eq. 12 score s_i = sum_j Sim_ij,
                           Eq. 13-17 keep the best-scoring token of every l x l subregion,
                           Eq. 18 prune the K other tokens most similar to a kept one.
  Eq. 9-10                 the device sends X' = f_m(X - X_r) (N - K tokens); pad() appends the K
                           meta tokens M on the server: f_c(X' (+) M).
  Eq. 19                   train_step(): cross-entropy of the head on f_c(X' (+) M) with every
                           transformer layer frozen; only M and the head are trained. init_meta()
                           draws the randomly initialised M in R^{K x d}.
  apply()                  one call that patches a ViT the way ToMe patches timm models: pruning
                           inside layer 1, meta tokens entering the first server block.

This module does not import torch at import time (the split runtime uses prune() and pad() on
numpy arrays); the training helpers import it when called.
"""
from __future__ import annotations

import numpy as np

from .._tensors import is_torch_tensor
from ..errors import InvalidArgument
from . import prune_count, regional_prune
from .hooks import Attention, BlockHook


def kept_indices(attn_out, rate: float, region: int = 2):
    """Algorithm 1 (Eq. 11-18) on the first layer's attention outputs O_f (B, T, C), token 0 = CLS:
    the kept token indices (B, T - K), ascending, CLS first (numpy, or torch for torch input)."""
    if is_torch_tensor(attn_out):
        attn_out = attn_out.detach()
    else:
        attn_out = np.ascontiguousarray(attn_out)
    return regional_prune(attn_out, rate, region)


def gather(x, kept):
    """x[b, kept[b]] for tokens x (B, T, C) and indices kept (B, T'), numpy or torch."""
    if is_torch_tensor(x):
        import torch
        idx = torch.as_tensor(kept, device=x.device).long()[:, :, None].expand(-1, -1, x.shape[-1])
        return x.gather(1, idx)
    return np.take_along_axis(x, np.asarray(kept)[:, :, None], axis=1)


def prune(tokens, attn_out, rate: float, region: int = 2):
    """X - X_r: (the kept tokens (B, T - K, C), their indices (B, T - K)) of the first layer's
    output tokens, chosen on its attention outputs (same shape)."""
    if tuple(tokens.shape) != tuple(attn_out.shape):
        raise InvalidArgument(f"tokens {tuple(tokens.shape)} and attention outputs {tuple(attn_out.shape)} differ")
    kept = kept_indices(attn_out, rate, region)
    return gather(tokens, kept), kept


def pad(x, meta):
    """X' (+) M (Eq. 10): the K meta tokens meta (K, C) appended to every received sequence
    x (B, T', C), numpy or torch (gradients flow into a torch meta)."""
    if meta.ndim != 2 or meta.shape[-1] != x.shape[-1]:
        raise InvalidArgument(f"meta tokens must be (K, {x.shape[-1]}), got {tuple(meta.shape)}")
    if is_torch_tensor(x):
        import torch
        return torch.cat([x, meta.expand(x.shape[0], -1, -1)], 1)
    return np.concatenate([x, np.broadcast_to(meta, (x.shape[0],) + tuple(meta.shape))], 1)


# --- Eq. 19: training M and the head (torch) ---------------------------------------------------

def token_stats(tokens):
    """Per-channel mean and std of the grid tokens (CLS excluded) of tokens (B, T, C), torch."""
    flat = tokens[:, 1:].reshape(-1, tokens.shape[-1])
    return flat.mean(0), flat.std(0)


def init_meta(tokens, k: int):
    """M in R^{K x d}, randomly initialised (torch's global generator) around the statistics of the
    tokens the server receives: mean + 0.1 std noise per channel, which converges in few steps."""
    import torch
    mu, sd = token_stats(tokens)
    return torch.nn.Parameter(mu + 0.1 * sd * torch.randn(k, tokens.shape[-1]))


def cloud_logits(model, x, split: int, head, meta=None, fill=None):
    """f_c then the head Γ: the received tokens x (B, T', C), completed by the meta tokens (or by a
    reconstruction alternative fill(x) -> x, see collab.vit.baselines), through the blocks
    split.. of the torch ViT, final norm, CLS token, head."""
    if meta is not None:
        x = pad(x, meta)
    if fill is not None:
        x = fill(x)
    return head(model.features(model.run_blocks(x, split, model.depth)))


def train_step(model, x, y, split: int, head, optimizer, meta=None, fill=None) -> float:
    """One optimisation step of Eq. 19, L_CE = -1/N_s sum_i y_i log p_i, on a batch of received
    tokens x and labels y. The transformer stays frozen; the optimizer holds M and the head (or a
    generator's parameters for the alternatives). Returns the batch loss."""
    import torch.nn.functional as F
    loss = F.cross_entropy(cloud_logits(model, x, split, head, meta, fill), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.item())


# --- apply(): the ToMe-style patch -------------------------------------------------------------

class MercuryPatch:
    """What apply() installed: rate, region, split, meta, and the kept indices of the last batch."""

    def __init__(self, rate: float, region: int, split: int | None, meta, k: int):
        self.rate, self.region, self.split, self.meta, self.k = rate, region, split, meta, k
        self.kept = None


class _Layer1Prune(BlockHook):
    """Block 0: regional pruning on its attention outputs, between the attention and the MLP (the
    MLP acts per token, so this equals pruning the block's output and skips the pruned tokens' MLP)."""

    def __init__(self, patch: MercuryPatch):
        self.patch = patch

    def after_attention(self, x, att: Attention):
        p = self.patch
        x, p.kept = prune(x, att.out, p.rate, p.region)
        return x


class _MetaTokens(BlockHook):
    """The first server block: X' (+) M on entry."""

    def __init__(self, patch: MercuryPatch):
        self.patch = patch

    def enter(self, x):
        return pad(x, self.patch.meta)


def _model_kind(model) -> str:
    from .runtime_model import NumpyViT
    if isinstance(model, NumpyViT):
        return "numpy"
    try:
        from .torch_vit import TorchViT
    except ImportError:
        TorchViT = ()
    if TorchViT and isinstance(model, TorchViT):
        return "torch"
    raise InvalidArgument(f"apply() patches a collab.vit TorchViT or NumpyViT, got {type(model).__name__}")


def _as_meta(meta, kind: str, k: int, dim: int):
    if kind == "torch":
        import torch
        if not isinstance(meta, torch.Tensor):
            meta = torch.as_tensor(np.asarray(meta, np.float32))
        elif meta.dtype != torch.float32:
            meta = meta.float()
        ok = bool(torch.isfinite(meta.detach()).all())
    else:
        meta = np.asarray(meta.detach() if is_torch_tensor(meta) else meta, np.float32)
        ok = bool(np.isfinite(meta).all())
    if tuple(meta.shape) != (k, dim):
        raise InvalidArgument(f"meta tokens must be ({k}, {dim}) for this rate and region, got {tuple(meta.shape)}")
    if not ok:
        raise InvalidArgument("meta tokens contain NaN or Inf")
    return meta


def apply(model, rate: float, region: int = 2, split: int | None = None, meta=None):
    """Patch a collab.vit ViT (TorchViT or NumpyViT) with Mercury and return it.

    Layer 1 (block 0) prunes K = prune_count(grid^2, rate, region) tokens by Algorithm 1 on its own
    attention outputs; with meta tokens (K, C) (a trained models/mercury artifact's `meta`, or a
    torch Parameter being trained), they are appended as the tokens enter block `split`, the first
    block on the server. The patched model's forward / run_blocks then run Mercury end to end;
    a device runs run_blocks(embed(x), 0, split), a server run_blocks(x, split, depth).
    model.mercury holds the MercuryPatch (the last batch's kept indices in .kept). Applying again
    replaces the patch; remove() restores the plain model.
    """
    kind = _model_kind(model)
    if model.depth < 2:
        raise InvalidArgument("Mercury needs at least two blocks (prune after the first)")
    k = prune_count(model.grid * model.grid, rate, region)
    if model.grid % region:
        raise InvalidArgument(f"region {region} does not divide the {model.grid}x{model.grid} token grid")
    if meta is not None:
        if isinstance(split, bool) or not isinstance(split, (int, np.integer)) or not 1 <= split < model.depth:
            raise InvalidArgument(f"meta tokens need a split in [1, {model.depth - 1}], got {split!r}")
        split = int(split)
        meta = _as_meta(meta, kind, k, model.dim)
    elif split is not None and (isinstance(split, bool) or not isinstance(split, (int, np.integer))
                                or not 1 <= split <= model.depth):
        raise InvalidArgument(f"split must be in [1, {model.depth}], got {split!r}")
    remove(model)
    patch = MercuryPatch(float(rate), int(region), split, meta, k)
    model.set_hook(0, _Layer1Prune(patch))
    if meta is not None and k > 0:
        model.set_hook(split, _MetaTokens(patch))
    model.mercury = patch
    return model


def remove(model):
    """Undo apply(): plain blocks again."""
    model.clear_hooks()
    if getattr(model, "mercury", None) is not None:
        model.mercury = None
    return model


__all__ = ["kept_indices", "gather", "prune", "pad", "token_stats", "init_meta", "cloud_logits", "train_step",
           "MercuryPatch", "apply", "remove"]
