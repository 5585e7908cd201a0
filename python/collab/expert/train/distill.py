"""Progressive weighted distillation (paper Eq. 1-3).

  omega(t) = 1 + t / T * (W - 1)                               (Eq. 1)
  w_i(t)   = omega(t) if x_i is in the expert's target domain D_I else 1      (Eq. 2)
  L(t)     = sum_i w_i(t) * [ CE(m(x_i), y_i) / 2 + CE(m(x_i), argmax M(x_i)) / 2 ]   (Eq. 3)

t is the fractional epoch (epoch + step / steps_per_epoch), so omega ramps smoothly from 1 at
the start toward W at the end. The sum is divided by the batch size (a constant factor).
The static baseline uses omega = W throughout; a generalist uses w = 1 for every sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def omega(t: float, total: float, w_max: float) -> float:
    return 1.0 + (t / total) * (w_max - 1.0)


def sample_weights(in_target: torch.Tensor, t: float, total: float, w_max: float, schedule: str):
    """in_target (B,) bool. schedule: 'progressive' (Eq. 1-2), 'static' (omega = W), 'none'."""
    if schedule == "none":
        return torch.ones(in_target.shape[0])
    om = w_max if schedule == "static" else omega(t, total, w_max)
    return torch.where(in_target, torch.tensor(float(om)), torch.tensor(1.0))


def weighted_hard_distill_loss(logits, labels, teacher_labels, weights):
    """Eq. 3 on a batch (teacher_labels None: plain weighted CE, as for teachers)."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    if teacher_labels is not None:
        ce = 0.5 * ce + 0.5 * F.cross_entropy(logits, teacher_labels, reduction="none")
    return (weights * ce).sum() / logits.shape[0]
