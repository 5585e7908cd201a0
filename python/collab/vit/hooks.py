"""The one patch point of a ViT block, shared by the torch ViT and the numpy ViT (no torch here).

A token-reduction method (Mercury in collab.vit.mercury, ToMe in collab.vit.baselines) patches a
model by installing a BlockHook on some of its blocks, the way ToMe patches timm models. A block
with a hook runs:

    x = hook.enter(x)                                  tokens entering the block
    att = attention(LN(x), logits + hook.attn_bias(x))
    x = x + ls1 * att.out
    x = hook.after_attention(x, att)                   between the attention residual and the MLP
    x = x + ls2 * MLP(LN(x))

and a block without one is the plain block. Hooks work on whatever array type the model uses
(numpy for the runtime ViT, torch for the training ViT).
"""
from __future__ import annotations

from typing import Any, NamedTuple


class Attention(NamedTuple):
    """What a block's attention computed, handed to BlockHook.after_attention.
    out: (B, T, C) attention output after the projection, before the layer-scaled residual
         (Mercury's O_f of the first layer); key_mean: (B, T, C/heads) keys averaged over heads
         (ToMe's similarity metric); probs: (B, heads, T, T) attention probabilities."""
    out: Any
    key_mean: Any
    probs: Any


class BlockHook:
    """No-op hook; subclasses override what they need."""

    def enter(self, x):
        return x

    def attn_bias(self, x):
        """Added to the attention logits (broadcast to (B, heads, T, T)), or None."""
        return None

    def after_attention(self, x, att: Attention):
        return x


POOLS = ("cls", "cls+mean")


def pool_of(pool: str) -> str:
    """A checked feature pooling name: "cls" (the CLS token) or "cls+mean" (CLS beside the mean of
    the other tokens, twice as wide)."""
    if pool not in POOLS:
        from ..errors import InvalidArgument
        raise InvalidArgument(f"pool must be one of {POOLS}, got {pool!r}")
    return pool


def pool_for_head(in_features: int, dim: int) -> str:
    """The pooling a head of in_features inputs was trained on, for a ViT of width dim."""
    if in_features == dim:
        return "cls"
    if in_features == 2 * dim:
        return "cls+mean"
    from ..errors import InvalidArgument
    raise InvalidArgument(f"a head of {in_features} inputs fits neither CLS ({dim}) nor CLS+mean ({2 * dim})")
