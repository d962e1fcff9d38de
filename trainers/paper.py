"""The paper's optimisation, and the variant closest to the reference implementation.

Use them with the ``3d_paper`` / ``2d_paper`` configurations (whole image as patch, batch 8 / 50;
``python -m nnunet_anomaly.nnunet.planning add-preset -d DATASET 3d_paper``).
"""
from dataclasses import replace

from nnunet_anomaly.nnunet.losses import IdentityMSELoss
from nnunet_anomaly.trainers.positional_encoding import AnomalyTaskTrainer_PosEnc
from nnunet_anomaly.nnunet.trainer import AnomalyTaskTrainer


class AnomalyTaskTrainer_paper(AnomalyTaskTrainer):
    """AdamW (weight decay 0), peak LR 1e-3 (3D) / 5e-3 (2D), 100-step warm-up from 1 %, x0.1 per 8000
    steps, floor at peak/20 from step 10508; early stopping after 5000 steps without a better EMA AP."""
    paper_schedule = True
    early_stopping_patience_steps = 5000


class AnomalyTaskTrainer_reference(AnomalyTaskTrainer_PosEnc):
    """Closest to Baugh et al.: the paper's optimisation, MSE on the identity output, no deep supervision,
    positional-encoding channels, left-right flip only (3D) / no augmentation (2D), cubic-spline
    resampling in the blend and deformation tasks, no test-time mirroring.

    The network's output is the anomaly score itself (no sigmoid): validation and ``nnunet_anomaly
    predict`` clip it to [0, 1] (``output_activation``). Its checkpoints allow no test-time mirroring,
    so nnU-Net's predictor does not mirror (the paper evaluates without).
    """
    paper_schedule = True
    early_stopping_patience_steps = 5000
    loss_class = IdentityMSELoss
    output_activation = "identity"
    deep_supervision = False
    final_validation_mirroring = False
    #: the reference resamples blend sources and deformations with cubic splines
    interpolation_order = 3

    def _task_options(self):
        return replace(super()._task_options(), interpolation_order=self.interpolation_order)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        values = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        # training keeps the left-right flip; prediction does not mirror (stored in the checkpoint)
        self.inference_allowed_mirroring_axes = None
        return values


class AnomalyTaskTrainer_paper_T2(AnomalyTaskTrainer_paper):
    num_train_tasks = 2


class AnomalyTaskTrainer_paper_T3(AnomalyTaskTrainer_paper):
    num_train_tasks = 3


class AnomalyTaskTrainer_paper_T4(AnomalyTaskTrainer_paper):
    num_train_tasks = 4


class AnomalyTaskTrainer_reference_T2(AnomalyTaskTrainer_reference):
    num_train_tasks = 2


class AnomalyTaskTrainer_reference_T3(AnomalyTaskTrainer_reference):
    num_train_tasks = 3


class AnomalyTaskTrainer_reference_T4(AnomalyTaskTrainer_reference):
    num_train_tasks = 4
