"""nnU-Net trainer classes of nnunet-anomaly (installed as ``nnunet_anomaly.trainers``).

``from nnunet_anomaly.trainers import *`` imports every trainer; nnU-Net finds them by class name.
"""
from nnunet_anomaly.trainers.AnomalyTaskTrainer import (AnomalyTaskTrainer, AnomalyTaskTrainer_T2,
                                                        AnomalyTaskTrainer_T3, AnomalyTaskTrainer_T4)
from nnunet_anomaly.trainers.short_runs import AnomalyTaskTrainer_ci, AnomalyTaskTrainer_demo

__all__ = ["AnomalyTaskTrainer", "AnomalyTaskTrainer_T2", "AnomalyTaskTrainer_T3", "AnomalyTaskTrainer_T4",
           "AnomalyTaskTrainer_ci", "AnomalyTaskTrainer_demo"]
