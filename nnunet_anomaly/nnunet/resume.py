"""Resuming a fold: which checkpoint to continue from, what a killed run left behind, when a fold is finished.

nnU-Net's ``--c`` loads ``checkpoint_final.pth`` if it exists, else ``checkpoint_latest.pth``, else
``checkpoint_best.pth``. Our trainer adds what a long, preemptible run needs (see
``AnomalyTaskTrainer.run_training`` and ``.load_checkpoint``):

* every checkpoint and every validation file is written atomically, so a run killed while writing
  leaves the previous file whole and only a hidden temporary file, which the next start removes
  (:func:`nnunet_anomaly._io.remove_stale_temporaries`);
* between ``checkpoint_latest`` (every ``save_every`` epochs) and ``checkpoint_best`` (whenever the
  moving average improves) the newer one is resumed (:func:`newest_resumable`): both hold the full
  training state, and the newer loses fewer epochs and keeps ``checkpoint_best`` the best;
* a fold that already ended, at ``num_epochs`` or by early stopping, stays as it is: no further
  epoch, no rewritten ``checkpoint_final.pth``, and its complete ``validation/summary.json`` is kept
  (:func:`finished_reason`, :func:`completed_summary`).

The moving average, the early-stopping counter and every logged curve live in the checkpoint's log,
so they continue where the checkpoint left them.
"""
from __future__ import annotations

import json
import os

__all__ = ["checkpoint_epoch", "newest_resumable", "finished_reason", "completed_summary"]

def checkpoint_epoch(path) -> int | None:
    """Epochs trained when the checkpoint at `path` was written (nnU-Net's ``current_epoch``); None if unreadable."""
    import torch

    try:
        checkpoint = torch.load(os.fspath(path), map_location="cpu", weights_only=False)
        return int(checkpoint["current_epoch"])
    except Exception:  # noqa: BLE001 -- any unreadable checkpoint is simply not a candidate
        return None


def newest_resumable(folder) -> str | None:
    """``checkpoint_latest.pth`` or ``checkpoint_best.pth`` of `folder`, whichever holds more epochs (latest on a tie).

    Both hold the whole training state (weights, optimiser, log, best moving average). None when neither
    is readable.
    """
    candidates = []
    for rank, name in enumerate(("checkpoint_latest.pth", "checkpoint_best.pth")):
        path = os.path.join(os.fspath(folder), name)
        epoch = checkpoint_epoch(path) if os.path.isfile(path) else None
        if epoch is not None:
            candidates.append((epoch, -rank, path))
    return max(candidates)[2] if candidates else None


def finished_reason(current_epoch: int, num_epochs: int, stopped_early: bool) -> str | None:
    """Why a run that has trained `current_epoch` epochs is over, or None if it should go on.

    Examples
    --------
    >>> finished_reason(1000, 1000, False), finished_reason(37, 1000, True), finished_reason(37, 1000, False)
    ('all 1000 epochs trained', 'stopped early after 37 epochs', None)
    """
    if current_epoch >= num_epochs:
        return f"all {num_epochs} epochs trained"
    if current_epoch > 0 and stopped_early:
        return f"stopped early after {current_epoch} epochs"
    return None


def completed_summary(path, trainer: str, fold) -> dict | None:
    """The final validation summary at `path` if it is complete and belongs to `trainer` / `fold`, else None."""
    try:
        with open(path, encoding="utf-8") as handle:
            summary = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("trainer") != trainer or str(summary.get("fold")) != str(fold) \
            or "pooled" not in summary:
        return None
    return summary
