"""Losses on soft targets and deep-supervision weighting."""
import math

import numpy as np
import pytest
import torch

from nnunet_anomaly.nnunet.losses import (SigmoidMSELoss, SoftBCEWithLogitsLoss, deep_supervision_weights,
                                          with_deep_supervision)


def test_soft_bce_matches_the_formula():
    logits = torch.tensor([[[[-2.0, 0.0], [1.0, 3.0]]]])
    target = torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]])
    p = torch.sigmoid(logits)
    expected = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    assert SoftBCEWithLogitsLoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_soft_bce_is_minimal_at_the_soft_target():
    target = torch.full((1, 1, 2, 2), 0.3)
    best = torch.full_like(target, math.log(0.3 / 0.7))
    loss = SoftBCEWithLogitsLoss()
    assert loss(best, target) < loss(best + 0.1, target) and loss(best, target) < loss(best - 0.1, target)


def test_mse_on_probabilities():
    logits = torch.tensor([[[[0.0, 100.0]]]])
    target = torch.tensor([[[[1.0, 1.0]]]])
    assert SigmoidMSELoss()(logits, target).item() == pytest.approx(0.125)


def test_deep_supervision_weights_follow_nnunet():
    w = deep_supervision_weights(4)
    assert w.sum() == pytest.approx(1.0)
    assert w[-1] == 0.0
    np.testing.assert_allclose(w[:3], np.array([1, 0.5, 0.25]) / 1.75)
    assert deep_supervision_weights(4, ddp=True)[-1] > 0
    with pytest.raises(ValueError):
        deep_supervision_weights(0)


def test_wrapped_loss_combines_scales():
    loss = with_deep_supervision(SoftBCEWithLogitsLoss(), 2)
    out = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    target = [torch.full((1, 1, 4, 4), 0.5), torch.ones(1, 1, 2, 2)]
    # weights (1, 0): only the full-resolution output counts
    assert loss(out, target).item() == pytest.approx(math.log(2), rel=1e-6)
