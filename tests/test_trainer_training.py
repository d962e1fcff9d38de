"""Train AnomalyTaskTrainer_ci on a tiny real dataset: NIfTI files -> nnU-Net planning -> training -> prediction."""
import json
import os

import pytest
from _helpers import nnunet_environment, plan_and_preprocess_3d_fullres, write_tiny_brain_dataset

pytestmark = pytest.mark.slow

DATASET_ID = 991
DATASET = "Dataset991_TinyBrain"
SHAPE = (30, 36, 30)
GROUPS = ["s0", "s0", "s1", "s1", "s2", "s2", "s3", "s3", "s4", "s5"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet")
    env = {"nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
           "nnUNet_results": str(root / "results"), "nnUNet_def_n_proc": "2"}
    with nnunet_environment(env):
        raw_folder = write_tiny_brain_dataset(root / "raw", DATASET, SHAPE)
        # six "subjects" (two cases each for the first four): group-aware blocks
        meta = json.loads((raw_folder / "dataset.json").read_text())
        meta["case_groups"] = {f"brain_{i:03d}": GROUPS[i] for i in range(10)}
        (raw_folder / "dataset.json").write_text(json.dumps(meta))
        plan_and_preprocess_3d_fullres(DATASET_ID)
        from nnunet_anomaly.nnunet.planning import add_preset, plans_file_of
        add_preset(plans_file_of(DATASET_ID), "3d_tiny")

        os.environ["nnUNet_n_proc_DA"] = "0"
        import torch
        from nnunet_anomaly.acquisition import AcquisitionOptions
        from nnunet_anomaly.trainers import AnomalyTaskTrainer_ci
        base = root / "preprocessed" / DATASET
        plans = json.loads((base / "nnUNetPlans.json").read_text())
        plans["continue_training"] = False
        dataset_json = json.loads((base / "dataset.json").read_text())
        trainer = AnomalyTaskTrainer_ci(plans=plans, configuration="3d_tiny", fold=0, dataset_json=dataset_json,
                                        device=torch.device("cpu"))
        # every acquisition change on every sample (an instance setting: the class stays findable by name)
        trainer.acquisition_variation = AcquisitionOptions(p_thick_slices=1, p_bias=1, p_gamma=1, p_noise=1, p_scale=1)
        trainer.run_training()
        trainer.perform_actual_validation(False)
        yield root, raw_folder, trainer


def test_training_writes_checkpoints_progress_and_summary(trained):
    root, _, trainer = trained
    fold = trainer.output_folder
    for name in ["checkpoint_final.pth", "checkpoint_best.pth", "progress.png", "validation/summary.json"]:
        assert os.path.isfile(os.path.join(fold, name)), name
    import torch
    checkpoint = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == "AnomalyTaskTrainer_ci"
    assert checkpoint["inference_allowed_mirroring_axes"] == (2,)  # SimpleITK arrays: x (left-right) is last
    logged = checkpoint["logging"]
    assert len(logged["mean_fg_dice"]) == 1 and 0.0 <= logged["mean_fg_dice"][0] <= 1.0
    assert set(logged["val_ap_per_task"][0]) == set(trainer.val_task_names)


def test_summary_scores_the_validation_partition_per_task(trained):
    root, _, trainer = trained
    summary = json.loads(open(os.path.join(trainer.output_folder, "validation", "summary.json")).read())
    splits = json.loads((root / "preprocessed" / DATASET / "splits_final.json").read_text())
    assert len(splits) == 5  # created on the fly, whole subjects per block (dataset.json case_groups)
    for block in splits:
        assert not {GROUPS[int(c[-3:])] for c in block["val"]} & {GROUPS[int(c[-3:])] for c in block["train"]}
    assert summary["cases"] == sorted(splits[0]["val"])  # T=1 fold 0 validates on block 0
    assert summary["validation_anatomy"]["unseen_in_training"] is True
    assert summary["validation_anatomy"]["groups"] == sorted({GROUPS[int(c[-3:])] for c in splits[0]["val"]})
    # healthy false positives of validation (unseen) and training (seen) images, side by side
    seen = summary["healthy_training_images"]
    assert len(seen["cases"]) == 2 and set(seen["cases"]) <= set(splits[0]["train"])
    assert seen["n_voxels"] > 0 and 0 <= seen["score_exceeded_by_1%"] <= 1
    assert summary["healthy"]["n_voxels"] > 0
    assert summary["train_tasks"] == ["intra_blend"]
    assert set(summary["per_task"]) == set(summary["val_tasks"]) and "intra_blend" not in summary["val_tasks"]
    # no external pool configured for 3D: inter_blend is dropped (and said so in the log)
    assert "inter_blend" not in summary["val_tasks"]
    log = open(next(os.path.join(trainer.output_folder, f) for f in os.listdir(trainer.output_folder)
                    if f.startswith("training_log"))).read()
    assert "inter_blend is DROPPED" in log
    assert summary["dropped_tasks"] == {"validation": ["inter_blend"]}  # recorded with the results, not only logged
    assert summary["checkpoint"]["epochs_trained"] == 1
    assert 0.0 <= summary["pooled"]["ap"] <= 1.0 and summary["pooled"]["n_anomalous_voxels"] > 0
    for task in summary["val_tasks"]:
        assert summary["per_task"][task]["n_anomalous_voxels"] > 0


def test_results_folder_predicts_one_sigmoid_channel(trained, tmp_path):
    root, raw_folder, trainer = trained
    results_dataset_json = json.loads(open(os.path.join(trainer.output_folder_base, "dataset.json")).read())
    assert results_dataset_json["labels"] == {"background": 0, "anomaly": [1, 2]}
    # nnU-Net's official plug-in route: a folder with a module that re-exports our trainers
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "nnunet_anomaly_plugin.py").write_text("from nnunet_anomaly.trainers import *\n")
    os.environ["nnUNet_extTrainer"] = str(plugin)
    try:
        import torch
        from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        predictor = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(trainer.output_folder_base, use_folds=(0,),
                                                       checkpoint_name="checkpoint_final.pth")
        image, properties = SimpleITKIO().read_images([str(raw_folder / "imagesTr" / "brain_000_0000.nii.gz")])
        _, probabilities = predictor.predict_single_npy_array(image, properties, None, None, True)
    finally:
        os.environ.pop("nnUNet_extTrainer", None)
    assert probabilities.shape == (1, *SHAPE)
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0


def test_training_samples_come_from_the_canvas_loader(trained):
    """Issue 16 item 1: the trainer's own loader centres what fits and never shifts the brain out."""
    from nnunet_anomaly.nnunet.sampling import CanvasDataLoader
    _, _, trainer = trained
    assert isinstance(trainer.dataloader_train.data_loader, CanvasDataLoader)
    anomalous = [s for s in trainer._validation_samples if s.task != "healthy"]
    assert anomalous and all(s.mask.any() for s in anomalous)  # made on the canvas: inside the patch
