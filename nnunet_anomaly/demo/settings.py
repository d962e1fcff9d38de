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
    num_test_healthy: int = 4
    num_test_per_anomaly: int = 4
    base_configuration: str = "3d_fullres"
    patch_size: tuple[int, ...] = (40, 48, 40)


#: The default: the five fold models of T = 1 (one per synthetic task), trained at the same time on a
#: CPU, on 24 subjects of eight anatomies; 8 healthy, 8 tumour and 8 cyst test cases, half of them in
#: an anatomy no fold trains on; each task applied to each healthy test image.
DEMO = DemoSettings("demo", "AnomalyTaskTrainer_demo", "3d_demo", (0, 1, 2, 3, 4), 24, True, 8, 8, 8)
#: ``--quick``: the same pipeline on a tiny setting (two folds, a few epochs) for the end-to-end test.
QUICK = DemoSettings("quick", "AnomalyTaskTrainer_ci", "3d_demo", (0, 1), 10, True, 1, 1, 1)
