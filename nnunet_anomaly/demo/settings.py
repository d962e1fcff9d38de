"""What the demo trains and predicts: the dataset, the configuration and the two presets."""
from __future__ import annotations

from typing import NamedTuple

DATASET_ID = 990
DATASET_NAME = "Dataset990_MNIDemo"
PLANS = "nnUNetPlans"
DEFAULT_WORKDIR = "demo_output"
STATE_FOLDER = ".demo"


class DemoSettings(NamedTuple):
    """What the demo trains and predicts; the two presets are :data:`DEMO` and :data:`QUICK`."""

    name: str
    trainer: str
    configuration: str
    folds: tuple[int, ...]
    num_training: int
    disable_tta: bool
    synthetic_cases_per_task: int
    base_configuration: str = "3d_fullres"
    patch_size: tuple[int, ...] = (40, 48, 40)


#: The default: the five fold models of T = 1 (one per synthetic task), a small CPU budget.
DEMO = DemoSettings("demo", "AnomalyTaskTrainer_demo", "3d_demo", (0, 1, 2, 3, 4), 20, True, 2)
#: ``--quick``: the same pipeline on a tiny setting (two folds, a few epochs) for the end-to-end test.
QUICK = DemoSettings("quick", "AnomalyTaskTrainer_ci", "3d_demo", (0, 1), 10, True, 1)
