"""The reference's learning-rate schedule: linear warm-up, exponential decay, constant floor.

Baugh et al. step the schedule once per *iteration* (``SequentialLR`` of ``LinearLR``, ``ExponentialLR``
and ``ConstantLR`` with milestones ``[100, 10508]``). nnU-Net steps its scheduler once per *epoch*, so
:class:`WarmupExponentialFloorLR` takes the global step explicitly and the paper trainers call it
before every optimiser step.
"""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import _LRScheduler

__all__ = ["paper_learning_rate", "WarmupExponentialFloorLR"]

#: decay factor per step such that the learning rate falls tenfold every 8000 steps
#: (the reference rounds it to 0.9997122).
DECAY_PER_STEP = 0.1 ** (1.0 / 8000)


def paper_learning_rate(step: int, peak_lr: float, *, warmup_steps: int = 100,
                        warmup_start_factor: float = 0.01, decay_per_step: float = DECAY_PER_STEP,
                        floor_step: int = 10508, floor_factor: float = 1 / 20) -> float:
    """Learning rate at global optimiser `step` of the reference schedule.

    Parameters
    ----------
    step : int
        Global optimiser step, counted from 0.
    peak_lr : float
        Learning rate reached at the end of the warm-up (1e-3 brain, 5e-3 CXR in the paper).
    warmup_steps : int, optional
        Length of the linear warm-up from ``warmup_start_factor * peak_lr``.
    warmup_start_factor : float, optional
        Fraction of the peak at step 0.
    decay_per_step : float, optional
        Multiplicative decay per step after the warm-up.
    floor_step : int, optional
        From this step on the rate stays at ``floor_factor * peak_lr``.
    floor_factor : float, optional
        The floor as a fraction of the peak.

    Returns
    -------
    float

    Examples
    --------
    >>> [round(paper_learning_rate(s, 1e-3), 8) for s in (0, 50, 100, 8100, 10508, 50000)]
    [1e-05, 0.000505, 0.001, 0.0001, 5e-05, 5e-05]
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if peak_lr <= 0:
        raise ValueError(f"peak_lr must be > 0, got {peak_lr}")
    if step < warmup_steps:
        factor = warmup_start_factor + (1.0 - warmup_start_factor) * step / warmup_steps
    elif step < floor_step:
        factor = decay_per_step ** (step - warmup_steps)
    else:
        factor = floor_factor
    return peak_lr * factor


class WarmupExponentialFloorLR(_LRScheduler):
    """Scheduler form of :func:`paper_learning_rate`; ``step(global_step)`` sets the rate directly.

    Unlike torch's chained schedulers it is stateless: resuming from a checkpoint only needs the
    global step, which nnU-Net's checkpoint already implies (epoch x iterations per epoch).

    Examples
    --------
    >>> net = torch.nn.Linear(1, 1)
    >>> opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0)
    >>> sched = WarmupExponentialFloorLR(opt, peak_lr=1e-3)
    >>> sched.step(100)
    >>> opt.param_groups[0]["lr"]
    0.001
    """

    def __init__(self, optimizer: torch.optim.Optimizer, peak_lr: float, **schedule_kwargs):
        self.peak_lr = float(peak_lr)
        self.schedule_kwargs = schedule_kwargs
        self.ctr = 0
        super().__init__(optimizer, last_epoch=-1)

    def get_lr(self):
        return [paper_learning_rate(max(self.ctr, 0), self.peak_lr, **self.schedule_kwargs)
                for _ in self.optimizer.param_groups]

    def step(self, current_step: int | None = None):
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        else:
            self.ctr = int(current_step)
        lr = paper_learning_rate(int(current_step), self.peak_lr, **self.schedule_kwargs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [lr for _ in self.optimizer.param_groups]


def steps_to_epochs(steps: int, iterations_per_epoch: int) -> int:
    """Epochs needed to cover `steps` optimiser steps (rounded up).

    Examples
    --------
    >>> steps_to_epochs(5000, 250), steps_to_epochs(5001, 250)
    (20, 21)
    """
    return int(math.ceil(steps / iterations_per_epoch))
