"""Data-augmentation variants (like nnU-Net's ``variants/data_augmentation``)."""
from nnunet_anomaly.nnunet.trainer import AnomalyTaskTrainer


class AnomalyTaskTrainer_nnUNetDA(AnomalyTaskTrainer):
    """nnU-Net's full augmentation (spatial, intensity, mirroring) before the anomaly is inserted."""
    use_nnunet_augmentation = True
