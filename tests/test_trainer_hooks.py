"""Trainer hooks that nnU-Net users rely on: a dropped task is loud, subclasses' augmentation is honoured."""
from types import SimpleNamespace

import numpy as np
import pytest

import nnunet_anomaly.nnunet.trainer as trainer_module
from nnunet_anomaly.folds import fold_split
from nnunet_anomaly.nnunet.trainer import check_fold
from nnunet_anomaly.tasks import TASK_NAMES
from nnunet_anomaly.trainers import AnomalyTaskTrainer, AnomalyTaskTrainer_nnUNetDA, AnomalyTaskTrainer_T2

INTER = TASK_NAMES.index("inter_blend")


def _bare(cls, fold, tmp_path, monkeypatch):
    """A 3D trainer with just what the pool rule needs, and no external pool anywhere."""
    monkeypatch.delenv("nnunet_anomaly_pool", raising=False)
    monkeypatch.setattr(trainer_module, "PreprocessedCasePool", lambda *args, **kwargs: "partition pool")
    trainer = cls.__new__(cls)
    trainer.fold = fold
    trainer.task_split = check_fold(cls.__name__, fold, cls.num_train_tasks)
    trainer.train_task_names = [TASK_NAMES[i] for i in trainer.task_split.train_tasks]
    trainer.val_task_names = [TASK_NAMES[i] for i in trainer.task_split.val_tasks]
    trainer._fold_tasks = (list(trainer.train_task_names), list(trainer.val_task_names))
    trainer.dropped_tasks = {}
    trainer.spatial_dims = 3
    trainer.dataset_json = {"channel_names": {"0": "T1"}}
    trainer.preprocessed_dataset_folder_base = str(tmp_path / "Dataset501_Brain")
    trainer.preprocessed_dataset_folder = str(tmp_path / "Dataset501_Brain" / "nnUNetPlans_3d_fullres")
    trainer.dataset_class = object
    trainer.local_rank = 0
    trainer.logged = []
    trainer.print_to_log_file = lambda *args, **kwargs: trainer.logged.append(" ".join(map(str, args)))
    return trainer


def test_t2_fold_that_trains_inter_blend_says_what_the_fold_now_means(tmp_path, monkeypatch, capsys):
    fold = next(f for f in range(10) if INTER in fold_split(f, 2).train_tasks)
    trainer = _bare(AnomalyTaskTrainer_T2, fold, tmp_path, monkeypatch)
    planned = list(trainer.train_task_names)
    trainer._resolve_tasks_and_pools(["a"], ["b"])
    assert "inter_blend" not in trainer.train_task_names + trainer.val_task_names
    assert trainer.dropped_tasks["train"] == ["inter_blend"]
    err = capsys.readouterr().err  # stderr: where SLURM and friends keep what went wrong
    assert f"inter_blend is DROPPED from AnomalyTaskTrainer_T2 fold {fold}" in err
    assert f"trains on {trainer.train_task_names} instead of {planned}" in err
    assert "export nnunet_anomaly_pool=" in err and "anomaly_pool" in err
    assert any("inter_blend is DROPPED" in line for line in trainer.logged)  # and in the training log


def test_t1_fold_that_only_validates_inter_blend_records_it(tmp_path, monkeypatch, capsys):
    trainer = _bare(AnomalyTaskTrainer, 0, tmp_path, monkeypatch)
    trainer._resolve_tasks_and_pools(["a"], ["b"])
    assert trainer.dropped_tasks == {"validation": ["inter_blend"]}
    assert "validates ['sink', 'source', 'smooth_intensity'] instead of" in capsys.readouterr().err
    trainer._resolve_tasks_and_pools(["a"], ["b"])  # again for the final validation: still recorded
    assert trainer.dropped_tasks == {"validation": ["inter_blend"]}


def test_the_fold_that_trains_only_inter_blend_stops_with_directions(tmp_path, monkeypatch):
    trainer = _bare(AnomalyTaskTrainer, INTER, tmp_path, monkeypatch)
    with pytest.raises(ValueError, match=r"fold 1 trains only inter_blend.*export nnunet_anomaly_pool=.*"
                                         r"ensemble of all folds cannot be built"):
        trainer._resolve_tasks_and_pools(["a"], ["b"])


def test_with_a_pool_nothing_is_dropped(tmp_path, monkeypatch, capsys):
    trainer = _bare(AnomalyTaskTrainer, INTER, tmp_path, monkeypatch)
    pool = tmp_path / "pool"
    (pool / "images").mkdir(parents=True)
    np.save(pool / "images" / "patch.npy", np.ones((1, 8, 8, 8), np.float32))
    monkeypatch.setenv("nnunet_anomaly_pool", str(pool))
    _, _, inter_pool = trainer._resolve_tasks_and_pools(["a"], ["b"])
    assert inter_pool is not None and trainer.train_task_names == ["inter_blend"] and trainer.dropped_tasks == {}
    assert "DROPPED" not in capsys.readouterr().err


class _Marker:
    """Stands in for a user's own augmentation."""

    def __call__(self, **data):
        return data


def test_nnunet_augmentation_variant_honours_a_subclass_override():
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

    from nnunet_anomaly.nnunet.transforms import SyntheticAnomalyTransform

    class MyAugmentation(AnomalyTaskTrainer_nnUNetDA):
        @staticmethod
        def get_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                    do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                    foreground_labels=None, regions=None, ignore_label=None):
            return ComposeTransforms([_Marker()])

    trainer = MyAugmentation.__new__(MyAugmentation)
    trainer.fold, trainer.current_epoch, trainer.spatial_dims = 0, 0, 3
    trainer.train_task_names = ["sink"]
    trainer.configuration_manager = SimpleNamespace(use_mask_for_norm=[False])
    pipeline = trainer._training_transforms((16, 16, 16), ((0, 0),) * 3, None, (2,), False, None, None)
    assert isinstance(pipeline.transforms[0], _Marker)  # the subclass's augmentation, then the anomaly
    assert isinstance(pipeline.transforms[-1], SyntheticAnomalyTransform)


def test_2d_fallback_to_the_builtin_images_is_loud_and_recorded(tmp_path, monkeypatch, capsys):
    """Issue 16 item 5: without a pool, 2D inter_blend warns like 3D's drop and validation/summary.json records it."""
    trainer = _bare(AnomalyTaskTrainer, INTER, tmp_path, monkeypatch)
    trainer.spatial_dims = 2
    _, _, inter_pool = trainer._resolve_tasks_and_pools(["a"], ["b"])
    assert inter_pool is not None and trainer.train_task_names == ["inter_blend"]
    err = capsys.readouterr().err
    assert "WARNING: AnomalyTaskTrainer fold 1: inter_blend draws from 12 built-in natural images" in err
    assert "export nnunet_anomaly_pool=" in err and "DatasetPool_ImageNet" in err
    assert any("built-in natural images" in line for line in trainer.logged)
    assert trainer.inter_blend_pool["source"] == "builtin_natural_images"
    assert trainer.inter_blend_pool["images"] == 12 and trainer.inter_blend_pool["fallback"]
    trainer._resolve_tasks_and_pools(["a"], ["b"])  # again for the final validation: warned once
    assert "WARNING" not in capsys.readouterr().err


def test_a_configured_pool_is_recorded_without_a_warning(tmp_path, monkeypatch, capsys):
    trainer = _bare(AnomalyTaskTrainer, INTER, tmp_path, monkeypatch)
    trainer.spatial_dims = 2
    pool = tmp_path / "pool"
    (pool / "images").mkdir(parents=True)
    np.save(pool / "images" / "patch.npy", np.ones((8, 8), np.float32))
    monkeypatch.setenv("nnunet_anomaly_pool", str(pool))
    trainer._resolve_tasks_and_pools(["a"], ["b"])
    assert "WARNING" not in capsys.readouterr().err
    assert trainer.inter_blend_pool["source"] == "environment" and trainer.inter_blend_pool["images"] == 1


def test_the_reference_variant_is_the_reference(monkeypatch):
    """Issue 16 item 4: cubic resampling, MSE on the identity output, no test-time mirroring."""
    import torch

    from nnunet_anomaly.trainers import AnomalyTaskTrainer_paper, AnomalyTaskTrainer_reference

    reference = AnomalyTaskTrainer_reference.__new__(AnomalyTaskTrainer_reference)
    reference.task_options, reference.spatial_dims = None, 3
    assert reference._task_options().interpolation_order == 3
    assert reference._task_options().max_push == 5.0  # the brain preset otherwise
    reference.spatial_dims = 2
    assert reference._task_options().interpolation_order == 3 and reference._task_options().max_push == 10.0
    paper = AnomalyTaskTrainer_paper.__new__(AnomalyTaskTrainer_paper)
    paper.task_options, paper.spatial_dims = None, 3
    assert paper._task_options().interpolation_order == 1  # the other trainers keep theirs

    loss = AnomalyTaskTrainer_reference.loss_class()
    assert loss(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)).item() == 1.0  # no sigmoid (that gives 0.25)
    assert AnomalyTaskTrainer_reference.output_activation == "identity"
    assert AnomalyTaskTrainer_paper.output_activation == "sigmoid"

    def parent(self):
        self.inference_allowed_mirroring_axes = (2,)
        return "rotation", False, "patch", (2,)

    monkeypatch.setattr(AnomalyTaskTrainer, "configure_rotation_dummyDA_mirroring_and_inital_patch_size", parent)
    *_, mirror_axes = reference.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert mirror_axes == (2,)  # training keeps the left-right flip
    assert reference.inference_allowed_mirroring_axes is None  # prediction does not mirror
    assert not AnomalyTaskTrainer_reference.final_validation_mirroring
