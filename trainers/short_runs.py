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
    """Sized for ``nnunet_anomaly demo`` (Dataset990_MNIDemo, 4 mm, ``3d_demo`` 40x48x40, 8 base features):
    8 epochs x 20 iterations per fold, 8 fixed validation patches, final validation on 2 cases without
    test-time mirroring. Measured on the shared 2-core machine under heavy load (load average ~10),
    10 iterations took 32-56 s per epoch (about 1.2 CPU-seconds per iteration, data loading 0.02);
    on idle cores a fold takes roughly 1.5 minutes."""
    epochs = 8
    iterations_per_epoch = 20
    validation_max_pairs = 8
    final_validation_mirroring = False
    final_validation_max_cases = 2
