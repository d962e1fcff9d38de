"""The reference's learning-rate schedule (warm-up, exponential decay, floor), stepped per iteration."""
import pytest
import torch

from nnunet_anomaly.nnunet.lr_schedule import WarmupExponentialFloorLR, paper_learning_rate, steps_to_epochs


@pytest.mark.parametrize("step, expected", [(0, 1e-5), (100, 1e-3), (8100, 1e-4), (10508, 5e-5), (10_000_000, 5e-5)])
def test_reference_values_for_peak_1e3(step, expected):
    assert paper_learning_rate(step, 1e-3) == pytest.approx(expected, rel=1e-6)


def test_cxr_floor_and_continuity():
    assert paper_learning_rate(20000, 5e-3) == pytest.approx(2.5e-4)
    # the decay meets the floor almost continuously at step 10508 (the reference's milestone)
    assert paper_learning_rate(10507, 1e-3) == pytest.approx(5e-5, rel=2e-3)
    # warm-up is linear
    assert paper_learning_rate(50, 1e-3) == pytest.approx((1e-5 + 1e-3) / 2)


def test_reference_gamma_agrees_with_the_rounded_constant():
    # the reference uses ExponentialLR(gamma=0.9997122)
    assert paper_learning_rate(100 + 5000, 1.0) == pytest.approx(0.9997122 ** 5000, rel=1e-3)


def test_scheduler_sets_the_optimizer_rate():
    opt = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=1e-3, weight_decay=0)
    sched = WarmupExponentialFloorLR(opt, peak_lr=1e-3)
    for step, expected in [(0, 1e-5), (8100, 1e-4), (20000, 5e-5)]:
        sched.step(step)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-6)
        assert sched.get_last_lr()[0] == pytest.approx(expected, rel=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError):
        paper_learning_rate(-1, 1e-3)
    with pytest.raises(ValueError):
        paper_learning_rate(0, 0.0)
    assert steps_to_epochs(5000, 250) == 20
