"""What users do with a map: MOOD sample scores, a threshold calibrated on healthy validation data, binary masks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_anomaly import cli
from nnunet_anomaly.calibration import calibrated_threshold, fold_thresholds, parse_rate
from nnunet_anomaly.export import export_anomaly_maps, sample_score

SPACING = (0.9, 1.1, 2.5)


@pytest.fixture
def mood_like(tmp_path):
    """MOOD's layout: an input folder of 00000.nii.gz ..., their predictions, and a trained model's folds."""
    rng = np.random.default_rng(0)
    images, pred = tmp_path / "mood_input", tmp_path / "pred"
    images.mkdir(), pred.mkdir()
    (pred / "plans.json").write_text('{"image_reader_writer": "SimpleITKIO"}')  # as nnUNetv2_predict leaves it
    maps = {}
    for case in ("00000", "00001", "00002"):
        image = sitk.GetImageFromArray(rng.normal(size=(6, 8, 7)).astype(np.float32))
        image.SetSpacing(SPACING)
        sitk.WriteImage(image, str(images / f"{case}.nii.gz"))
        maps[case] = rng.random((6, 8, 7)).astype(np.float32)
        np.savez_compressed(pred / f"{case}.npz", probabilities=maps[case][None])
    model = tmp_path / "Dataset501_HCP" / "AnomalyTaskTrainer__nnUNetPlans__3d_fullres"
    for fold, (one, tenth) in enumerate([(0.62, 0.9), (0.70, 0.95), (0.66, 0.92)]):
        summary = model / f"fold_{fold}" / "validation" / "summary.json"
        summary.parent.mkdir(parents=True)
        summary.write_text(json.dumps({"pooled": {"ap": 0.5}, "healthy": {
            "n_voxels": 1000, "score_exceeded_by_1%": one, "score_exceeded_by_0.1%": tenth, "max": 0.99}}))
    return images, pred, maps, model


def test_sample_scores_in_moods_format(mood_like, tmp_path):
    images, pred, maps, _ = mood_like
    scores = tmp_path / "sample"
    assert cli.main(["export", "-p", str(pred), "-i", str(images), "-o", str(tmp_path / "pixel"), "--no-progress",
                     "--sample-scores", str(scores)]) == 0
    assert sorted(p.name for p in scores.iterdir()) == ["00000.nii.gz.txt", "00001.nii.gz.txt", "00002.nii.gz.txt"]
    for case, anomaly_map in maps.items():
        text = (scores / f"{case}.nii.gz.txt").read_text()
        assert text.endswith("\n") and len(text.split()) == 1
        assert float(text) == pytest.approx(float(anomaly_map.mean(dtype=np.float64)), rel=1e-7)
    export_anomaly_maps(pred, images, tmp_path / "pixel2", progress=False, sample_scores_dir=tmp_path / "max",
                        sample_aggregate="max")
    assert float((tmp_path / "max" / "00001.nii.gz.txt").read_text()) == pytest.approx(float(maps["00001"].max()))


def test_sample_score_aggregates():
    m = np.arange(8, dtype=np.float32).reshape(2, 4) / 7
    assert sample_score(m) == pytest.approx(0.5)
    assert sample_score(m, "top_25_mean") == pytest.approx(6.5 / 7)
    assert sample_score(m, "percentile_75") == pytest.approx(np.percentile(m, 75))
    with pytest.raises(ValueError, match="unknown sample aggregate"):
        sample_score(m, "median")


def test_threshold_is_read_from_the_folds_healthy_validation(mood_like):
    _, _, _, model = mood_like
    assert fold_thresholds(model, "1%") == {"fold_0": 0.62, "fold_1": 0.70, "fold_2": 0.66}
    ensemble = calibrated_threshold(model, "0.1%")
    assert ensemble.value == pytest.approx((0.9 + 0.95 + 0.92) / 3) and ensemble.rule == "mean of the folds' thresholds"
    one = calibrated_threshold(model / "fold_1", 0.01)
    assert one.value == 0.70 and one.rule == "the fold's threshold"
    assert calibrated_threshold(model, "1%", folds=[0, 2]).value == pytest.approx(0.64)
    with pytest.raises(ValueError, match=r"stores thresholds for 1%, 0.1% of healthy voxels, not 5%"):
        calibrated_threshold(model, "5%")
    with pytest.raises(FileNotFoundError, match="fold_7"):
        calibrated_threshold(model, "1%", folds=[7])
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        parse_rate("150%")
    old = model / "fold_0" / "validation" / "summary.json"
    old.write_text(json.dumps({"pooled": {"ap": 0.5}}))  # trained before healthy calibration existed
    with pytest.raises(ValueError, match="no healthy-voxel calibration"):
        calibrated_threshold(model)


def test_export_writes_binary_masks_at_the_calibrated_threshold(mood_like, tmp_path, capsys):
    images, pred, maps, model = mood_like
    masks = tmp_path / "masks"
    assert cli.main(["export", "-p", str(pred), "-i", str(images), "-o", str(tmp_path / "pixel"), "--no-progress",
                     "--masks", str(masks), "--threshold-from", str(model), "--fpr", "1%"]) == 0
    assert "score > 0.66" in capsys.readouterr().out
    for case, anomaly_map in maps.items():
        written = sitk.ReadImage(str(masks / f"{case}.nii.gz"))
        assert written.GetPixelID() == sitk.sitkUInt8
        np.testing.assert_allclose(written.GetSpacing(), SPACING)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(written), anomaly_map > 0.66)
    export_anomaly_maps(pred, images, tmp_path / "pixel", progress=False, masks_dir=tmp_path / "given", threshold=0.5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "given" / "00000.nii.gz"))),
                                  maps["00000"] > 0.5)
    assert cli.main(["export", "-p", str(pred), "-i", str(images), "-o", str(tmp_path / "pixel"), "--masks",
                     str(masks)]) == 1
    assert "need a threshold" in capsys.readouterr().err
