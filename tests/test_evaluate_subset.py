"""``nnunet_anomaly evaluate --subset`` scores part of a test set; shape errors name the file that is wrong;
a threshold applies to models only."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_anomaly.cli import main

SHAPE = (8, 12, 10)


def _write_nifti(path, array):
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


@pytest.fixture
def test_set(tmp_path):
    """Six ground-truth cases (case_1 healthy), their images, and two folds that predicted every case."""
    rng = np.random.default_rng(0)
    folders = {name: tmp_path / name for name in ("labelsTs", "imagesTs", "fold_0", "fold_1")}
    for folder in folders.values():
        folder.mkdir()
    for i in range(6):
        mask = np.zeros(SHAPE, np.uint8)
        if i != 1:
            mask[2:5, 3:7, 2:6] = 1
        _write_nifti(folders["labelsTs"] / f"case_{i}.nii.gz", mask)
        _write_nifti(folders["imagesTs"] / f"case_{i}_0000.nii.gz", rng.normal(size=SHAPE).astype(np.float32))
        for fold in ("fold_0", "fold_1"):
            probabilities = np.clip(0.6 * mask + 0.5 * rng.random(SHAPE), 0, 1).astype(np.float32)
            np.savez_compressed(folders[fold] / f"case_{i}.npz", probabilities=probabilities[None])
    return folders


@pytest.fixture
def part_of_test_set(test_set):
    """The folds predicted only case_0, case_2 and case_4 of the six."""
    for fold in ("fold_0", "fold_1"):
        for i in (1, 3, 5):
            (test_set[fold] / f"case_{i}.npz").unlink()
    return test_set


def _evaluate(folders, out, *extra):
    return main(["evaluate", "-p", str(folders["fold_0"]), str(folders["fold_1"]), "-g", str(folders["labelsTs"]),
                 "-o", str(out), "--no-figures", "--quiet", *extra])


def test_without_subset_missing_predictions_are_an_error(part_of_test_set, tmp_path, capsys):
    assert _evaluate(part_of_test_set, tmp_path / "out") == 1
    assert "3 ground-truth masks have no prediction" in capsys.readouterr().err


def test_subset_scores_the_predicted_cases_and_counts_the_others(part_of_test_set, tmp_path, capsys):
    test_set = part_of_test_set
    out = tmp_path / "out"
    assert _evaluate(test_set, out, "--subset") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["cases"] == ["case_0", "case_2", "case_4"] and results["n_cases"] == 3
    assert results["subset"]["n_ground_truth_cases"] == 6 and results["subset"]["n_skipped"] == 3
    assert results["subset"]["skipped"] == ["case_1", "case_3", "case_5"]
    assert "3 of 6 ground-truth cases scored (--subset: 3 without a prediction skipped)" in (out / "table.md").read_text()

    (test_set["fold_1"] / "case_4.npz").unlink()  # a case that one fold lacks is skipped too
    assert _evaluate(test_set, tmp_path / "out2", "--subset") == 0
    assert json.loads((tmp_path / "out2" / "results.json").read_text())["cases"] == ["case_0", "case_2"]

    for fold in ("fold_0", "fold_1"):
        for path in test_set[fold].glob("*.npz"):
            path.unlink()
        np.savez_compressed(test_set[fold] / "other.npz", probabilities=np.zeros((1, *SHAPE), np.float32))
    assert _evaluate(test_set, tmp_path / "out3", "--subset") == 1  # a prediction without ground truth
    assert "have no ground truth: other" in capsys.readouterr().err


def test_a_4d_ground_truth_file_is_named_as_the_culprit(test_set, tmp_path, capsys):
    bad = test_set["labelsTs"] / "case_2.nii.gz"
    _write_nifti(bad, np.zeros((2, *SHAPE), np.uint8))  # two volumes in one file
    assert _evaluate(test_set, tmp_path / "out") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nnunet_anomaly evaluate: error: {bad}: "), err
    assert "(2, 8, 12, 10)" in err and "case_2.npz" not in err, err


def test_a_mismatched_prediction_names_both_files(test_set, tmp_path, capsys):
    wrong = test_set["fold_0"] / "case_0.npz"
    np.savez_compressed(wrong, probabilities=np.zeros((1, 8, 12, 11), np.float32))
    assert _evaluate(test_set, tmp_path / "out") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nnunet_anomaly evaluate: error: {wrong}: shape"), err
    assert str(test_set["labelsTs"] / "case_0.nii.gz") in err, err


def test_the_threshold_applies_to_models_not_to_baselines(test_set, tmp_path):
    out = tmp_path / "out"
    assert _evaluate(test_set, out, "--images", str(test_set["imagesTs"]), "--baselines",
                     "--threshold", "0.5") == 0
    results = json.loads((out / "results.json").read_text())
    assert "threshold" in results["models"]["fold_0"] and "threshold" in results["models"]["ensemble"]
    assert "threshold" not in results["models"]["random"] and "threshold" not in results["models"]["intensity"]
    table = (out / "table.md").read_text()
    for baseline in ("random", "intensity"):
        row = next(line for line in table.splitlines() if line.startswith(f"| baseline: {baseline} |"))
        assert row.rstrip(" |").endswith("—"), row  # no false-positive rate / sensitivity at the model's threshold
    assert "Baselines have no threshold" in table
