"""Loss variants (like nnU-Net's ``variants/loss``)."""
from nnunet_anomaly.nnunet.losses import SigmoidMSELoss
from nnunet_anomaly.nnunet.trainer import AnomalyTaskTrainer


class AnomalyTaskTrainer_MSE(AnomalyTaskTrainer):
    """MSE on the sigmoid probabilities: the reference's regression loss through nnU-Net's sigmoid head."""
    loss_class = SigmoidMSELoss
