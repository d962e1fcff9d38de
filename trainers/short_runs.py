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
    12 epochs x 100 iterations per fold with AdamW at 3e-3 decaying to 0 over the run (nnU-Net's
    polynomial decay), in bfloat16 on CPUs that support it, 20 fixed validation patches (4 of them
    healthy), final validation on 2 cases without test-time mirroring.

    Why these settings (measured on the demo, chosen on synthetic validation only; the demo's lesions
    never chose anything): iterations are what the maps need. The five folds at 8 x 50 iterations reached
    a pooled synthetic validation AP of 0.04-0.11; at 12 x 100 iterations 0.13-0.38. A learning rate
    that decays to 0 with the run beat the paper's schedule at 1,200 iterations (folds' validation AP
    0.270 vs 0.244 on average; unseen synthetic tasks 0.278 vs 0.224). bfloat16 halves the time of a step
    (96 vs 187 ms), and the demo trains the five folds at the same time, one core each, so 1,200
    iterations per fold fit the demo's budget on two cores."""
    epochs = 12
    iterations_per_epoch = 100
    adamw_learning_rate = 3e-3
    cpu_bfloat16 = True
    validation_max_pairs = 20
    final_validation_mirroring = False
    final_validation_max_cases = 2
    cpu_threads = 1


class AnomalyTaskTrainer_demoLong(AnomalyTaskTrainer_demo):
    """The demo recipe at GPU scale, for ``benchmarks/bench_quality.py --device cuda``: 100 x 250 iterations
    per fold (about 20x the CPU demo), 40 fixed validation patches."""
    epochs = 100
    iterations_per_epoch = 250
    validation_max_pairs = 40


class AnomalyTaskTrainer_demo2d(AnomalyTaskTrainer_demo):
    """Sized for ``nnunet_anomaly demo --setting cxr`` (a handful of real radiographs at 256 x 256, ``2d_demo``:
    128 x 128 patches, batch 4, 8 base features): 12 epochs x 100 iterations per fold, which with the five
    folds at the same time fits the demo's 15 minutes on two shared cores (6 epochs: 6.3 minutes in all); the demo's optimisation (AdamW at 3e-3 decaying to 0, bfloat16 on CPUs that support it, one thread),
    plus nnU-Net's augmentation without its mirroring and with rotations of at most 15 degrees.

    Why the augmentation: the reference trains chest X-rays without any (it had 10,478 healthy images);
    the demo has five, so the small rotations and scalings, noise, blur, brightness, contrast, gamma and
    low-resolution simulation of nnU-Net's pipeline are what stops the network from learning those five
    images by heart, and what teaches it that such acquisition differences are normal. No mirroring: a
    flipped chest (heart on the right) is an anomaly, not a healthy variant; no rotation beyond 15
    degrees, as radiographs are taken upright (nnU-Net's default for a square 2D patch is 180)."""
    epochs = 12
    iterations_per_epoch = 100
    use_nnunet_augmentation = True
    max_rotation_degrees = 15.0

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        import numpy as np
        from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size

        patch_size = self.configuration_manager.patch_size
        if len(patch_size) != 2:
            raise ValueError(f"{type(self).__name__} is for 2D configurations; got patch size {list(patch_size)}")
        angle = float(np.deg2rad(self.max_rotation_degrees))
        rotation = (-angle, angle)
        # the larger patch nnU-Net draws before rotating and scaling (its own rule, with its own scale range)
        initial_patch_size = get_patch_size(patch_size, rotation, rotation, rotation, (0.85, 1.25))
        self.inference_allowed_mirroring_axes = None
        return rotation, False, initial_patch_size, None


class AnomalyTaskTrainer_demo2dQuick(AnomalyTaskTrainer_demo2d):
    """``nnunet_anomaly demo --setting cxr --quick``: the 2D demo recipe for 1 epoch x 5 iterations (tests)."""
    epochs = 1
    iterations_per_epoch = 5
    validation_max_pairs = 4
