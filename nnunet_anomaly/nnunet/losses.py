"""Losses on soft anomaly targets, and nnU-Net's deep-supervision weighting for them.

The network has one output channel. Its anomaly map is the sigmoid of that output (nnU-Net's region
machinery applies the sigmoid at inference), or, for a trainer whose ``output_activation`` is
``"identity"`` (the reference's MSE regression, :class:`IdentityMSELoss`), the output itself clipped
to [0, 1] (:func:`output_to_map`). Targets are the float soft labels in [0, 1] produced by the Gaussian
labelling function.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SoftBCEWithLogitsLoss", "SigmoidMSELoss", "IdentityMSELoss", "OUTPUT_ACTIVATIONS", "output_to_map",
           "deep_supervision_weights", "with_deep_supervision"]

#: how a network's output channel becomes an anomaly map: "sigmoid" (logits) or "identity" (clipped to [0, 1])
OUTPUT_ACTIVATIONS = ("sigmoid", "identity")


def output_to_map(output: torch.Tensor, activation: str = "sigmoid") -> torch.Tensor:
    """The anomaly map in [0, 1] of a network output, for the trainer's ``output_activation``.

    Examples
    --------
    >>> output = torch.tensor([-0.5, 0.0, 0.3, 1.7])
    >>> [round(v, 3) for v in output_to_map(output).tolist()]
    [0.378, 0.5, 0.574, 0.846]
    >>> [round(v, 3) for v in output_to_map(output, "identity").tolist()]
    [0.0, 0.0, 0.3, 1.0]
    """
    if activation == "sigmoid":
        return torch.sigmoid(output.float())
    if activation == "identity":
        return output.float().clamp(0.0, 1.0)
    raise ValueError(f"output activation must be one of {OUTPUT_ACTIVATIONS}; got {activation!r}")


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


class IdentityMSELoss(nn.Module):
    """Mean squared error between the raw network output and soft targets (the reference's loss).

    The reference's network ends in an identity and regresses the soft label with MSE, so the gradient
    does not vanish where a positive is missed (as it does through a saturated sigmoid). Use it with
    ``output_activation = "identity"`` so that validation and prediction clip the output to [0, 1]
    instead of applying a sigmoid.

    Examples
    --------
    >>> IdentityMSELoss()(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)).item()
    1.0
    """

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(output.device.type, enabled=False):
            return F.mse_loss(output.float(), target.float())


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
