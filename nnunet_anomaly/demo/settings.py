"""What the demo trains and predicts: the dataset, the configuration and the presets (brain and chest X-ray)."""
from __future__ import annotations

from typing import NamedTuple

DATASET_ID = 990
DATASET_NAME = "Dataset990_MNIDemo"
#: the chest X-ray demo's dataset (``--setting cxr``), built by Dataset505_Radiographs under this id and name
CXR_DATASET_ID = 992
CXR_DATASET_NAME = "Dataset992_CXRDemo"
PLANS = "nnUNetPlans"
DEFAULT_WORKDIR = "demo_output"
STATE_FOLDER = ".demo"
#: what every fold predicts with, ensembled or alone: the model the synthetic validation selected
CHECKPOINT = "checkpoint_best.pth"


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
    #: "brain" (3D MRI, Dataset990) or "cxr" (real chest radiographs, 2D, :data:`CXR_DATASET_NAME`)
    setting: str = "brain"
    dataset_id: int = DATASET_ID
    dataset_name: str = DATASET_NAME
    #: the small configuration's batch, first-stage features and convolutions per stage (add-config)
    batch_size: int = 2
    features: int = 8
    convs_per_stage: int = 1


#: The default: the five fold models of T = 1 (one per synthetic task), trained at the same time on a
#: CPU, on 24 subjects of eight anatomies; 8 healthy, 8 tumour and 8 cyst test cases, half of them in
#: an anatomy no fold trains on; each task applied to each healthy test image.
DEMO = DemoSettings("demo", "AnomalyTaskTrainer_demo", "3d_demo", (0, 1, 2, 3, 4), 24, True, 8, 8, 8)
#: ``--quick``: the same pipeline on a tiny setting (two folds, a few epochs) for the end-to-end test.
QUICK = DemoSettings("quick", "AnomalyTaskTrainer_ci", "3d_demo", (0, 1), 10, True, 1, 1, 1)

#: ``--setting cxr``: real paediatric chest radiographs (nnunet_anomaly.offline_radiographs), 256 x 256 in
#: 128 x 128 patches (random crops: more variety from few images, and a quarter of the cost of a step); five
#: healthy images train the five fold models of T = 1; the other three healthy and the eight pneumonia images
#: are the sample-wise test set; each task applied to each held-out healthy image gives the pixel-wise one.
CXR = DemoSettings("cxr", "AnomalyTaskTrainer_demo2d", "2d_demo", (0, 1, 2, 3, 4), 5, True, 3, 3, 8,
                   base_configuration="2d", patch_size=(128, 128), setting="cxr", dataset_id=CXR_DATASET_ID,
                   dataset_name=CXR_DATASET_NAME, batch_size=4, features=8, convs_per_stage=1)
#: ``--setting cxr --quick``: the same pipeline, two folds of a few iterations (the end-to-end test).
CXR_QUICK = CXR._replace(name="cxr-quick", trainer="AnomalyTaskTrainer_demo2dQuick", folds=(0, 1),
                         synthetic_cases_per_task=1)
