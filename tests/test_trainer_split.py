"""Task folds on nnU-Net's splits_final.json blocks, fold checking, and the one-sigmoid-head labels."""
import itertools
import json

import pytest

from nnunet_anomaly.folds import fold_split, num_folds
from nnunet_anomaly.nnunet.trainer import as_single_sigmoid_head, check_fold
from nnunet_anomaly.trainers import (AnomalyTaskTrainer, AnomalyTaskTrainer_T2, AnomalyTaskTrainer_T3,
                                     AnomalyTaskTrainer_T4)

TRAINERS = [(AnomalyTaskTrainer, 1, 5), (AnomalyTaskTrainer_T2, 2, 10), (AnomalyTaskTrainer_T3, 3, 10),
            (AnomalyTaskTrainer_T4, 4, 5)]


def _fake_splits(sizes=(3, 2, 2, 3, 2)):
    cases = iter(f"case_{i:03d}" for i in range(sum(sizes)))
    blocks = [[next(cases) for _ in range(n)] for n in sizes]
    all_cases = [c for b in blocks for c in b]
    return [{"train": [c for c in all_cases if c not in b], "val": b} for b in blocks], blocks


def _bare_trainer(cls, fold, preprocessed_base):
    """A trainer with just what do_split needs (no plans, no network)."""
    trainer = cls.__new__(cls)
    trainer.task_split = check_fold(cls.__name__, fold, cls.num_train_tasks)
    trainer.fold = fold
    trainer.preprocessed_dataset_folder_base = str(preprocessed_base)
    trainer.preprocessed_dataset_folder = str(preprocessed_base / "nnUNetPlans_3d_fullres")
    trainer.dataset_class = object  # never used while splits_final.json exists
    trainer.print_to_log_file = lambda *args, **kwargs: None
    return trainer


@pytest.mark.parametrize("cls, num_train_tasks, expected_folds", TRAINERS)
def test_do_split_follows_folds_on_nnunet_blocks(tmp_path, cls, num_train_tasks, expected_folds):
    splits, blocks = _fake_splits()
    (tmp_path / "splits_final.json").write_text(json.dumps(splits))
    assert cls.num_train_tasks == num_train_tasks and num_folds(num_train_tasks) == expected_folds
    for fold in range(expected_folds):
        train, val = _bare_trainer(cls, fold, tmp_path).do_split()
        split = fold_split(fold, num_train_tasks)
        assert train == sorted(c for b in split.train_blocks for c in blocks[b])
        assert val == sorted(c for b in split.val_blocks for c in blocks[b])
        assert not set(train) & set(val) and len(train) + len(val) == 12
        assert len(train) >= len(val)  # the larger side always trains


def test_t1_fold_k_validates_on_block_k(tmp_path):
    splits, blocks = _fake_splits()
    (tmp_path / "splits_final.json").write_text(json.dumps(splits))
    for k in range(5):
        _, val = _bare_trainer(AnomalyTaskTrainer, k, tmp_path).do_split()
        assert val == sorted(blocks[k])


def test_bad_split_files_are_clear_errors(tmp_path):
    splits, _ = _fake_splits()
    (tmp_path / "splits_final.json").write_text(json.dumps(splits[:3]))
    with pytest.raises(ValueError, match="5-fold splits_final.json"):
        _bare_trainer(AnomalyTaskTrainer, 0, tmp_path).do_split()
    overlapping = [dict(s) for s in splits]
    overlapping[1] = {"train": [], "val": overlapping[1]["val"] + [splits[0]["val"][0]]}
    (tmp_path / "splits_final.json").write_text(json.dumps(overlapping))
    with pytest.raises(ValueError, match="disjoint"):
        _bare_trainer(AnomalyTaskTrainer, 0, tmp_path).do_split()


@pytest.mark.parametrize("cls, num_train_tasks, n", TRAINERS)
def test_out_of_range_fold_states_the_valid_range(cls, num_train_tasks, n):
    for bad in (n, -1, "all", "x"):
        with pytest.raises(ValueError, match=r"0\.\." + str(n - 1)):
            check_fold(cls.__name__, bad, num_train_tasks)
    # raised in __init__, before nnU-Net creates any folder
    with pytest.raises(ValueError, match=f"{cls.__name__}: fold {n} is out of range"):
        cls(plans={}, configuration="3d_fullres", fold=n, dataset_json={})


def test_single_sigmoid_head_labels():
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    original = {"labels": {"background": 0, "brain": 1}, "channel_names": {"0": "T1"}, "file_ending": ".nii.gz"}
    frozen = json.dumps(original)
    rewritten = as_single_sigmoid_head(original)
    assert json.dumps(original) == frozen, "the input dataset.json must not be modified"
    manager = LabelManager(rewritten["labels"], rewritten["regions_class_order"])
    assert manager.num_segmentation_heads == 1 and manager.has_regions
    import torch
    assert manager.inference_nonlin is torch.sigmoid
    assert as_single_sigmoid_head(rewritten) == rewritten  # idempotent (the --val / --c route)


def test_every_trainer_is_exported():
    import nnunet_anomaly.trainers as trainers
    exported = {name for name in trainers.__all__}
    defined = {name for name, obj in vars(trainers).items()
               if isinstance(obj, type) and issubclass(obj, AnomalyTaskTrainer)}
    assert exported == defined
    assert {"AnomalyTaskTrainer_ci", "AnomalyTaskTrainer_demo", "AnomalyTaskTrainer_MSE",
            "AnomalyTaskTrainer_nnUNetDA", "AnomalyTaskTrainer_PosEnc", "AnomalyTaskTrainer_paper"} <= exported
    for a, b in itertools.combinations(sorted(exported), 2):
        assert a != b


def test_subclass_init_with_star_args_breaks_nnunet_so_use_class_attributes():
    """nnU-Net builds my_init_kwargs from the __init__ signature: *args/**kwargs raise KeyError."""
    class Broken(AnomalyTaskTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    with pytest.raises(KeyError):
        Broken(plans={"continue_training": False}, configuration="3d_fullres", fold=0, dataset_json={})


def test_task_substitutions_and_init_settings(tmp_path, monkeypatch):
    import torch
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    architecture = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": {"n_stages": 2}, "_kw_requires_import": []}
    plans = {"dataset_name": "Dataset999_Toy", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
             "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "continue_training": False,
             "configurations": {"3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "patch_size": [16, 16, 16],
                                               "batch_size": 2, "spacing": [1, 1, 1], "architecture": architecture}}}
    dataset_json = {"labels": {"background": 0, "brain": 1}, "channel_names": {"0": "T1"}, "file_ending": ".nii.gz"}

    class AnomalyTaskTrainer_swapped(AnomalyTaskTrainer):
        task_substitutions = {"smooth_intensity": "local_blur"}
        cpu_threads = 1
        epochs = 3

    threads = torch.get_num_threads()
    try:
        trainer = AnomalyTaskTrainer_swapped(plans=plans, configuration="3d_fullres", fold=4,
                                             dataset_json=dataset_json, device=torch.device("cpu"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert trainer.train_task_names == ["local_blur"]
    assert trainer.val_task_names == ["intra_blend", "inter_blend", "sink", "source"]
    assert trainer.num_epochs == 3 and trainer.enable_deep_supervision
    assert trainer.label_manager.num_segmentation_heads == 1 and trainer.label_manager.has_regions
    assert dataset_json["labels"] == {"background": 0, "brain": 1}
