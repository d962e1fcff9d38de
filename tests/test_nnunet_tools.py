"""nnU-Net's segmentation-only tools stop at once on anomaly models; ``nnunet_anomaly crossval`` does their job.

``nnUNetv2_accumulate_crossval_results``, ``nnUNetv2_find_best_configuration`` and
``nnUNetv2_determine_postprocessing`` score segmentations by Dice against ``labelsTr``; given an
anomaly model they used to copy nothing and fail deep inside (an IndexError after spawning worker
pools). Our start-up hook now stops them with one line naming what to use instead.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnunet_anomaly import cli
from nnunet_anomaly.nnunet.crossval import model_crossval
from nnunet_anomaly.nnunet.trainer import ANOMALY_LABELS
from nnunet_anomaly.plugin import _startup

BIN = Path(sys.executable).parent
DATASET = "Dataset994_Tools"


def _summary(fold, val_tasks, ap, *, healthy_ap=None, dropped=None, trainer="AnomalyTaskTrainer"):
    summary = {"trainer": trainer, "fold": fold, "train_tasks": ["t"], "val_tasks": val_tasks,
               "pooled": {"ap": ap, "auroc": 0.9}, "per_task": {t: {"ap": ap, "auroc": 0.9} for t in val_tasks}}
    if healthy_ap is not None:
        summary["pooled_with_healthy"] = {"ap": healthy_ap}
    if dropped:
        summary["dropped_tasks"] = dropped
    return summary


def _model(results, trainer="AnomalyTaskTrainer", configuration="3d_fullres", labels=ANOMALY_LABELS, folds=range(5),
           ap=0.5):
    """A trained model folder as nnUNetv2_train leaves it (dataset.json, plans.json, fold_X/validation/summary.json)."""
    folder = results / DATASET / f"{trainer}__nnUNetPlans__{configuration}"
    folder.mkdir(parents=True)
    dataset = {"labels": labels, "file_ending": ".nii.gz", "channel_names": {"0": "T1"}}
    if labels == ANOMALY_LABELS:
        dataset["regions_class_order"] = [1]
    (folder / "dataset.json").write_text(json.dumps(dataset))
    (folder / "plans.json").write_text(json.dumps({"dataset_name": DATASET, "image_reader_writer": "SimpleITKIO"}))
    tasks = ["intra_blend", "inter_blend", "sink", "source", "smooth_intensity"]
    for fold in folds:
        (folder / f"fold_{fold}" / "validation").mkdir(parents=True)
        val = [t for i, t in enumerate(tasks) if i != fold]
        summary = _summary(fold, val, ap + 0.01 * fold, healthy_ap=ap - 0.1 + 0.01 * fold, trainer=trainer)
        (folder / f"fold_{fold}" / "validation" / "summary.json").write_text(json.dumps(summary))
    return folder


def test_the_hook_recognises_our_labels():
    assert _startup.ANOMALY_LABELS == ANOMALY_LABELS  # the hook cannot import the trainer: the copy must match


@pytest.mark.parametrize("tool, args", [
    ("nnUNetv2_accumulate_crossval_results", ["994", "-c", "3d_fullres", "-tr", "AnomalyTaskTrainer"]),
    ("nnUNetv2_find_best_configuration", ["994", "-c", "2d", "3d_fullres", "-tr", "AnomalyTaskTrainer"]),
    ("nnUNetv2_determine_postprocessing", ["-i", "{model}", "-ref", "labelsTr"]),
])
def test_refusal_names_the_model_and_what_to_use(tmp_path, tool, args):
    model = _model(tmp_path)
    environ = {"nnUNet_results": str(tmp_path)}
    message = _startup.refusal([f"/venv/bin/{tool}", *[a.format(model=model) for a in args]], environ)
    assert message.startswith(f"{tool}: ") and "\n" not in message
    assert ("nnunet_anomaly crossval" in message) or ("nnunet_anomaly evaluate" in message)
    assert _startup.refusal([f"/venv/bin/{tool}", "-h"], environ) is None  # nnU-Net's help still shows


def test_segmentation_models_and_other_programs_are_left_alone(tmp_path):
    _model(tmp_path, trainer="nnUNetTrainer", labels={"background": 0, "liver": 1, "tumour": 2})
    environ = {"nnUNet_results": str(tmp_path)}
    for tool in ("nnUNetv2_accumulate_crossval_results", "nnUNetv2_find_best_configuration"):
        assert _startup.refusal([tool, "994", "-c", "3d_fullres"], environ) is None
    assert _startup.refusal(["nnUNetv2_train", "994", "3d_fullres", "0", "-tr", "AnomalyTaskTrainer"], environ) is None
    assert _startup.refusal(["python", "-c", "pass"], environ) is None


@pytest.mark.parametrize("tool, args", [
    ("nnUNetv2_accumulate_crossval_results", ["994", "-c", "3d_fullres", "-tr", "AnomalyTaskTrainer", "-f", "0"]),
    ("nnUNetv2_find_best_configuration", ["994", "-c", "3d_fullres", "-tr", "AnomalyTaskTrainer"]),
    ("nnUNetv2_determine_postprocessing", ["-i", "{model}", "-ref", "{model}"]),
])
def test_the_literal_nnunet_tools_stop_at_once_with_one_line(tmp_path, tool, args):
    """Runs nnU-Net's own console scripts of this environment (the hook is installed by pip install)."""
    model = _model(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("nnunet_anomaly_startup_hook", "PYTHONPATH")}
    env.update(nnUNet_results=str(tmp_path), nnUNet_raw=str(tmp_path / "raw"),
               nnUNet_preprocessed=str(tmp_path / "pre"))
    started = time.perf_counter()
    result = subprocess.run([str(BIN / tool), *[a.format(model=model) for a in args]], env=env, capture_output=True,
                            text=True, timeout=300)
    elapsed = time.perf_counter() - started
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tool}: "), result.stderr[-2000:]
    assert "nnunet-anomaly model" in lines[0] or "predictions of an nnunet-anomaly model" in lines[0]
    assert elapsed < 10  # before nnU-Net is even imported
    assert not list(model.glob("crossval_results_folds_*")) and not (model / "postprocessed").exists()


def test_crossval_summarises_the_folds(tmp_path, monkeypatch, capsys):
    folder = _model(tmp_path, ap=0.5)
    crossval = model_crossval(folder)
    assert crossval["folds"] == ["0", "1", "2", "3", "4"]  # T = 1: five folds, found from the summaries
    assert crossval["mean"]["selection_ap"] == pytest.approx(0.42)  # with the healthy negatives
    assert crossval["mean"]["pooled_ap"] == pytest.approx(0.52)
    assert crossval["per_task"]["sink"]["folds"] == ["0", "1", "3", "4"]  # validated where it was held out
    assert crossval["per_task"]["sink"]["ap"] == pytest.approx((0.5 + 0.51 + 0.53 + 0.54) / 4)
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    assert cli.main(["crossval", "-d", "994", "-c", "3d_fullres"]) == 0
    written = json.loads((folder / "crossval_results_folds_0_1_2_3_4" / "summary.json").read_text())
    assert written["mean"] == crossval["mean"]


def test_crossval_ranks_models_and_prints_the_inference_command(tmp_path, monkeypatch, capsys):
    _model(tmp_path, configuration="3d_fullres", ap=0.5)
    _model(tmp_path, configuration="3d_paper", ap=0.7)
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    assert cli.main(["crossval", "-d", "994", "-c", "3d_fullres", "3d_paper"]) == 0
    out = capsys.readouterr().out
    assert "best: AnomalyTaskTrainer__nnUNetPlans__3d_paper" in out
    assert "nnunet_anomaly predict -d 994 -c 3d_paper -tr AnomalyTaskTrainer -p nnUNetPlans -f 0 1 2 3 4" in out
    from nnunet_anomaly.nnunet.predict import configure_parser  # the printed command parses

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    parser.parse_args(out.split("predict with it:")[1].split()[2:])


def test_crossval_names_missing_folds_and_dropped_tasks(tmp_path, monkeypatch, capsys):
    folder = _model(tmp_path, folds=[0, 2, 3, 4])
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    assert cli.main(["crossval", "-d", "994", "-c", "3d_fullres"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fold(s) 1 have no validation/summary.json" in err[0]
    summary = json.loads((folder / "fold_0" / "validation" / "summary.json").read_text())
    summary["dropped_tasks"] = {"validation": ["inter_blend"]}
    (folder / "fold_0" / "validation" / "summary.json").write_text(json.dumps(summary))
    assert cli.main(["crossval", "-d", "994", "-c", "3d_fullres", "-f", "0", "2"]) == 0
    assert "fold 0 ran without inter_blend" in capsys.readouterr().out
