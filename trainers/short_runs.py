"""Short runs: CI smoke tests and the offline demo (like nnU-Net's ``nnUNetTrainer_Xepochs``).

Both run single-threaded on a CPU device (``cpu_threads = 1``): their networks are tiny, and on a
shared 2-core machine a 2-thread step of the demo network took 2.4 s against 0.21 s with one thread
(OpenMP threads waiting for busy cores).
"""
from nnunet_anomaly.nnunet.trainer import AnomalyTaskTrainer


class AnomalyTaskTrainer_ci(AnomalyTaskTrainer):
    """1 epoch x 5 iterations, a handful of validation patches, a cheap final validation."""
    epochs = 1
    iterations_per_epoch = 5
    validation_max_pairs = 4
    final_validation_mirroring = False
    final_validation_max_cases = 2
    cpu_threads = 1


class AnomalyTaskTrainer_demo(AnomalyTaskTrainer):
    """Sized for ``nnunet_anomaly demo`` (Dataset990_MNIDemo at 4 mm, ``3d_demo`` 40x48x40, 8 base features):
    8 epochs x 20 iterations per fold, 8 fixed validation patches, final validation on 2 cases without
    test-time mirroring. Measured on the shared 2-core machine (load average ~5): 50 s per fold in all
    (start-up, 160 iterations, 8 validations, final validation), so about 4 minutes for the 5 folds."""
    epochs = 8
    iterations_per_epoch = 20
    validation_max_pairs = 8
    final_validation_mirroring = False
    final_validation_max_cases = 2
    cpu_threads = 1
