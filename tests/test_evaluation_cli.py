"""`nnunet_anomaly evaluate` on real files (NIfTI, nnU-Net .npz, PNG) against sklearn on the same data."""
import csv
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from nnunet_anomaly.cli import main
from nnunet_anomaly.evaluation import evaluate_folder, slice_labels


def _write_nifti(path, array):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.0, 2.0))
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def brain_folders(tmp_path_factory):
    """5 cases (Z, Y, X) = (12, 20, 16): two prediction folds as nnU-Net writes them, one healthy case."""
    root = tmp_path_factory.mktemp("brain")
    rng = np.random.default_rng(0)
    folders = {name: root / name for name in ("labelsTs", "imagesTs", "fold_0", "fold_1")}
    for folder in folders.values():
        folder.mkdir()
    maps = {"fold_0": [], "fold_1": []}
    masks = []
    for i in range(5):
        mask = np.zeros((12, 20, 16), np.uint8)
        if i != 2:  # case_2 is healthy: all-zero mask
            z, y, x = rng.integers(2, 8), rng.integers(2, 12), rng.integers(2, 10)
            mask[z:z + 3, y:y + 5, x:x + 4] = rng.choice([1, 2, 4])  # BraTS-style labels
        masks.append(mask != 0)
        image = (rng.normal(size=mask.shape) + 3 * (mask != 0)).astype(np.float32)
        _write_nifti(folders["labelsTs"] / f"case_{i}.nii.gz", mask)
        _write_nifti(folders["imagesTs"] / f"case_{i}_0000.nii.gz", image)
        for fold, noise in (("fold_0", 0.3), ("fold_1", 0.6)):
            probabilities = np.clip(0.5 * (mask != 0) + noise * rng.random(mask.shape), 0, 1).astype(np.float16)
            np.savez_compressed(folders[fold] / f"case_{i}.npz", probabilities=probabilities[None])
            (folders[fold] / f"case_{i}.pkl").write_bytes(b"")  # nnU-Net's properties file, ignored
            _write_nifti(folders[fold] / f"case_{i}.nii.gz", (probabilities > 0.5).astype(np.uint8))  # segmentation: npz wins
            maps[fold].append(probabilities.astype(np.float32))
    return folders, maps, masks


def test_evaluate_cli_brain_matches_sklearn(brain_folders, tmp_path, capsys):
    folders, maps, masks = brain_folders
    out = tmp_path / "eval"
    argv = ["evaluate", "-p", str(folders["fold_0"]), str(folders["fold_1"]), "-g", str(folders["labelsTs"]),
            "-o", str(out), "--images", str(folders["imagesTs"]), "--baselines", "--quiet", "--cases", "case_0", "case_2"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["cases"] == [f"case_{i}" for i in range(5)]
    assert set(results["models"]) == {"fold_0", "fold_1", "ensemble", "random", "intensity"}

    ensemble = [(a + b) / 2 for a, b in zip(maps["fold_0"], maps["fold_1"])]
    truth = np.concatenate([m.ravel() for m in masks])
    labels = np.concatenate([slice_labels(m) for m in masks])
    for name, model_maps in (("fold_0", maps["fold_0"]), ("ensemble", ensemble)):
        pooled = np.concatenate([m.ravel() for m in model_maps]).astype(np.float16)
        model = results["models"][name]
        assert abs(model["pixel"]["ap_pooled"] - average_precision_score(truth, pooled)) < 1e-6
        assert abs(model["pixel"]["auroc"] - roc_auc_score(truth, pooled)) < 1e-6
        # 5 cases < 20: every ordering is one chunk, so the paper's AP equals the pooled AP
        assert abs(model["pixel"]["ap_chunked"]["mean"] - model["pixel"]["ap_pooled"]) < 1e-6
        slice_scores = np.concatenate([m.reshape(12, -1).mean(axis=1) for m in model_maps])
        assert abs(model["slice"]["ap"]["mean"] - average_precision_score(labels, slice_scores)) < 1e-6
        assert abs(model["slice"]["auroc"]["mean"] - roc_auc_score(labels, slice_scores)) < 1e-6
    assert abs(results["random"]["pixel"]["ap"] - truth.mean()) < 1e-12
    assert abs(results["random"]["slice"]["ap"] - labels.mean()) < 1e-12

    table = (out / "table.md").read_text()
    for row in ("| fold_0 |", "| fold_1 |", "| all (mean±s.d.) |", "| **ensemble** |", "| Random (prevalence) |",
                "| baseline: random |", "| baseline: intensity |"):
        assert row in table
    test_set = folders["labelsTs"].parent.name  # nnU-Net layout: the dataset's name, not "labelsTs"
    assert results["test_set"] == test_set
    assert f"Slice-wise<br>{test_set}" in table and f"Pixel-wise<br>{test_set}" in table

    with open(out / "per_case.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 * 5
    healthy = next(r for r in rows if r["case"] == "case_2" and r["model"] == "fold_0")
    assert healthy["anomalous"] == "False" and healthy["pixel_ap"] == "nan" and healthy["n_positive"] == "0"
    first = next(r for r in rows if r["case"] == "case_0" and r["model"] == "fold_0")
    expected = average_precision_score(masks[0].ravel(), maps["fold_0"][0].astype(np.float16).ravel())
    assert abs(float(first["pixel_ap"]) - expected) < 1e-5

    for figure in ("overlays.png", "curves.png", "score_distributions.png"):
        with Image.open(out / "figures" / figure) as image:
            assert image.size[0] > 300 and image.size[1] > 200
    assert not list(out.rglob(".*.tmp*"))  # atomic writes leave no temporary files


def test_evaluate_folder_cxr_png_and_npz(tmp_path):
    rng = np.random.default_rng(1)
    gt, pred, png_pred, img = (tmp_path / n for n in ("gt", "pred", "png_pred", "img"))
    for folder in (gt, pred, png_pred, img):
        folder.mkdir()
    masks, maps = [], []
    for i in range(6):
        mask = np.zeros((32, 24), np.uint8)
        if i % 2:
            mask[5:12, 4:10] = 255
        probability = np.clip((mask > 0) * 0.4 + rng.random(mask.shape) * 0.7, 0, 1)
        Image.fromarray(mask).save(gt / f"cxr_{i}.png")
        Image.fromarray((rng.random(mask.shape) * 255).astype(np.uint8)).save(img / f"cxr_{i}_0000.png")
        # nnU-Net's 2D natural-image probabilities: (C, 1, H, W)
        np.savez_compressed(pred / f"cxr_{i}.npz", probabilities=probability[None, None].astype(np.float16))
        quantised = np.round(probability * 255).astype(np.uint8)
        Image.fromarray(quantised).save(png_pred / f"cxr_{i}.png")
        masks.append(mask > 0)
        maps.append(probability.astype(np.float16).astype(np.float32))
    results = evaluate_folder([pred], gt, tmp_path / "out", images=img, setting="cxr", progress=False)
    model = results["models"]["pred"]
    assert "slice" not in model and results["scales"] == ["sample", "pixel"]
    sample_labels = [m.any() for m in masks]
    assert abs(model["sample"]["ap"]["mean"] - average_precision_score(sample_labels, [m.mean() for m in maps])) < 1e-6
    assert abs(model["sample"]["auroc"]["top_25_mean"]
               - roc_auc_score(sample_labels, [np.sort(m.ravel())[-192:].mean() for m in maps])) < 1e-6
    truth = np.concatenate([m.ravel() for m in masks])
    assert abs(model["pixel"]["ap_pooled"] - average_precision_score(truth, np.concatenate([m.ravel() for m in maps]))) < 1e-6
    # PNG maps are read from 0..255 to [0, 1]
    png = evaluate_folder(png_pred, gt, None, setting="cxr", progress=False)["models"]["png_pred"]
    png_scores = np.concatenate([(np.round(m * 255) / 255).ravel() for m in maps]).astype(np.float16)
    assert abs(png["pixel"]["auroc"] - roc_auc_score(truth, png_scores)) < 1e-3
    assert (tmp_path / "out" / "table.md").read_text().count("Sample-wise") == 2


def test_foreground_gives_masked_numbers_beside_the_papers(brain_folders, tmp_path):
    folders, maps, masks = brain_folders
    foreground = tmp_path / "fg"
    foreground.mkdir()
    fg_masks = []
    for i, mask in enumerate(masks):
        fg = np.zeros(mask.shape, np.uint8)
        fg[1:, 1:-1, 1:-1] = 1  # slice 0 has no foreground: left out of the masked slice metrics
        _write_nifti(foreground / f"case_{i}.nii.gz", fg)
        fg_masks.append(fg > 0)
    results = evaluate_folder(folders["fold_0"], folders["labelsTs"], None, foreground=foreground, progress=False)
    model = results["models"]["fold_0"]
    # the paper's numbers: every voxel
    all_scores = np.concatenate([m.ravel() for m in maps["fold_0"]])
    all_truth = np.concatenate([m.ravel() for m in masks])
    assert model["pixel"]["n_voxels"] == all_truth.size
    assert abs(model["pixel"]["ap_pooled"] - average_precision_score(all_truth, all_scores)) < 1e-9
    # and the same inside the masks
    scores = np.concatenate([m[f] for m, f in zip(maps["fold_0"], fg_masks)])
    truth = np.concatenate([m[f] for m, f in zip(masks, fg_masks)])
    assert model["pixel_in_mask"]["n_voxels"] == truth.size
    assert abs(model["pixel_in_mask"]["ap_pooled"] - average_precision_score(truth, scores)) < 1e-9
    assert abs(model["pixel_in_mask"]["auroc"] - roc_auc_score(truth, scores)) < 1e-9
    labels = np.concatenate([slice_labels(m)[1:] for m in masks])
    slice_scores = np.concatenate([[m[z][f[z]].mean() for z in range(1, m.shape[0])] for m, f in zip(maps["fold_0"], fg_masks)])
    assert model["slice_in_mask"]["n"] == labels.size
    assert abs(model["slice_in_mask"]["ap"]["mean"] - average_precision_score(labels, slice_scores)) < 1e-9
    assert results["protocol"]["foreground"] == str(foreground)


def _brain_test_set(root, spacing_mm=8.0, shapes=((9, 12, 8), (10, 13, 7), (8, 12, 9))):
    """A converted brain test set: labelsTs, brainmasksTs and crop_info/ (the canvas at 8 mm is 20 x 28 x 20)."""
    dataset = root / "Dataset502_Toy"
    rng = np.random.default_rng(3)
    for sub in ("labelsTs", "brainmasksTs", "crop_info", "pred"):
        (dataset / sub).mkdir(parents=True)
    arrays = []
    for i, shape in enumerate(shapes):  # SimpleITK (Z, Y, X) order
        truth = np.zeros(shape, np.uint8)
        if i != 1:
            truth[2:5, 3:7, 2:5] = 1
        brain = np.zeros(shape, np.uint8)
        brain[1:-1, 1:-1, 1:-1] = 1
        scores = np.clip(0.5 * truth + 0.7 * rng.random(shape), 0, 1).astype(np.float32)
        for sub, array in (("labelsTs", truth), ("brainmasksTs", brain)):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((spacing_mm,) * 3)
            sitk.WriteImage(image, str(dataset / sub / f"case_{i}.nii.gz"))
        np.savez_compressed(dataset / "pred" / f"case_{i}.npz", probabilities=scores[None])
        crop_info = {"output_shape": list(reversed(shape)), "output_affine": np.diag([spacing_mm] * 3 + [1.0]).tolist()}
        (dataset / "crop_info" / f"case_{i}.json").write_text(json.dumps(crop_info))
        arrays.append((scores, truth != 0, brain != 0))
    return dataset, arrays


def _pad(array, canvas):
    before = [(t - s) // 2 for s, t in zip(array.shape, canvas)]
    return np.pad(array, [(b, t - s - b) for b, s, t in zip(before, array.shape, canvas)])


def test_paper_canvas_is_the_default_for_converted_brain_test_sets(tmp_path):
    dataset, arrays = _brain_test_set(tmp_path)
    results = evaluate_folder(dataset / "pred", dataset / "labelsTs", None, progress=False)
    canvas = (20, 28, 20)
    assert results["protocol"]["canvas"]["shape"] == list(canvas)
    model = results["models"]["pred"]
    padded = [(_pad(s, canvas), _pad(t, canvas)) for s, t, _ in arrays]
    scores = np.concatenate([s.ravel() for s, _ in padded])
    truth = np.concatenate([t.ravel() for _, t in padded])
    assert model["pixel"]["n_voxels"] == 3 * 20 * 28 * 20
    assert abs(model["pixel"]["auroc"] - roc_auc_score(truth, scores)) < 1e-9
    labels = np.concatenate([slice_labels(t) for _, t in padded])
    slice_scores = np.concatenate([s.reshape(20, -1).mean(axis=1) for s, _ in padded])
    assert model["slice"]["n"] == 60 and abs(model["slice"]["auroc"]["mean"] - roc_auc_score(labels, slice_scores)) < 1e-9
    # brainmasksTs beside labelsTs: the masked numbers come too
    assert model["pixel_in_mask"]["n_voxels"] == sum(int(b.sum()) for _, _, b in arrays)
    # the cropped volumes as they are: another (larger) pixel AUROC denominator, other slices
    cropped = evaluate_folder(dataset / "pred", dataset / "labelsTs", None, canvas=None, progress=False)
    assert cropped["models"]["pred"]["pixel"]["n_voxels"] == sum(s.size for s, _, _ in arrays)
    assert cropped["protocol"]["canvas"].startswith("none")
    explicit = evaluate_folder(dataset / "pred", dataset / "labelsTs", None, canvas=(10, 14, 10), foreground=None,
                               progress=False)
    assert explicit["models"]["pred"]["pixel"]["n_voxels"] == 3 * 10 * 14 * 10 and "pixel_in_mask" not in explicit["models"]["pred"]
    with pytest.raises(ValueError, match=r"case_1.nii.gz: shape \(10, 13, 7\) does not fit the canvas \(9, 14, 10\)"):
        evaluate_folder(dataset / "pred", dataset / "labelsTs", None, canvas=(9, 14, 10), progress=False)


def test_reserved_folder_names_are_renamed_not_refused(brain_folders, tmp_path):
    folders, _, _ = brain_folders
    ensemble = tmp_path / "predictions" / "ensemble"
    ensemble.parent.mkdir()
    ensemble.symlink_to(folders["fold_0"], target_is_directory=True)
    alone = evaluate_folder(ensemble, folders["labelsTs"], None, progress=False)
    assert list(alone["models"]) == ["ensemble"]
    both = evaluate_folder([ensemble, folders["fold_1"]], folders["labelsTs"], None, progress=False)
    assert set(both["models"]) == {"predictions/ensemble", "fold_1", "ensemble"}
    assert both["models"]["ensemble"]["kind"] == "ensemble"


def test_threshold_gives_the_healthy_voxel_false_positive_rate(brain_folders, tmp_path):
    folders, maps, masks = brain_folders
    model_dir = tmp_path / "Trainer__Plans__config"
    for fold, value in ((0, 0.5), (1, 0.7)):
        summary = model_dir / f"fold_{fold}" / "validation" / "summary.json"
        summary.parent.mkdir(parents=True)
        summary.write_text(json.dumps({"healthy": {"n_voxels": 100, "score_exceeded_by_1%": value,
                                                   "score_exceeded_by_0.1%": value + 0.1, "max": 1.0}}))
    out = tmp_path / "eval"
    assert main(["evaluate", "-p", str(folders["fold_0"]), "-g", str(folders["labelsTs"]), "-o", str(out), "--quiet",
                 "--no-figures", "--threshold-from", str(model_dir), "--fpr", "1%"]) == 0
    results = json.loads((out / "results.json").read_text())
    threshold = results["models"]["fold_0"]["threshold"]
    assert threshold["value"] == pytest.approx(0.6)  # the mean of the folds' thresholds
    healthy = maps["fold_0"][2]  # case_2 is the healthy one
    assert threshold["healthy_voxel_fpr"] == pytest.approx(np.mean(healthy > 0.6))
    positives = np.concatenate([m[t] for m, t in zip(maps["fold_0"], masks)])
    assert threshold["sensitivity"] == pytest.approx(np.mean(positives > 0.6))
    assert results["protocol"]["threshold"]["per_fold"] == {"fold_0": 0.5, "fold_1": 0.7}
    assert "Healthy-voxel FPR" in (out / "table.md").read_text()
    given = evaluate_folder(folders["fold_0"], folders["labelsTs"], None, threshold=0.9, progress=False)
    assert given["models"]["fold_0"]["threshold"]["healthy_voxel_fpr"] == pytest.approx(np.mean(healthy > 0.9))
    assert main(["evaluate", "-p", str(folders["fold_0"]), "-g", str(folders["labelsTs"]), "-o", str(out), "--quiet",
                 "--threshold-from", str(model_dir), "--fpr", "5%"]) == 1


def test_clear_errors(brain_folders, tmp_path, capsys):
    folders, _, _ = brain_folders
    partial = tmp_path / "partial_gt"
    partial.mkdir()
    for name in ("case_0", "case_1"):
        (partial / f"{name}.nii.gz").write_bytes((folders["labelsTs"] / f"{name}.nii.gz").read_bytes())
    with pytest.raises(ValueError, match=r"3 predictions of 'fold_0' .* have no ground truth: case_2, case_3, case_4"):
        evaluate_folder(folders["fold_0"], partial, None, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_folder(tmp_path / "nope", folders["labelsTs"], None, progress=False)
    with pytest.raises(ValueError, match="need the test images"):
        evaluate_folder(folders["fold_0"], folders["labelsTs"], None, baselines=True, progress=False)
    with pytest.raises(ValueError, match="2 names for 1"):
        evaluate_folder(folders["fold_0"], folders["labelsTs"], None, names=["a", "b"], progress=False)
    wrong = tmp_path / "wrong_shape"
    wrong.mkdir()
    for i in range(5):
        np.save(wrong / f"case_{i}.npy", np.zeros((12, 20, 15), np.float32))
    with pytest.raises(ValueError, match=r"case_0.npy: shape \(12, 20, 15\) does not match .* \(12, 20, 16\)"):
        evaluate_folder(wrong, folders["labelsTs"], None, progress=False)
    # through the command: one clear line, exit status 1
    assert main(["evaluate", "-p", str(folders["fold_0"]), "-g", str(partial), "-o", str(tmp_path / "o"), "--quiet"]) == 1
    assert "have no ground truth" in capsys.readouterr().err


def test_inputs_are_not_modified(brain_folders, tmp_path):
    folders, _, _ = brain_folders
    before = {p: p.read_bytes() for folder in folders.values() for p in folder.iterdir()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate_folder([folders["fold_0"], folders["fold_1"]], folders["labelsTs"], tmp_path / "o",
                        images=folders["imagesTs"], figures=False, progress=False)
    assert before == {p: p.read_bytes() for folder in folders.values() for p in folder.iterdir()}


def test_help_runs_as_module():
    completed = subprocess.run([sys.executable, "-m", "nnunet_anomaly", "evaluate", "--help"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0
    assert "--predictions" in completed.stdout and "--baselines" in completed.stdout


def test_table_with_two_test_sets_like_table_1(brain_folders):
    from nnunet_anomaly.evaluation import format_table

    folders, _, _ = brain_folders
    first = evaluate_folder([folders["fold_0"], folders["fold_1"]], folders["labelsTs"], None, test_set="BraTS",
                            progress=False)
    second = evaluate_folder([folders["fold_1"], folders["fold_0"]], folders["labelsTs"], None, test_set="ISLES",
                             names=["fold_1", "fold_0"], progress=False)
    table = format_table([first, second])
    lines = table.splitlines()
    assert lines[2] == ("| Model | Slice-wise<br>BraTS | Slice-wise<br>ISLES | Pixel-wise<br>BraTS | Pixel-wise<br>ISLES "
                        "| Pixel AP, pooled (MOOD)<br>BraTS | Pixel AP, pooled (MOOD)<br>ISLES |")
    fold_0 = next(line for line in lines if line.startswith("| fold_0 |")).split(" | ")
    model = first["models"]["fold_0"]
    assert fold_0[1] == f"{100 * model['slice']['ap']['mean']:.1f}/{100 * model['slice']['auroc']['mean']:.1f}"
    assert fold_0[1] == fold_0[2]  # the same maps under the other name in the second set
    with pytest.raises(ValueError, match="one table per setting"):
        format_table([first, {**second, "setting": "cxr"}])


def test_all_healthy_test_set_gives_undefined_not_zero(brain_folders, tmp_path):
    folders, _, masks = brain_folders
    healthy = tmp_path / "healthy"
    healthy.mkdir()
    for i, mask in enumerate(masks):
        _write_nifti(healthy / f"case_{i}.nii.gz", np.zeros(mask.shape, np.uint8))
    results = evaluate_folder(folders["fold_0"], healthy, tmp_path / "out", progress=False)
    pixel = results["models"]["fold_0"]["pixel"]
    assert np.isnan(pixel["ap_pooled"]) and np.isnan(pixel["ap_chunked"]["mean"]) and np.isnan(pixel["auroc"])
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["models"]["fold_0"]["pixel"]["ap_pooled"] is None  # strict JSON: null, not NaN
    assert "| fold_0 | n/a/n/a | n/a/n/a | n/a |" in (tmp_path / "out" / "table.md").read_text()
