"""nnU-Net's progress logger with the synthetic-validation curves added.

nnU-Net's ``LocalLogger`` accepts only its own keys, and its ``progress.png`` calls the validation
metric "pseudo dice". :class:`AnomalyLocalLogger` adds per-task AP and AUROC keys and the healthy
false-positive scores, and draws a plot that says what the curves are: the selection metric on the
fixed synthetic validation set (the value in nnU-Net's ``mean_fg_dice`` slot: pooled pixel AP, by
default with the healthy voxels as negatives), its moving average (``ema_fg_dice``, which selects
``checkpoint_best.pth``), pooled AP and AUROC, one AP curve per validation task, and the scores
that 1 % and 0.1 % of the healthy voxels exceed.
"""
from __future__ import annotations

import os

import numpy as np
from nnunetv2.training.logging.nnunet_logger import LocalLogger

__all__ = ["AnomalyLocalLogger", "EXTRA_KEYS"]

#: keys added to nnU-Net's logger, with the value an epoch from an older checkpoint gets: pooled AUROC,
#: per-task AP / AUROC {task: value}, pooled AP without and with the healthy negatives, and the healthy
#: false-positive scores {"1%": score, "0.1%": score}, and the selection metric's sampling error (the SD
#: of its value over bootstrap resamples of the validation patches).
EXTRA_KEYS = {"val_auroc": float("nan"), "val_ap_per_task": {}, "val_auroc_per_task": {}, "val_ap": float("nan"),
              "val_ap_with_healthy": float("nan"), "val_healthy_fp": {}, "val_ap_bootstrap_sd": float("nan")}


class AnomalyLocalLogger(LocalLogger):
    """``LocalLogger`` with :data:`EXTRA_KEYS`; ``plot_progress_png`` shows the synthetic-validation AP."""

    def __init__(self, verbose: bool = False):
        super().__init__(verbose)
        for key in EXTRA_KEYS:
            self.my_fantastic_logging[key] = []

    def load_checkpoint(self, checkpoint: dict):
        super().load_checkpoint(checkpoint)
        for key, missing in EXTRA_KEYS.items():  # checkpoints from before these keys existed
            n = len(self.my_fantastic_logging.get("mean_fg_dice", []))
            self.my_fantastic_logging.setdefault(key, [missing] * n)

    def plot_progress_png(self, output_folder):
        import matplotlib
        matplotlib.use("agg")
        import matplotlib.pyplot as plt

        log = self.my_fantastic_logging
        epochs = min(len(v) for v in log.values())
        if epochs == 0:
            return
        x = list(range(epochs))
        fig, axes = plt.subplots(5, 1, figsize=(12, 22))
        ax = axes[0]
        ax.plot(x, log["train_losses"][:epochs], color="b", label="training loss", linewidth=2, marker="o")
        ax.plot(x, log["val_losses"][:epochs], color="r", label="validation loss", linewidth=2, marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(loc="upper left")
        ax2 = ax.twinx()
        ax2.plot(x, log["mean_fg_dice"][:epochs], color="g", ls="dotted", label="selection metric", linewidth=2,
                 marker="o")
        selected, spread = np.asarray(log["mean_fg_dice"][:epochs], float), np.asarray(log["val_ap_bootstrap_sd"][:epochs], float)
        ax2.fill_between(x, selected - spread, selected + spread, color="g", alpha=0.15,
                         label="selection metric +- its sampling error (patches resampled)")
        ax2.plot(x, log["ema_fg_dice"][:epochs], color="g", label="selection metric, moving average (selects best)",
                 linewidth=3, marker="s")
        ax2.plot(x, log["val_ap"][:epochs], color="m", ls="dashed", label="pixel AP (pooled, anomalous patches)",
                 linewidth=1.5, marker="v")
        ax2.plot(x, log["val_ap_with_healthy"][:epochs], color="c", ls="dashed",
                 label="pixel AP with healthy negatives", linewidth=1.5, marker="D")
        ax2.plot(x, log["val_auroc"][:epochs], color="k", ls="dashed", label="pixel AUROC (pooled)", linewidth=1.5, marker="^")
        ax2.set_ylabel("synthetic validation metric")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="upper right")
        ax.set_title("fixed synthetic validation set")

        ax = axes[1]
        per_task = log["val_ap_per_task"][:epochs]
        tasks = sorted({t for entry in per_task for t in entry})
        for task in tasks:
            ax.plot(x, [entry.get(task, np.nan) for entry in per_task], label=f"AP {task}", linewidth=2, marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel("pixel AP per validation task")
        ax.set_ylim(0, 1)
        if tasks:
            ax.legend(loc="upper left")

        ax = axes[2]
        fp = log["val_healthy_fp"][:epochs]
        for rate, style in (("1%", "-"), ("0.1%", "--")):
            ax.plot(x, [entry.get(rate, np.nan) for entry in fp], color="r", ls=style, linewidth=2, marker="o",
                    label=f"score exceeded by {rate} of healthy voxels")
        ax.set_xlabel("epoch")
        ax.set_ylabel("false-positive score on healthy anatomy\n(lower is better)")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left")

        ax = axes[3]
        durations = [e - s for e, s in zip(log["epoch_end_timestamps"][:epochs], log["epoch_start_timestamps"])]
        ax.plot(x, durations, color="b", label="epoch duration", linewidth=2, marker="o")
        ax.set_ylim(0, max(durations + [1]) * 1.1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("time [s]")
        ax.legend(loc="upper left")

        ax = axes[4]
        ax.plot(x, log["lrs"][:epochs], color="b", label="learning rate", linewidth=2, marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.legend(loc="upper left")
        fig.tight_layout()
        from nnunet_anomaly._io import atomic_path
        with atomic_path(os.path.join(output_folder, "progress.png")) as tmp:
            fig.savefig(tmp)
        plt.close(fig)
