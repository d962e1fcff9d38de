"""``nnunet_anomaly predict`` checks its inputs before any work, and ``--continue_prediction`` redoes cut-short cases.

No model is trained here: the checks run before a checkpoint is read, so a model folder as
``nnUNetv2_train`` leaves it (``dataset.json``, ``plans.json``, ``fold_0/checkpoint_final.pth``) is
enough. The resume test replaces nnU-Net's model loading and prediction by stubs that select the
cases the way nnU-Net does (``_manage_input_and_output_lists``), so it shows which cases would run.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_anomaly import cli

DATASET = "Dataset995_PredictInputs"
SHAPE = (12, 16, 14)  # numpy (z, y, x)


def _write(path, array):
    image = sitk.GetImageFromArray(array) if isinstance(array, np.ndarray) else array
    image.SetSpacing((1.0,) * image.GetDimension())
    sitk.WriteImage(image, str(path))


def _volume(seed=0):
    return np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)


@pytest.fixture
def model(tmp_path, monkeypatch):
    """nnUNet_results with one untrained model folder; returns (results, input folder, output folder)."""
    folder = tmp_path / "results" / DATASET / "AnomalyTaskTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    for checkpoint in ("checkpoint_final.pth", "checkpoint_best.pth"):
        (folder / "fold_0" / checkpoint).write_bytes(b"never read by a refused run")
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1"}, "labels": {"background": 0, "anomaly": [1, 2]}, "regions_class_order": [1],
        "file_ending": ".nii.gz", "numTraining": 10}))
    (folder / "plans.json").write_text(json.dumps({
        "dataset_name": DATASET, "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
        "original_median_shape_after_transp": list(SHAPE), "configurations": {"3d_fullres": {}}}))
    for name in ("results", "raw", "preprocessed"):
        (tmp_path / name).mkdir(exist_ok=True)
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    inputs = tmp_path / "imagesTs"
    inputs.mkdir()
    _write(inputs / "case_000_0000.nii.gz", _volume())
    return folder, inputs, tmp_path / "pred"


def _predict(inputs, output, *extra, dataset="995"):
    return cli.main(["predict", "-i", str(inputs), "-o", str(output), "-d", dataset, "-c", "3d_fullres", "-f", "0",
                     "-device", "cpu", "-npp", "0", "-nps", "0", *extra])


def _refused(capsys, output):
    """The run failed with one stderr line and wrote nothing; returns that line."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert not output.exists()  # no ensemble.json, no plans.json, not even the folder
    return lines[0]


def _four_d(path):
    _write(path, sitk.JoinSeries([sitk.GetImageFromArray(_volume(1)), sitk.GetImageFromArray(_volume(2))]))


def _nan(path):
    array = _volume(3)
    array[2, 3, 4] = np.nan
    array[5, 6, 7] = np.inf
    _write(path, array)


def _two_d(path):
    _write(path, _volume(4)[0])


def _truncated(path):
    _write(path, _volume(5))
    path.write_bytes(path.read_bytes()[:-40])


@pytest.mark.parametrize("make, name, culprit, expected", [
    (_four_d, "case_001_0000.nii.gz", None, "a 4D image of shape (2, 12, 16, 14) (2 channels in one file)"),
    (_nan, "case_001_0000.nii.gz", None, "2 NaN/inf voxel(s)"),
    (_two_d, "case_001_0000.nii.gz", None, "a 2D image of shape (16, 14); the model was trained on 3D images"),
    (_truncated, "case_001_0000.nii.gz", None, "incomplete file"),
    (_two_d, "case_001.nii.gz", None, "not named CASE_XXXX.nii.gz"),
    (_two_d, "case_000_0001.nii.gz", None, "a channel the model does not have (it takes 1 channel(s): T1"),
    (_two_d, "case_001_0001.nii.gz", "case_001_0000.nii.gz", "missing"),
])
def test_a_bad_image_is_refused_before_any_work(model, capsys, make, name, culprit, expected):
    _, inputs, output = model
    make(inputs / name)
    assert _predict(inputs, output) == 1
    line = _refused(capsys, output)
    assert line.startswith(f"nnunet_anomaly predict: error: {inputs / (culprit or name)}: "), line  # names the file
    assert expected in line, line


def test_an_empty_input_folder_writes_nothing(model, tmp_path, capsys):
    _, _, output = model
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    assert _predict(empty, output) == 1
    line = _refused(capsys, output)
    assert f"-i {empty}: no input image ending in .nii.gz" in line and ".txt" in line, line


def test_a_missing_dataset_or_model_is_one_line(model, capsys):
    _, inputs, output = model
    assert _predict(inputs, output, dataset="999") == 1
    line = _refused(capsys, output)
    assert "-d 999: no trained model" in line and "id 999" in line, line
    assert cli.main(["predict", "-i", str(inputs), "-o", str(output), "-d", "995", "-c", "3d_lowres"]) == 1
    line = _refused(capsys, output)
    assert "no trained model for -d 995" in line and "AnomalyTaskTrainer__nnUNetPlans__3d_fullres" in line, line


def test_continue_prediction_redoes_cases_with_cut_short_outputs(model, capsys, monkeypatch):
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    folder, inputs, output = model
    for i in (1, 2):
        _write(inputs / f"case_00{i}_0000.nii.gz", _volume(10 + i))
    output.mkdir()
    for case in ("case_000", "case_001"):  # both predicted before; case_001's .npz was cut short (Ctrl-C, disk full)
        np.savez_compressed(output / f"{case}.npz", probabilities=np.random.rand(1, *SHAPE).astype(np.float32))
        _write(output / f"{case}.nii.gz", np.zeros(SHAPE, np.uint8))
    (output / "case_001.npz").write_bytes((output / "case_001.npz").read_bytes()[:-100])
    predicted = []

    def initialize(self, model_folder, folds, checkpoint_name="checkpoint_final.pth"):
        self.dataset_json = load_json(os.path.join(model_folder, "dataset.json"))

    def predict(self, inputs_, outputs, save_probabilities=False, overwrite=True, *args, **kwargs):
        selected, _, _ = self._manage_input_and_output_lists(inputs_, outputs, None, overwrite, 0, 1,
                                                             save_probabilities)
        predicted.extend(os.path.basename(files[0])[:-len("_0000.nii.gz")] for files in selected)

    monkeypatch.setattr(nnUNetPredictor, "initialize_from_trained_model_folder", initialize)
    monkeypatch.setattr(nnUNetPredictor, "predict_from_files_sequential", predict)
    assert _predict(inputs, output, "--continue_prediction") == 0
    assert predicted == ["case_001", "case_002"]
    out = capsys.readouterr().out
    assert "redoing case_001" in out and "case_001.npz: incomplete file" in out, out


def test_nnunets_trainer_search_lines_are_quiet(tmp_path):
    """A fresh process (the installed start-up hook runs): nnU-Net says which trainer it uses, not where it
    did not find it."""
    code = textwrap.dedent("""
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
        print("FOUND", recursive_find_trainer_class_by_name("AnomalyTaskTrainer").__name__)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("nnUNet_extTrainer", "nnunet_anomaly_startup_hook")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "FOUND AnomalyTaskTrainer" in result.stdout
    assert "Using trainer 'AnomalyTaskTrainer' from: " in result.stdout
    assert "not found in nnunetv2.training.nnUNetTrainer" not in result.stdout, result.stdout
    assert "Searching in" not in result.stdout, result.stdout


def test_the_quiet_lookup_shows_everything_when_it_fails(capsys):
    from nnunet_anomaly.plugin._startup import quiet_lookup

    def find(name):
        print(f"Trainer '{name}' not found in nnunetv2.training.nnUNetTrainer.")
        print("Searching in: /nowhere")
        raise RuntimeError(f"Could not find requested nnunet trainer {name}")

    quiet = quiet_lookup(find)
    assert quiet_lookup(quiet) is quiet
    with pytest.raises(RuntimeError, match="Could not find"):
        quiet("Missing")
    assert "Searching in: /nowhere" in capsys.readouterr().out
