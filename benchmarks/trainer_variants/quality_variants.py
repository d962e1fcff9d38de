"""Trainer variants behind the rows of ``benchmarks/README.md`` (Model quality).

``bench_quality.py`` appends this folder to ``nnUNet_extTrainer``, so ``--trainer NAME`` finds them. With
``--code-path``, ``nnunet_anomaly`` is the other checkout's, so a variant of ``AnomalyTaskTrainer_demo``
changes that checkout's demo trainer: that is how the older commits are trained at today's budget.
"""
import os
import time

from nnunet_anomaly.tasks import TaskOptions
from nnunet_anomaly.trainers import AnomalyTaskTrainer_demo


class Bench_1200fp32(AnomalyTaskTrainer_demo):
    """Today's demo budget (12 x 100 iterations, 20 validation patches) in float32, for older checkouts."""
    epochs = 12
    iterations_per_epoch = 100
    validation_max_pairs = 20
    cpu_bfloat16 = False


class Bench_1200fp32_rawLabels(Bench_1200fp32):
    """As ``Bench_1200fp32`` with labels neither closed nor hole-filled (the old default)."""
    task_options = TaskOptions.brain(fill_holes=False)


class Bench_1200_paperSchedule(AnomalyTaskTrainer_demo):
    """Today's demo trainer with the paper's learning-rate schedule instead of the polynomial decay."""
    paper_schedule = True
    paper_peak_lr_3d = 3e-3
    paper_peak_lr_2d = 3e-3


class Bench_TimeBudget(AnomalyTaskTrainer_demo):
    """The demo recipe for a wall-clock budget instead of an iteration count (for a GPU lent for minutes).

    Training stops once ``BENCH_TRAIN_SECONDS`` (default 240) have passed since the first epoch, and the
    learning rate follows the demo's polynomial decay over the elapsed fraction of that budget, so the run
    ends near 0 as a fixed-length run does. How many iterations that was is in the log."""
    epochs = 10_000
    iterations_per_epoch = 100
    validation_max_pairs = 40

    def _budget_fraction(self) -> float:
        if getattr(self, "_budget_started", None) is None:
            self._budget_started = time.monotonic()
        return min((time.monotonic() - self._budget_started) / float(os.environ.get("BENCH_TRAIN_SECONDS", 240)), 1.0)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        learning_rate = self.initial_lr * (1 - self._budget_fraction()) ** 0.9
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        self.logger.local_logger.my_fantastic_logging["lrs"][-1] = learning_rate  # replaces nnU-Net's value
        self.print_to_log_file(f"Learning rate for the elapsed budget: {learning_rate:.3g}")

    def should_stop_early(self) -> bool:
        if self._budget_fraction() < 1.0:
            return super().should_stop_early()
        self.print_to_log_file(f"Time budget spent after {self.current_epoch} epochs "
                               f"({self.current_epoch * self.num_iterations_per_epoch} iterations)")
        return True


class Bench_seed1(AnomalyTaskTrainer_demo):
    """Today's demo trainer with another training seed: how much one run's numbers vary."""
    training_seed = 1


class Bench_acquisition(AnomalyTaskTrainer_demo):
    """Today's demo trainer with acquisition and anatomy variation of the healthy patch (default options)."""
    from nnunet_anomaly.acquisition import AcquisitionOptions
    acquisition_variation = AcquisitionOptions()
    del AcquisitionOptions


class Bench_seed1(AnomalyTaskTrainer_demo):
    """The demo trainer with other seeds (weights, case sampling, anomalies): how much one run's numbers move."""
    training_seed = 1
    anomaly_seed = 1
