"""Losses on soft anomaly targets, and nnU-Net's deep-supervision weighting for them.

The network has one output channel (nnU-Net's region machinery applies a sigmoid at inference).
Targets are the float soft labels in [0, 1] produced by the Gaussian labelling function.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SoftBCEWithLogitsLoss", "SigmoidMSELoss", "deep_supervision_weights", "with_deep_supervision"]


class SoftBCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy between logits and soft targets in [0, 1], averaged over all voxels.

    Examples
    --------
    >>> logits = torch.zeros(1, 1, 2, 2)
    >>> round(SoftBCEWithLogitsLoss()(logits, torch.full((1, 1, 2, 2), 0.5)).item(), 4)  # log(2)
    0.6931
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # in float32 even under a bfloat16/float16 autocast: soft targets need the precision
        with torch.autocast(logits.device.type, enabled=False):
            return F.binary_cross_entropy_with_logits(logits.float(), target.float())


class SigmoidMSELoss(nn.Module):
    """Mean squared error between sigmoid probabilities and soft targets.

    The reference regresses the soft label with MSE on an unbounded output; through nnU-Net's
    sigmoid head the closest equivalent is MSE on the probabilities.

    Examples
    --------
    >>> logits = torch.zeros(1, 1, 2, 2)  # probability 0.5 everywhere
    >>> SigmoidMSELoss()(logits, torch.ones(1, 1, 2, 2)).item()
    0.25
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(logits.device.type, enabled=False):
            return F.mse_loss(torch.sigmoid(logits.float()), target.float())


def deep_supervision_weights(num_outputs: int, *, ddp: bool = False) -> np.ndarray:
    """nnU-Net's deep-supervision weights: 1/2^i, lowest resolution off, normalised to sum 1.

    Under DDP (without torch.compile) nnU-Net keeps the last weight at 1e-6 instead of 0 so that DDP
    does not complain about unused parameters; ``ddp=True`` does the same.

    Examples
    --------
    >>> deep_supervision_weights(3).tolist()
    [0.6666666666666666, 0.3333333333333333, 0.0]
    >>> deep_supervision_weights(1).tolist()
    [1.0]
    """
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    weights = np.array([1 / (2 ** i) for i in range(num_outputs)])
    if num_outputs > 1:
        weights[-1] = 1e-6 if ddp else 0.0
    return weights / weights.sum()


def with_deep_supervision(loss: nn.Module, num_outputs: int, *, ddp: bool = False) -> nn.Module:
    """Wrap `loss` in nnU-Net's ``DeepSupervisionWrapper`` with :func:`deep_supervision_weights`."""
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    return DeepSupervisionWrapper(loss, deep_supervision_weights(num_outputs, ddp=ddp))
