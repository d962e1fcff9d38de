"""``AnomalyTaskTrainer``: nnU-Net's trainer wired to the synthetic anomaly tasks and task-fold validation.

The trainer only connects library pieces to nnU-Net's hooks:

================================================  ================================================================
nnU-Net hook                                      what it does here
================================================  ================================================================
``__init__``                                      checks the fold, rewrites the labels to one sigmoid region
``do_split``                                      task-fold partitions from nnU-Net's ``splits_final.json`` blocks
``configure_rotation_dummyDA_mirroring...``       reference augmentation (left-right flip in 3D, none in 2D)
``get_dataloaders``                               anomaly transform in the DA workers + the fixed validation set
``_build_loss``                                   soft BCE (or MSE on probabilities) with deep supervision
``validation_step``, ``on_validation_epoch_end``  pooled and per-task pixel AP / AUROC, healthy false positives,
                                                  gathered under DDP
``on_epoch_end``                                  EMA of the selection metric selects ``checkpoint_best.pth``
``configure_optimizers``, ``train_step``          optional paper schedule (AdamW, per-step warm-up/decay/floor) or
                                                  AdamW with nnU-Net's polynomial decay;
                                                  optional bfloat16 autocast on a CPU that supports it
``run_training``                                  optional early stopping on the synthetic validation signal; a
                                                  finished fold stays finished under ``--c``
``save_checkpoint``, ``load_checkpoint``          atomic checkpoints; ``--c`` resumes the newest full state
``perform_actual_validation``                     full-image synthetic validation -> ``validation/summary.json``
================================================  ================================================================

Settings are class attributes (nnU-Net rebuilds trainers from their class name, so a variant is a
subclass that changes attributes; see ``trainers/``).
"""
from __future__ import annotations

import math
import os
from copy import deepcopy
from time import time
from typing import List

import numpy as np
import torch
from torch import distributed as dist

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_anomaly.nnunet.losses import SoftBCEWithLogitsLoss, output_to_map, with_deep_supervision
from nnunet_anomaly.nnunet.lr_schedule import WarmupExponentialFloorLR, steps_to_epochs
from nnunet_anomaly.nnunet.progress import AnomalyLocalLogger
from nnunet_anomaly.nnunet.sources import (PreprocessedCasePool, case_view, dropped_inter_blend_warning,
                                           pool_instructions, resolve_external_pool)
from nnunet_anomaly.nnunet.transforms import (AcquisitionVariationTransform, SoftDownsampleForDSTransform,
                                              SyntheticAnomalyTransform)
from nnunet_anomaly.nnunet.validation import (HEALTHY, ValidationBatches, ValidationSample, bootstrap_ap_spread,
                                              validation_canvas,
                                              gather_scores, healthy_false_positives, make_validation_image, pair_seed,
                                              select_pairs, summarise)

__all__ = ["AnomalyTaskTrainer", "as_single_sigmoid_head", "check_fold", "task_fold_partition",
           "left_right_axis"]

ANOMALY_LABELS = {"background": 0, "anomaly": [1, 2]}


def as_single_sigmoid_head(dataset_json: dict) -> dict:
    """A copy of `dataset_json` whose labels make nnU-Net predict one sigmoid channel.

    nnU-Net treats a label whose value is a list of more than one label as a *region*; one region gives
    one segmentation head, a sigmoid at inference, and a one-channel ``--save_probabilities`` map.

    Examples
    --------
    >>> out = as_single_sigmoid_head({"labels": {"background": 0, "brain": 1}, "file_ending": ".nii.gz"})
    >>> out["labels"], out["regions_class_order"]
    ({'background': 0, 'anomaly': [1, 2]}, [1])
    """
    if not isinstance(dataset_json, dict):
        raise ValueError(f"dataset_json must be a dict, got {type(dataset_json).__name__}")
    out = deepcopy(dataset_json)
    out["labels"] = deepcopy(ANOMALY_LABELS)
    out["regions_class_order"] = [1]
    return out


def check_fold(trainer_name: str, fold, num_train_tasks: int):
    """The :class:`~nnunet_anomaly.folds.FoldSplit` of `fold`, or a ValueError naming the valid range."""
    from nnunet_anomaly.folds import fold_split, num_folds

    n = num_folds(num_train_tasks)
    if isinstance(fold, str):
        if fold == "all":
            raise ValueError(f"{trainer_name}: fold 'all' has no meaning for task folds; use a fold in 0..{n - 1} "
                             f"({n} folds for {num_train_tasks} training task(s))")
        try:
            fold = int(fold)
        except ValueError:
            raise ValueError(f"{trainer_name}: fold must be an integer in 0..{n - 1}, got {fold!r}") from None
    if not isinstance(fold, (int, np.integer)) or not 0 <= int(fold) < n:
        raise ValueError(f"{trainer_name}: fold {fold} is out of range; valid folds are 0..{n - 1} "
                         f"({n} folds for {num_train_tasks} training task(s))")
    return fold_split(int(fold), num_train_tasks)


def task_fold_partition(splits: list, split) -> tuple[list, list]:
    """Training and validation cases of a task fold from nnU-Net's 5-fold ``splits_final.json``.

    Block i is the validation cases of nnU-Net fold i; the partition is the union of the split's
    ``train_blocks`` and ``val_blocks``.

    Examples
    --------
    >>> from nnunet_anomaly.folds import fold_split
    >>> splits = [{"train": [], "val": [f"c{i}"]} for i in range(5)]
    >>> task_fold_partition(splits, fold_split(0, 1))
    (['c1', 'c2', 'c3', 'c4'], ['c0'])
    """
    if not isinstance(splits, list) or len(splits) != 5:
        raise ValueError(f"task folds need nnU-Net's 5-fold splits_final.json (block i = validation cases of "
                         f"fold i); got {len(splits) if isinstance(splits, list) else type(splits).__name__} splits")
    blocks = [list(s["val"]) for s in splits]
    seen = {}
    for b, block in enumerate(blocks):
        if not block:
            raise ValueError(f"splits_final.json: block {b} (validation cases of fold {b}) is empty")
        for case in block:
            if case in seen:
                raise ValueError(f"splits_final.json: case {case!r} is in the validation cases of folds "
                                 f"{seen[case]} and {b}; task folds need disjoint blocks")
            seen[case] = b
    train = sorted(c for b in split.train_blocks for c in blocks[b])
    val = sorted(c for b in split.val_blocks for c in blocks[b])
    return train, val


def left_right_axis(plans_manager) -> int:
    """Index of the left-right axis of a 3D preprocessed array.

    nnU-Net's SimpleITK reader returns arrays as (z, y, x), so x (left-right in a radiological,
    axis-aligned volume) is axis 2; the nibabel readers return (x, y, z), so it is axis 0. The plans'
    ``transpose_forward`` then moves the axes; the result is the position of that axis after it.
    """
    reader = str(plans_manager.plans.get("image_reader_writer", ""))
    original_axis = 0 if "Nibabel" in reader else 2
    return list(plans_manager.transpose_forward).index(original_axis)


class AnomalyTaskTrainer(nnUNetTrainer):
    """Train on T synthetic anomaly tasks, validate on the others (Baugh et al., MICCAI 2023)."""

    #: number of training tasks T; the fold argument selects one of C(5, T) task combinations.
    num_train_tasks = 1
    #: replace tasks by name, keeping their fold and data block, e.g. {"smooth_intensity": "local_blur"}
    #: (the replacement must be registered with nnunet_anomaly.tasks in every DA worker).
    task_substitutions: dict = {}
    #: loss on the single output channel (soft targets); wrapped in deep supervision when enabled.
    loss_class = SoftBCEWithLogitsLoss
    #: how the output becomes the anomaly map: "sigmoid" (logits) or "identity" (clipped to [0, 1]; losses.py)
    output_activation = "sigmoid"
    #: False: the reference's augmentation (3D: flip the left-right axis with p=0.5; 2D: none).
    use_nnunet_augmentation = False
    #: base seed of the anomaly parameters in the DA workers (combined with the fold).
    anomaly_seed = 0
    #: acquisition and anatomy variation of the healthy patch before the anomaly
    #: (an nnunet_anomaly.acquisition.AcquisitionOptions; None: off, as the reference)
    acquisition_variation = None
    #: base seed of that variation's parameters (combined with the fold)
    acquisition_seed = 1
    #: seed of the fixed synthetic validation set.
    validation_seed = 12345
    #: fraction of training samples that receive an anomaly (the reference: all).
    anomaly_probability = 1.0
    #: task recipe settings; None = TaskOptions.brain() for 3D and TaskOptions.cxr() for 2D.
    task_options = None
    #: validate on healthy anatomy too: one anomaly-free patch per validation case (as many as each
    #: validation task gets) and, in the final validation, every validation image as it is; their
    #: foreground voxels are negatives. Off: the validation sees only anomalies.
    healthy_validation = True
    #: what selects ``checkpoint_best.pth`` (through its EMA) and drives early stopping: "ap_with_healthy"
    #: (pooled pixel AP with the healthy negatives; needs healthy_validation) or "ap" (anomalous patches only).
    selection_metric = "ap_with_healthy"
    #: memory budget of the per-epoch validation patches.
    validation_memory_mb = 512
    #: cap on validation (case, task) pairs regardless of memory (None: memory budget only).
    validation_max_pairs = None
    #: voxels scored per validation patch (a fixed random subset above this).
    max_scored_voxels_per_sample = 65536
    #: final validation: test-time mirroring, cap on cases (None = all), voxels scored per image.
    final_validation_mirroring = True
    final_validation_max_cases = None
    #: training images also predicted as they are in the final validation: the healthy false-positive
    #: figure on tissue the fold trained on, beside the validation images' (``healthy_training_images``)
    final_validation_seen_cases = 2
    max_scored_voxels_per_image = 1_000_000
    #: deep supervision on soft targets downsampled by averaging (the reference has none).
    deep_supervision = True
    #: training length (None keeps nnU-Net's 1000 x 250).
    epochs = None
    iterations_per_epoch = None
    #: paper optimisation: AdamW (weight decay 0) with the reference's per-step schedule.
    paper_schedule = False
    paper_peak_lr_3d = 1e-3
    paper_peak_lr_2d = 5e-3
    #: otherwise: AdamW (weight decay 0) at this learning rate with nnU-Net's polynomial decay to 0 over
    #: the run, or None for nnU-Net's SGD (1e-2, the same decay). A decay that ends with the run suits
    #: short runs: on the demo's five folds of 1,200 iterations it beat the paper's schedule (built for
    #: 10^4-10^5 steps, still at 72 % of its peak there) on the folds' synthetic validation AP (mean 0.270
    #: vs 0.244) and on unseen synthetic tasks (0.278 vs 0.224).
    adamw_learning_rate = None
    #: stop when the EMA of the validation AP has not improved for this many optimiser steps.
    early_stopping_patience_steps = None
    #: torch threads on a CPU device (None keeps nnU-Net's choice, one per core). Small networks on
    #: busy cores run far faster single-threaded (measured 0.21 vs 2.4 s/it on a loaded 2-core machine).
    cpu_threads = None
    #: on a CPU device whose oneDNN has bfloat16 kernels (AVX512-BF16 / AMX), run the training forward
    #: pass under a bfloat16 autocast (nnU-Net autocasts only on CUDA); the loss stays float32. Measured
    #: on the demo network: 96 instead of 187 ms per step. Ignored on other devices and CPUs.
    cpu_bfloat16 = False
    #: seed of numpy's and torch's global generators, set when the trainer is built (combined with the
    #: fold): the network's initial weights and nnU-Net's case sampling. With nnUNet_n_proc_DA=0 on a CPU a
    #: run is then reproducible; multi-process augmentation delivers batches in arrival order.
    training_seed = 0

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        # fail before nnU-Net creates any output folder
        self.task_split = check_fold(type(self).__name__, fold, self.num_train_tasks)
        super().__init__(plans, configuration, fold, as_single_sigmoid_head(dataset_json), device)
        self.logger.local_logger = AnomalyLocalLogger()
        from nnunet_anomaly.tasks import TASK_NAMES
        swap = dict(self.task_substitutions)
        self.train_task_names = [swap.get(TASK_NAMES[i], TASK_NAMES[i]) for i in self.task_split.train_tasks]
        self.val_task_names = [swap.get(TASK_NAMES[i], TASK_NAMES[i]) for i in self.task_split.val_tasks]
        self._fold_tasks = (list(self.train_task_names), list(self.val_task_names))  # before any task is dropped
        self.enable_deep_supervision = bool(self.deep_supervision)
        if self.epochs is not None:
            self.num_epochs = int(self.epochs)
        if self.iterations_per_epoch is not None:
            self.num_iterations_per_epoch = int(self.iterations_per_epoch)
        self.spatial_dims = len(self.configuration_manager.patch_size)
        if self.selection_metric not in ("ap", "ap_with_healthy") or \
                (self.selection_metric == "ap_with_healthy" and not self.healthy_validation):
            raise ValueError(f"{type(self).__name__}: selection_metric must be 'ap' or 'ap_with_healthy' (the latter "
                             f"needs healthy_validation = True); got {self.selection_metric!r}")
        if self.paper_schedule:
            self.initial_lr = self.paper_peak_lr_3d if self.spatial_dims == 3 else self.paper_peak_lr_2d
            self.weight_decay = 0.0
        elif self.adamw_learning_rate is not None:
            self.initial_lr = float(self.adamw_learning_rate)
            self.weight_decay = 0.0
        if self.cpu_threads is not None and self.device.type == 'cpu':
            torch.set_num_threads(int(self.cpu_threads))
        self._seed_global_generators()
        self._bfloat16 = bool(self.cpu_bfloat16) and self.device.type == 'cpu' and _cpu_has_bfloat16()
        self._global_step = 0
        #: tasks dropped for want of an external pool: {"train": [...], "validation": [...]} (empty: none)
        self.dropped_tasks: dict = {}
        self._loaded_checkpoint = None  # file name of the checkpoint this trainer was restored from
        self._finished_before_start = None  # why a resumed run had nothing left to train
        self._validation_samples: List[ValidationSample] = []
        self.print_to_log_file(f"{type(self).__name__}: fold {fold} trains on tasks {self.train_task_names} "
                               f"(blocks {list(self.task_split.train_blocks)}) and validates "
                               f"{self.val_task_names} (blocks {list(self.task_split.val_blocks)})")
        from nnunet_anomaly.plugin import nnunet_version_problem
        problem = nnunet_version_problem()
        if problem:
            self.print_to_log_file(f"WARNING: {problem}; this trainer relies on nnU-Net internals",
                                   also_print_to_console=True)

    def _stream_seed(self, base: int) -> int:
        """The seed of a random stream from the base seed and the fold, plus the start epoch of a resumed run
        (so a resumed run draws new samples instead of replaying those of epoch 0)."""
        entropy = [int(base), int(self.fold)] + ([int(self.current_epoch)] if self.current_epoch else [])
        return int(np.random.SeedSequence(entropy).generate_state(1)[0])

    def _seed_global_generators(self) -> None:
        """numpy's and torch's global generators (network initialisation, nnU-Net's own sampling)."""
        seed = self._stream_seed(self.training_seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    # ------------------------------------------------------------------------------------------ data
    def do_split(self):
        """(training cases, validation cases) of this task fold; see :func:`task_fold_partition`."""
        from batchgenerators.utilities.file_and_folder_operations import isfile, load_json
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
        from nnunetv2.utilities.crossval_split import generate_crossval_split

        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        splits_file = os.path.join(self.preprocessed_dataset_folder_base, "splits_final.json")
        groups = (getattr(self, "dataset_json", None) or {}).get("case_groups")
        if not isfile(splits_file):
            from nnunet_anomaly._io import write_json
            identifiers = sorted(self.dataset_class.get_identifiers(self.preprocessed_dataset_folder))
            if len(identifiers) < 5:
                raise ValueError(f"{self.plans_manager.dataset_name}: task folds need at least 5 training cases "
                                 f"(one per block), found {len(identifiers)}")
            if groups:
                # dataset.json names each case's subject/site/scanner: whole groups per block
                from nnunet_anomaly.folds import grouped_blocks
                self.print_to_log_file("Creating a group-aware 5-fold split (dataset.json case_groups)...")
                try:
                    splits = grouped_blocks(identifiers, groups)
                except ValueError as error:
                    raise ValueError(f"{self.plans_manager.dataset_name}: dataset.json case_groups: {error}") from None
            else:  # exactly nnU-Net's own split (sorted identifiers, seed 12345, 5 folds)
                self.print_to_log_file("Creating new 5-fold cross-validation split (nnU-Net's own)...")
                splits = generate_crossval_split(identifiers, seed=12345, n_splits=5)
            write_json(splits_file, splits)
        try:
            train, val = task_fold_partition(load_json(splits_file), self.task_split)
        except ValueError as error:
            raise ValueError(f"{splits_file}: {error}") from None
        self.print_to_log_file(f"Task fold {self.fold}: {len(train)} training and {len(val)} validation cases")
        if groups:
            shared = sorted({groups.get(c) for c in train} & {groups.get(c) for c in val} - {None})
            seen = "; groups in both (the split is not group-aware): " + ", ".join(shared) if shared else ""
            self.print_to_log_file(f"validation groups {sorted({groups.get(c, '?') for c in val})}{seen}",
                                   also_print_to_console=bool(shared))
        return train, val

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if self.use_nnunet_augmentation:
            return rotation, dummy_2d, initial_patch_size, mirror_axes
        # the reference: left-right flip only in 3D, nothing in 2D; no rotation, so no larger initial patch
        mirror_axes = (left_right_axis(self.plans_manager),) if self.spatial_dims == 3 else None
        self.inference_allowed_mirroring_axes = mirror_axes
        return rotation, False, np.array(self.configuration_manager.patch_size), mirror_axes

    def _task_options(self):
        from nnunet_anomaly.tasks import TaskOptions
        if self.task_options is not None:
            return self.task_options
        return TaskOptions.brain() if self.spatial_dims == 3 else TaskOptions.cxr()

    def _resolve_tasks_and_pools(self, train_keys, val_keys):
        """Pools for both partitions, the external pool, and the task lists it allows."""
        num_channels = len(self.dataset_json.get("channel_names", self.dataset_json.get("modality", {0: 0})))
        choice = resolve_external_pool(self.preprocessed_dataset_folder_base, self.spatial_dims,
                                       num_channels=num_channels)
        self.print_to_log_file(choice.description)
        self.inter_blend_pool = choice.record()  # kept in validation/summary.json
        if choice.fallback and not getattr(self, "_fallback_warned", False):  # 2D stand-in: as loud as 3D's drop
            from nnunet_anomaly.nnunet.sources import builtin_pool_warning
            self._announce(builtin_pool_warning(type(self).__name__, self.fold, len(choice.pool),
                                                self.preprocessed_dataset_folder_base))
            self._fallback_warned = True
        if choice.pool is None:
            # against the fold's own tasks: this runs again for the final validation, on the reduced lists
            planned_train, planned_val = list(self._fold_tasks[0]), list(self._fold_tasks[1])
            self.train_task_names = [t for t in planned_train if t != "inter_blend"]
            self.val_task_names = [t for t in planned_val if t != "inter_blend"]
            if not self.train_task_names:
                raise ValueError(f"{type(self).__name__} fold {self.fold} trains only inter_blend, which needs an "
                                 f"external image pool, and none is configured: "
                                 f"{pool_instructions(self.preprocessed_dataset_folder_base)}. Without it this "
                                 f"fold cannot be trained, so the ensemble of all folds cannot be built either")
            self.dropped_tasks = {}
            if planned_train != self.train_task_names:
                self.dropped_tasks["train"] = ["inter_blend"]
            if planned_val != self.val_task_names:
                self.dropped_tasks["validation"] = ["inter_blend"]
            if self.dropped_tasks and not getattr(self, "_dropped_warned", False):  # once here, again at the end
                self._warn_dropped()
                self._dropped_warned = True
        train_pool = PreprocessedCasePool(self.preprocessed_dataset_folder, train_keys,
                                          spatial_dims=self.spatial_dims, dataset_class=self.dataset_class)
        val_pool = PreprocessedCasePool(self.preprocessed_dataset_folder, val_keys,
                                        spatial_dims=self.spatial_dims, dataset_class=self.dataset_class)
        return train_pool, val_pool, choice.pool

    def _warn_dropped(self):
        """Say loudly that inter_blend is dropped (:meth:`_announce`)."""
        self._announce(dropped_inter_blend_warning(type(self).__name__, self.fold, *self._fold_tasks,
                                                   preprocessed_dataset_folder=self.preprocessed_dataset_folder_base))

    def _announce(self, banner: str) -> None:
        """Write a warning banner to the training log and to stderr (where job schedulers keep errors)."""
        import sys

        for line in banner.splitlines():
            self.print_to_log_file(line, also_print_to_console=False)
        if self.local_rank == 0:
            print(banner, file=sys.stderr, flush=True)

    def _training_transforms(self, patch_size, rotation, deep_supervision_scales, mirror_axes, dummy_2d,
                             train_pool, inter_pool):
        from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
        from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

        if self.use_nnunet_augmentation:
            # through self: a subclass that overrides get_training_transforms gets its own pipeline
            base = self.get_training_transforms(
                patch_size, rotation, None, mirror_axes, dummy_2d,
                use_mask_for_norm=self.configuration_manager.use_mask_for_norm, is_cascaded=False,
                foreground_labels=None, regions=None, ignore_label=None)
            transforms = list(base.transforms)
        else:
            transforms = [MirrorTransform(allowed_axes=mirror_axes)] if mirror_axes else []
        if self.acquisition_variation is not None:  # before the anomaly: a healthy scan as another scanner shows it
            transforms.append(AcquisitionVariationTransform(self.acquisition_variation,
                                                            seed=self._stream_seed(self.acquisition_seed)))
        transforms.append(SyntheticAnomalyTransform(
            self.train_task_names, seed=self._stream_seed(self.anomaly_seed),
            intra_pool=train_pool, inter_pool=inter_pool, options=self._task_options(),
            p_anomaly=self.anomaly_probability))
        if deep_supervision_scales is not None:
            transforms.append(SoftDownsampleForDSTransform(deep_supervision_scales))
        return ComposeTransforms(transforms)

    def get_dataloaders(self):
        from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
        from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
        from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

        from nnunet_anomaly.nnunet.sampling import CanvasDataLoader

        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        patch_size = self.configuration_manager.patch_size
        ds_scales = self._get_deep_supervision_scales()
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        train_keys, val_keys = self.do_split()
        train_pool, val_pool, inter_pool = self._resolve_tasks_and_pools(train_keys, val_keys)
        self.print_to_log_file(f"training tasks {self.train_task_names}, validation tasks {self.val_task_names}")

        transforms = self._training_transforms(patch_size, rotation, ds_scales, mirror_axes, dummy_2d,
                                               train_pool, inter_pool)
        dataset_tr = self.dataset_class(self.preprocessed_dataset_folder, train_keys)
        loader = CanvasDataLoader(dataset_tr, self.batch_size, initial_patch_size, patch_size, self.label_manager,
                                  oversample_foreground_percent=self.oversample_foreground_percent,
                                  sampling_probabilities=None, pad_sides=None, transforms=transforms,
                                  probabilistic_oversampling=self.probabilistic_oversampling)
        workers = get_allowed_n_proc_DA()
        if workers == 0:
            train_gen = SingleThreadedAugmenter(loader, None)
        else:
            train_gen = NonDetMultiThreadedAugmenter(data_loader=loader, transform=None, num_processes=workers,
                                                     num_cached=max(6, workers // 2), seeds=None,
                                                     pin_memory=self.device.type == 'cuda', wait_time=0.002)

        self._validation_samples = self._build_validation_samples(val_keys, val_pool, inter_pool)
        rank, world = (dist.get_rank(), dist.get_world_size()) if self.is_ddp else (0, 1)
        mine = self._validation_samples[rank::world]
        val_gen = ValidationBatches(mine, self.batch_size,
                                    SoftDownsampleForDSTransform(ds_scales) if ds_scales is not None else None)
        self._validation_keys = list(range(len(self._validation_samples)))[rank::world]
        self.num_val_iterations_per_epoch = len(val_gen)
        _ = next(train_gen)
        return train_gen, val_gen

    def _build_validation_samples(self, val_keys, val_pool, inter_pool) -> List[ValidationSample]:
        """The fixed per-epoch validation patches (identical on every rank; each rank scores a share)."""
        from tqdm import tqdm

        patch = [int(p) for p in self.configuration_manager.patch_size]
        channels = len(self.dataset_json.get("channel_names", {0: 0}))
        bytes_per_sample = (channels + 2) * int(np.prod(patch)) * 4
        max_pairs = max(1, int(self.validation_memory_mb * 2 ** 20 // bytes_per_sample))
        if self.validation_max_pairs is not None:
            max_pairs = min(max_pairs, int(self.validation_max_pairs))
        pairs = select_pairs(val_keys, self._validation_tasks(), max_pairs, self.validation_seed)
        healthy = sum(task == HEALTHY for _, task in pairs)
        self.print_to_log_file(f"fixed synthetic validation set: {len(pairs)} (case, task) patches of {patch}, "
                               f"{healthy} of them anomaly-free (seed {self.validation_seed}, budget "
                               f"{self.validation_memory_mb} MB)")
        samples, cached = [], (None, None)
        options = self._task_options()
        for case, task in tqdm(pairs, desc="synthetic validation set", disable=self.local_rank != 0):
            if cached[0] != case:
                cached = (case, val_pool.load(case))
            data, seg = cached[1]
            seed = pair_seed(self.validation_seed, case, task)
            rng = np.random.default_rng(seed.spawn(1)[0])
            image, foreground = case_view(data, seg, self.spatial_dims, rng if self.spatial_dims == 2 else None)
            # the training canvas (the whole image centred when it fits, else a patch over the foreground),
            # and the task applied to it, as training applies it to its patch
            img_c, fg_p = validation_canvas(image, foreground, patch, rng)
            img_p, lab_p, mask_p = make_validation_image(img_c, fg_p, task, seed, intra_pool=val_pool,
                                                         inter_pool=inter_pool, options=options)
            lab_p = lab_p[None]
            # an anomalous patch is scored everywhere; a healthy one on its foreground (healthy tissue)
            scored = np.flatnonzero(fg_p) if task == HEALTHY else None
            n = mask_p.size if scored is None else scored.size
            if n > self.max_scored_voxels_per_sample:
                keep = np.sort(rng.choice(n, self.max_scored_voxels_per_sample, replace=False))
                scored = keep if scored is None else scored[keep]
            samples.append(ValidationSample(case, task, img_p.astype(np.float32), lab_p.astype(np.float32),
                                            mask_p.astype(bool), scored))
        self.print_to_log_file(f"fixed synthetic validation set digest {_validation_digest(samples)} (the same on "
                               "every rank, every epoch and after resuming)")
        return samples

    def _validation_tasks(self) -> list:
        """The validation tasks, and :data:`HEALTHY` when the validation includes healthy anatomy."""
        return self.val_task_names + ([HEALTHY] if self.healthy_validation else [])

    # ------------------------------------------------------------------------------------------ loss
    def _build_loss(self):
        loss = self.loss_class()
        if self.enable_deep_supervision:
            num_outputs = len(self._get_deep_supervision_scales())
            loss = with_deep_supervision(loss, num_outputs, ddp=self.is_ddp and not self._do_i_compile())
        return loss

    # ------------------------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        if not self.paper_schedule and self.adamw_learning_rate is None:
            return super().configure_optimizers()
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=0.0)
        if self.paper_schedule:
            return optimizer, WarmupExponentialFloorLR(optimizer, peak_lr=self.initial_lr)
        from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def on_train_epoch_start(self):
        if not self.paper_schedule:
            return super().on_train_epoch_start()
        self.network.train()
        self._global_step = self.current_epoch * self.num_iterations_per_epoch
        self.lr_scheduler.step(self._global_step)
        self.print_to_log_file('')
        self.print_to_log_file(f'Epoch {self.current_epoch}')
        self.print_to_log_file(f"Current learning rate (step {self._global_step}): "
                               f"{self.optimizer.param_groups[0]['lr']:.3g}")
        self.logger.log('lrs', self.optimizer.param_groups[0]['lr'], self.current_epoch)

    def train_step(self, batch: dict) -> dict:
        if self.paper_schedule:  # the reference steps its schedule every iteration
            self.lr_scheduler.step(self._global_step)
            self._global_step += 1
        if self._bfloat16:
            with torch.autocast('cpu', dtype=torch.bfloat16):
                return super().train_step(batch)
        return super().train_step(batch)

    # ------------------------------------------------------------------------------------ validation
    def validation_step(self, batch: dict) -> dict:
        data = batch['data'].to(self.device, non_blocking=True)
        target = batch['target']
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        from torch import autocast
        from nnunetv2.utilities.helpers import dummy_context
        with autocast(self.device.type, enabled=True) if self.device.type == 'cuda' else dummy_context():
            output = self.network(data)
            loss = self.loss(output, target)
        highest = output[0] if self.enable_deep_supervision else output
        probabilities = output_to_map(highest, self.output_activation)[:, 0].cpu().numpy()
        scores, targets, tasks = [], [], []
        for j, k in enumerate(batch['keys']):
            sample = self._validation_samples[self._validation_keys[k]]
            s, m = probabilities[j].ravel(), sample.mask.ravel()
            if sample.scored is not None:
                s, m = s[sample.scored], m[sample.scored]
            scores.append(s.astype(np.float32))
            targets.append(m)
            tasks.append(sample.task)
        return {'loss': float(loss.detach().cpu()), 'scores': scores, 'targets': targets, 'tasks': tasks}

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        scores, targets = {}, {}
        for out in val_outputs:
            for task, s, t in zip(out['tasks'], out['scores'], out['targets']):
                scores.setdefault(task, []).append(s)
                targets.setdefault(task, []).append(t)
        losses = [out['loss'] for out in val_outputs]
        if self.is_ddp:
            world = dist.get_world_size()
            scores, targets = gather_scores(scores, targets, world, dist.all_gather_object)
            gathered = [None] * world
            dist.all_gather_object(gathered, losses)
            losses = [x for rank_losses in gathered for x in rank_losses]
        summary = summarise(scores, targets, self.val_task_names)
        selection = 'pooled_with_healthy' if self.selection_metric == 'ap_with_healthy' else 'pooled'
        if selection not in summary:  # a validation set too small to hold an anomaly-free patch
            self.print_to_log_file("WARNING: no anomaly-free validation patch; selecting on the AP without them")
            selection = 'pooled'
        selected = summary[selection]['ap']
        if not np.isfinite(selected):
            self.print_to_log_file("WARNING: no anomalous voxel in the synthetic validation patches; AP logged as 0")
            selected = 0.0
        # the selection metric's sampling error on this set (patches resampled): how large a difference it decides
        chosen = self.val_task_names + ([HEALTHY] if selection == 'pooled_with_healthy' else [])
        spread = bootstrap_ap_spread([s for t in chosen for s in scores.get(t, [])],
                                     [m for t in chosen for m in targets.get(t, [])], seed=self.validation_seed)
        self.logger.log('val_ap_bootstrap_sd', spread, self.current_epoch)
        per_task_ap = {t: summary['per_task'][t]['ap'] for t in self.val_task_names}
        per_task_auroc = {t: summary['per_task'][t]['auroc'] for t in self.val_task_names}
        healthy = summary.get('healthy', {})
        # nnU-Net keeps the EMA of 'mean_fg_dice' and saves checkpoint_best.pth on it: here the selection metric
        self.logger.log('mean_fg_dice', float(selected), self.current_epoch)
        self.logger.log('val_ap', summary['pooled']['ap'], self.current_epoch)
        self.logger.log('val_ap_with_healthy', summary.get('pooled_with_healthy', {}).get('ap', float('nan')),
                        self.current_epoch)
        self.logger.log('val_healthy_fp', {k[len('score_exceeded_by_'):]: v for k, v in healthy.items()
                                           if k.startswith('score_exceeded_by_')}, self.current_epoch)
        self.logger.log('dice_per_class_or_region', [per_task_ap[t] for t in self.val_task_names],
                        self.current_epoch)
        self.logger.log('val_losses', float(np.mean(losses)) if losses else float('nan'), self.current_epoch)
        self.logger.log('val_auroc', summary['pooled']['auroc'], self.current_epoch)
        self.logger.log('val_ap_per_task', per_task_ap, self.current_epoch)
        self.logger.log('val_auroc_per_task', per_task_auroc, self.current_epoch)

    def on_epoch_end(self):
        self.logger.log('epoch_end_timestamps', time(), self.current_epoch)
        log = self.logger.get_value
        self.print_to_log_file('train_loss', np.round(log('train_losses', step=-1), decimals=4))
        self.print_to_log_file('val_loss', np.round(log('val_losses', step=-1), decimals=4))
        self.print_to_log_file('synthetic validation pixel AP (pooled)', np.round(log('val_ap', step=-1), 4),
                               'with healthy negatives', np.round(log('val_ap_with_healthy', step=-1), 4),
                               'AUROC', np.round(log('val_auroc', step=-1), 4),
                               f"(selection metric's sampling error: SD {log('val_ap_bootstrap_sd', step=-1):.4f} "
                               f"over resampled patches)")
        if log('val_healthy_fp', step=-1):
            self.print_to_log_file('healthy voxels: score exceeded by', {k: round(float(v), 4) for k, v in
                                                                         log('val_healthy_fp', step=-1).items()})
        self.print_to_log_file('AP per task', {t: round(float(v), 4) for t, v in log('val_ap_per_task', -1).items()})
        self.print_to_log_file(f"Epoch time: {np.round(log('epoch_end_timestamps', -1) - log('epoch_start_timestamps', -1), 2)} s")
        if (self.current_epoch + 1) % self.save_every == 0 and self.current_epoch != (self.num_epochs - 1):
            self.save_checkpoint(os.path.join(self.output_folder, 'checkpoint_latest.pth'))
        ema = log('ema_fg_dice', step=-1)
        if self._best_ema is None or ema > self._best_ema:
            self._best_ema = ema
            self.print_to_log_file(f"New best EMA of the synthetic validation {self._selection_name()}: "
                                   f"{np.round(self._best_ema, 4)}")
            self.save_checkpoint(os.path.join(self.output_folder, 'checkpoint_best.pth'))
        if self.local_rank == 0:
            self.logger.plot_progress_png(self.output_folder)
        self.current_epoch += 1

    # ------------------------------------------------------------------------------ checkpoints, resuming
    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written atomically: a run killed while saving keeps the previous file whole."""
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)
        from nnunet_anomaly._io import atomic_path
        with atomic_path(filename) as tmp:
            super().save_checkpoint(str(tmp))

    def _continuing(self) -> bool:
        """True under ``nnUNetv2_train --c`` (nnU-Net passes the flag to the trainer through its plans)."""
        return bool(self.plans_manager.plans.get("continue_training", False))

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        if isinstance(filename_or_checkpoint, str) and self._continuing() \
                and os.path.basename(filename_or_checkpoint) == "checkpoint_latest.pth":
            # nnU-Net prefers latest (saved every save_every epochs) to best; both hold the whole state,
            # and the newer loses fewer epochs and keeps checkpoint_best the best (see resume.py)
            from nnunet_anomaly.nnunet.resume import newest_resumable
            newest = newest_resumable(os.path.dirname(filename_or_checkpoint))
            if newest is not None and newest != filename_or_checkpoint:
                self.print_to_log_file(f"Resuming from {os.path.basename(newest)}, which is newer than "
                                       "checkpoint_latest.pth", also_print_to_console=True)
                filename_or_checkpoint = newest
        super().load_checkpoint(filename_or_checkpoint)
        if isinstance(filename_or_checkpoint, str):
            self._loaded_checkpoint = os.path.basename(filename_or_checkpoint)
            self.print_to_log_file(f"Restored {self._loaded_checkpoint}: {self.current_epoch} epochs trained, "
                                   f"best moving average {self._best_ema}")

    def on_train_start(self):
        if self.current_epoch > 0:  # resumed: fresh random streams rather than a replay of epoch 0's
            self._seed_global_generators()
        super().on_train_start()

    def _selection_name(self) -> str:
        return "AP with healthy negatives" if self.selection_metric == "ap_with_healthy" else "AP"

    def should_stop_early(self) -> bool:
        """True when the EMA of the selection metric has not improved for ``early_stopping_patience_steps`` steps."""
        if self.early_stopping_patience_steps is None:
            return False
        ema = self.logger.get_value('ema_fg_dice', step=None)
        if not ema:
            return False
        best_epoch = int(np.argmax(ema))
        patience = steps_to_epochs(self.early_stopping_patience_steps, self.num_iterations_per_epoch)
        return len(ema) - 1 - best_epoch >= patience

    def run_training(self):
        # nnU-Net's loop, plus the early-stopping check after each epoch; a finished run stays finished
        from nnunet_anomaly._io import remove_stale_temporaries
        from nnunet_anomaly.nnunet.resume import finished_reason
        if self.local_rank == 0:
            for path in remove_stale_temporaries(self.output_folder):
                self.print_to_log_file(f"removed {path.name}, left by a run killed while writing it")
        reason = finished_reason(self.current_epoch, self.num_epochs, self.should_stop_early())
        if reason is not None:
            self._finish_without_training(reason)
            return
        self.on_train_start()
        for _ in range(self.current_epoch, self.num_epochs):
            self.on_epoch_start()
            self.on_train_epoch_start()
            train_outputs = [self.train_step(next(self.dataloader_train))
                             for _ in range(self.num_iterations_per_epoch)]
            self.on_train_epoch_end(train_outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val_outputs = [self.validation_step(next(self.dataloader_val))
                               for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(val_outputs)
            self.on_epoch_end()
            if self.should_stop_early():
                if self.early_stopping_patience_steps is not None:  # else a subclass's own reason, logged by it
                    self.print_to_log_file(f"Early stopping: no improvement of the EMA validation "
                                           f"{self._selection_name()} for {self.early_stopping_patience_steps} steps")
                break
        self.on_train_end()

    def _finish_without_training(self, reason: str):
        """A resumed run with nothing left to train: keep checkpoint_final; write it only if a kill prevented that."""
        self._finished_before_start = reason
        self.print_to_log_file(f"This fold is already finished ({reason}); nothing is trained "
                               f"(restored from {self._loaded_checkpoint or 'no checkpoint'})", also_print_to_console=True)
        if self.local_rank != 0:
            return
        final = os.path.join(self.output_folder, 'checkpoint_final.pth')
        if not os.path.isfile(final):  # killed between the last epoch and checkpoint_final
            self.current_epoch -= 1  # nnU-Net's save_checkpoint stores current_epoch + 1
            self.save_checkpoint(final)
            self.current_epoch += 1
        latest = os.path.join(self.output_folder, 'checkpoint_latest.pth')
        if os.path.isfile(latest):
            os.remove(latest)

    def perform_actual_validation(self, save_probabilities: bool = False):
        """Predict the full synthetic validation images with nnU-Net's predictor; write ``validation/summary.json``."""
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
        from nnunet_anomaly._io import remove_stale_temporaries, write_json
        from nnunet_anomaly.nnunet.resume import completed_summary

        out_folder = os.path.join(self.output_folder, 'validation')
        done = completed_summary(os.path.join(out_folder, 'summary.json'), type(self).__name__, self.fold) \
            if self._finished_before_start and not save_probabilities else None
        # under --c a finished fold keeps the complete summary of the checkpoint it stopped with (--val redoes it)
        if done is not None and done.get("checkpoint", {}).get("epochs_trained", self.current_epoch) == self.current_epoch:
            self.print_to_log_file("validation/summary.json of this finished fold is complete; it is kept (--val "
                                   "validates again)", also_print_to_console=True)
            return
        if self.local_rank == 0:
            remove_stale_temporaries(out_folder)
        self.set_deep_supervision_enabled(False)
        self.network.eval()
        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True,
                                    use_mirroring=bool(self.final_validation_mirroring),
                                    perform_everything_on_device=self.device.type == 'cuda', device=self.device,
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=False)
        predictor.manual_initialization(self.network, self.plans_manager, self.configuration_manager, None,
                                        self.dataset_json, type(self).__name__, self.inference_allowed_mirroring_axes)
        train_keys, val_keys = self.do_split()
        train_pool, val_pool, inter_pool = self._resolve_tasks_and_pools(train_keys, val_keys)
        cases = sorted(val_keys)
        if self.final_validation_max_cases is not None:
            cases = cases[:int(self.final_validation_max_cases)]
        rank, world = (dist.get_rank(), dist.get_world_size()) if self.is_ddp else (0, 1)
        os.makedirs(out_folder, exist_ok=True)
        scores, targets = {}, {}
        # like nnU-Net's predictor: at most nnUNet_def_n_proc torch threads on the CPU
        from nnunetv2.configuration import default_num_processes
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, min(threads, default_num_processes)))
        seen_cases = sorted(train_keys)[:int(self.final_validation_seen_cases)]
        seen_scores = {}
        try:
            self._predict_validation_cases(cases[rank::world], predictor, val_pool, inter_pool, out_folder,
                                           save_probabilities, scores, targets)
            for case in seen_cases[rank::world]:  # healthy tissue the fold trained on, for comparison
                image, foreground = self._full_case(train_pool, case, pair_seed(self.validation_seed, case, HEALTHY))
                seen_scores.setdefault(HEALTHY, []).append(self._predict_full(predictor, image)[foreground])
        finally:
            torch.set_num_threads(threads)
        if self.is_ddp:
            scores, targets = gather_scores(scores, targets, world, dist.all_gather_object)
            seen_scores, _ = gather_scores(seen_scores, {HEALTHY: [np.zeros(a.size, bool) for a in
                                                                   seen_scores.get(HEALTHY, [])]}, world,
                                           dist.all_gather_object)
        if self.local_rank == 0:
            summary = summarise(scores, targets, self.val_task_names)
            groups = self.dataset_json.get("case_groups") or {}
            unseen = bool(groups) and not ({groups.get(c) for c in train_keys} & {groups.get(c) for c in val_keys})
            summary["healthy_training_images"] = healthy_false_positives(
                np.concatenate(seen_scores[HEALTHY]) if seen_scores.get(HEALTHY) else np.zeros(0))
            summary["healthy_training_images"]["cases"] = seen_cases
            summary["validation_anatomy"] = {
                "groups": sorted({str(groups.get(c)) for c in val_keys}) if groups else None,
                "unseen_in_training": unseen,
                "note": "validation cases share no group (subject, site, scanner) with the training cases" if unseen
                        else "no case_groups in dataset.json, or groups shared: validation images are held out, "
                             "their anatomy may not be"}
            summary.update({
                "description": "pixel AP and AUROC of the full synthetic validation images (validation tasks "
                               "applied to the validation partition with a fixed seed), in preprocessed space; "
                               "pooled_with_healthy adds the foreground of every validation image as it is "
                               "(negatives), healthy gives the scores that 1 % / 0.1 % of those voxels exceed; "
                               "healthy_training_images the same for training images (tissue the fold saw)",
                "selection_metric": self.selection_metric,
                "trainer": type(self).__name__, "fold": self.fold, "train_tasks": self.train_task_names,
                "val_tasks": self.val_task_names, "cases": cases, "validation_seed": self.validation_seed,
                "test_time_mirroring": bool(self.final_validation_mirroring),
                "output_activation": self.output_activation,
                "dropped_tasks": self.dropped_tasks,
                "inter_blend_pool": getattr(self, "inter_blend_pool", None),
                "checkpoint": {"file": self._loaded_checkpoint or "checkpoint_final.pth",
                               "epochs_trained": int(self.current_epoch)},
            })
            write_json(os.path.join(out_folder, 'summary.json'), _json_safe(summary))
            with_healthy = summary.get('pooled_with_healthy', {}).get('ap', float('nan'))
            self.print_to_log_file(f"Synthetic validation: pooled AP {summary['pooled']['ap']:.4f} "
                                   f"({with_healthy:.4f} with healthy negatives), AUROC "
                                   f"{summary['pooled']['auroc']:.4f}; healthy voxels of the validation images "
                                   f"({'unseen anatomy' if unseen else 'held-out images'}): "
                                   f"{_healthy_line(summary.get('healthy'))}; of training images: "
                                   f"{_healthy_line(summary['healthy_training_images'])}", also_print_to_console=True)
            if self.dropped_tasks:  # again at the very end: the banner of the start has long scrolled away
                self._warn_dropped()
        self.set_deep_supervision_enabled(True)
        compute_gaussian.cache_clear()

    def _predict_validation_cases(self, cases, predictor, val_pool, inter_pool, out_folder, save_probabilities,
                                  scores, targets):
        """Apply each validation task to each full case, predict it, and collect scores and targets."""
        from nnunet_anomaly._io import atomic_path

        options = self._task_options()
        for case in cases:
            for task in self._validation_tasks():
                seed = pair_seed(self.validation_seed, case, task)
                rng = np.random.default_rng(seed.spawn(1)[0])
                image, foreground = self._full_case(val_pool, case, seed)
                anomalous, _, mask = make_validation_image(image, foreground, task, seed, intra_pool=val_pool,
                                                           inter_pool=inter_pool, options=options)
                probabilities = self._predict_full(predictor, anomalous)
                s, m = probabilities.ravel(), mask.ravel()
                if task == HEALTHY:  # healthy tissue: the foreground only
                    s, m = s[foreground.ravel()], m[foreground.ravel()]
                if s.size > self.max_scored_voxels_per_image:
                    keep = np.sort(rng.choice(s.size, self.max_scored_voxels_per_image, replace=False))
                    s, m = s[keep], m[keep]
                scores.setdefault(task, []).append(s.astype(np.float32))
                targets.setdefault(task, []).append(m)
                self.print_to_log_file(f"validated {case} / {task}: {int(mask.sum())} anomalous voxels")
                if save_probabilities:
                    with atomic_path(os.path.join(out_folder, f"{case}__{task}.npz")) as tmp:
                        np.savez_compressed(tmp, probabilities=probabilities.astype(np.float16),
                                            anomaly_mask=mask, image=anomalous.astype(np.float16))


    def _full_case(self, pool, case, seed):
        """A whole case of `pool` as the final validation sees it: (image, foreground); a 2D slice drawn with `seed`."""
        data, seg = pool.load(case)
        rng = np.random.default_rng(seed.spawn(1)[0])
        return case_view(data, seg, self.spatial_dims, rng if self.spatial_dims == 2 else None)

    def _predict_full(self, predictor, image: np.ndarray) -> np.ndarray:
        """Sliding-window probabilities of a whole channel-first image, shaped like its spatial axes."""
        network_input = image[:, None] if self.spatial_dims == 2 else image
        with torch.no_grad():
            logits = predictor.predict_sliding_window_return_logits(torch.from_numpy(network_input))
        return output_to_map(logits.cpu(), self.output_activation)[0].numpy().reshape(image.shape[1:])


def _validation_digest(samples) -> str:
    """A short fingerprint of the fixed validation patches (cases, tasks, images, masks, scored voxels)."""
    import hashlib

    digest = hashlib.blake2b(digest_size=8)
    for sample in samples:
        digest.update(f"{sample.case}|{sample.task}|".encode())
        for array in (sample.image, sample.mask, sample.scored):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _cpu_has_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively on this CPU (else bfloat16 is emulated, slowly)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private probe: absent in another torch build means no
        return False


def _healthy_line(healthy) -> str:
    if not healthy:
        return "not validated"
    return ", ".join(f"{k[len('score_exceeded_by_'):]} exceed {v:.4f}" for k, v in healthy.items()
                     if k.startswith("score_exceeded_by_"))


def _json_safe(value):
    """NaN -> None so that summary.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
