"""Short runs: CI smoke tests and the offline demo (like nnU-Net's ``nnUNetTrainer_Xepochs``)."""
from nnunet_anomaly.nnunet.trainer import AnomalyTaskTrainer


class AnomalyTaskTrainer_ci(AnomalyTaskTrainer):
    """1 epoch x 5 iterations, a handful of validation patches, a cheap final validation."""
    epochs = 1
    iterations_per_epoch = 5
    validation_max_pairs = 4
    final_validation_mirroring = False
    final_validation_max_cases = 2


class AnomalyTaskTrainer_demo(AnomalyTaskTrainer):
    """Sized for ``nnunet_anomaly demo``: 5 folds on 2 CPU cores in minutes with a tiny configuration."""
    epochs = 4
    iterations_per_epoch = 10
    validation_max_pairs = 8
    final_validation_mirroring = False
