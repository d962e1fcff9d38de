"""`nnunet_anomaly export`: nnU-Net .npz probabilities -> NIfTI / 16-bit PNG anomaly maps, with real files."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from skimage import io as skio

from nnunet_anomaly import cli
from nnunet_anomaly.export import export_anomaly_maps, find_cases

SPACING = (0.9, 1.1, 2.5)
ORIGIN = (-12.0, 30.5, 7.25)
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _write_nifti(path, array, spacing=SPACING, origin=ORIGIN, direction=DIRECTION):
    image = sitk.GetImageFromArray(array)
    if array.ndim == 3:
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))


def _probabilities(rng, shape):
    """nnU-Net-like one-channel map with a few values just outside [0, 1] (clipping must remove them)."""
    p = rng.random((1, *shape)).astype(np.float32)
    p.flat[0], p.flat[1] = -1e-3, 1.002
    return p


def _plans_json(pred, reader="SimpleITKIO"):
    """nnUNetv2_predict copies the model's plans.json into its output folder; export reads the reader from it."""
    (pred / "plans.json").write_text(f'{{"image_reader_writer": "{reader}"}}')


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}


@pytest.fixture
def volume_case(tmp_path):
    """One 3D case as nnUNetv2_predict leaves it: images/case_0000.nii.gz, pred/case.npz (+ .pkl)."""
    rng = np.random.default_rng(0)
    images, pred = tmp_path / "images", tmp_path / "pred"
    images.mkdir(), pred.mkdir()
    shape = (5, 7, 6)  # numpy order (z, y, x)
    _write_nifti(images / "case_0000.nii.gz", rng.normal(size=shape).astype(np.float32))
    probabilities = _probabilities(rng, shape)
    np.savez_compressed(pred / "case.npz", probabilities=probabilities)
    (pred / "case.pkl").write_bytes(b"not read by the exporter")
    _plans_json(pred)
    return images, pred, probabilities


def test_3d_nifti_keeps_geometry_name_and_clipped_values(volume_case, tmp_path):
    images, pred, probabilities = volume_case
    before = _digest(images), _digest(pred)
    written = export_anomaly_maps(pred, images, tmp_path / "out", progress=False)
    assert [p.name for p in written] == ["case.nii.gz"]
    out = sitk.ReadImage(str(written[0]))
    assert out.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(out.GetSpacing(), SPACING)
    np.testing.assert_allclose(out.GetOrigin(), ORIGIN)
    np.testing.assert_allclose(out.GetDirection(), DIRECTION)
    values = sitk.GetArrayFromImage(out)
    np.testing.assert_array_equal(values, np.clip(probabilities[0], 0, 1))
    assert values.min() == 0.0 and values.max() == 1.0
    assert (_digest(images), _digest(pred)) == before  # inputs untouched
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_2d_png_becomes_16_bit_png_or_float_nifti(tmp_path):
    rng = np.random.default_rng(1)
    images, pred = tmp_path / "images", tmp_path / "pred"
    images.mkdir(), pred.mkdir()
    height, width = 9, 13  # not square: a transposed map would fail
    Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8)).save(images / "cxr_3_0000.png")
    probabilities = _probabilities(rng, (1, height, width))  # nnU-Net reads PNGs as (c, 1, H, W)
    np.savez_compressed(pred / "cxr_3.npz", probabilities=probabilities)

    [png] = export_anomaly_maps(pred, images, tmp_path / "png", progress=False)
    assert png.name == "cxr_3.png"
    grey = skio.imread(png)
    assert grey.dtype == np.uint16 and grey.shape == (height, width)
    expected = np.clip(probabilities[0, 0], 0, 1).astype(np.float64)
    np.testing.assert_array_equal(grey, np.round(expected * 65535).astype(np.uint16))

    [nii] = export_anomaly_maps(pred, images, tmp_path / "nii", file_format="nifti", progress=False)
    assert nii.name == "cxr_3.nii.gz"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(nii))), expected.astype(np.float32))


def test_2d_nifti_input_can_be_exported_as_png(tmp_path):
    rng = np.random.default_rng(2)
    images, pred = tmp_path / "images", tmp_path / "pred"
    images.mkdir(), pred.mkdir()
    _write_nifti(images / "slice_0000.nii.gz", rng.normal(size=(6, 8)).astype(np.float32))
    probabilities = _probabilities(rng, (1, 6, 8))
    np.savez_compressed(pred / "slice.npz", probabilities=probabilities)
    _plans_json(pred)
    [png] = export_anomaly_maps(pred, images, tmp_path / "out", file_format="png", progress=False)
    assert png.name == "slice.png"
    assert skio.imread(png).shape == (6, 8)


def test_mood_names_without_channel_suffix_and_channel_0_reference(tmp_path):
    rng = np.random.default_rng(3)
    images, pred = tmp_path / "images", tmp_path / "pred"
    images.mkdir(), pred.mkdir()
    shape = (4, 5, 6)
    _write_nifti(images / "00042.nii.gz", np.zeros(shape, np.float32))
    # a two-channel case: channel 0 is the reference, whatever channel 1 looks like
    _write_nifti(images / "multi_0000.nii.gz", np.zeros(shape, np.float32))
    _write_nifti(images / "multi_0001.nii.gz", np.zeros(shape, np.float32), spacing=(3.0, 3.0, 3.0))
    for case in ("00042", "multi"):
        np.savez_compressed(pred / f"{case}.npz", probabilities=_probabilities(rng, shape))
    _plans_json(pred)
    cases = find_cases(pred, images)
    assert [(c.case, c.reference_image.name, c.output_name) for c in cases] == [
        ("00042", "00042.nii.gz", "00042.nii.gz"), ("multi", "multi_0000.nii.gz", "multi.nii.gz")]
    written = export_anomaly_maps(pred, images, tmp_path / "out", progress=False)
    np.testing.assert_allclose(sitk.ReadImage(str(written[1])).GetSpacing(), SPACING)


def test_missing_cases_are_listed_and_nothing_is_written(volume_case, tmp_path):
    images, pred, _ = volume_case
    _write_nifti(images / "lonely_0000.nii.gz", np.zeros((2, 2, 2), np.float32))
    np.savez_compressed(pred / "orphan.npz", probabilities=np.zeros((1, 2, 2, 2), np.float32))
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        export_anomaly_maps(pred, images, out, progress=False)
    message = str(info.value)
    assert "without an input image" in message and "orphan" in message
    assert "without a prediction" in message and "lonely" in message
    assert not out.exists()

    (pred / "orphan.npz").unlink()
    written = export_anomaly_maps(pred, images, out, allow_missing=True, progress=False)
    assert [p.name for p in written] == ["case.nii.gz"]


def test_mismatched_shape_and_channels_are_listed(volume_case, tmp_path):
    images, pred, _ = volume_case
    _write_nifti(images / "wrong_0000.nii.gz", np.zeros((5, 7, 6), np.float32))
    np.savez_compressed(pred / "wrong.npz", probabilities=np.zeros((1, 5, 6, 7), np.float32))  # transposed
    _write_nifti(images / "softmax_0000.nii.gz", np.zeros((5, 7, 6), np.float32))
    np.savez_compressed(pred / "softmax.npz", probabilities=np.zeros((2, 5, 7, 6), np.float32))
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        export_anomaly_maps(pred, images, out, progress=False)
    message = str(info.value)
    assert "wrong: map shape (5, 6, 7) does not match" in message
    assert "softmax" in message and "one anomaly channel" in message
    assert "case:" not in message
    assert not out.exists()


def test_a_4d_image_is_reported_with_its_full_shape(volume_case, tmp_path):
    """A 4D array written with SimpleITK becomes a vector image; nnU-Net reads it as (2, 5, 7, 6): so does the error."""
    images, pred, _ = volume_case
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 5, 7, 6), np.float32)), str(images / "case_0000.nii.gz"))
    with pytest.raises(ValueError) as info:
        export_anomaly_maps(pred, images, tmp_path / "out", progress=False)
    message = str(info.value)
    assert "case_0000.nii.gz shape (2, 5, 7, 6) (a 4D image" in message, message
    series = sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((5, 7, 6), np.float32))] * 2)  # a true 4D NIfTI
    sitk.WriteImage(series, str(images / "case_0000.nii.gz"))
    with pytest.raises(ValueError, match=r"shape \(2, 5, 7, 6\) \(a 4D image"):
        export_anomaly_maps(pred, images, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_nan_scores_and_bad_folders_are_clear_errors(volume_case, tmp_path):
    images, pred, probabilities = volume_case
    with pytest.raises(ValueError, match="input images folder"):
        export_anomaly_maps(pred, images, images, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_anomaly_maps(tmp_path / "nope", images, tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="--save_probabilities"):
        export_anomaly_maps(images, images, tmp_path / "out", progress=False)
    bad = probabilities.copy()
    bad[0, 1, 1, 1] = np.nan
    np.savez_compressed(pred / "case.npz", probabilities=bad)
    with pytest.raises(ValueError, match="NaN"):
        export_anomaly_maps(pred, images, tmp_path / "out", progress=False)
    (pred / "case.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a complete .npz"):
        export_anomaly_maps(pred, images, tmp_path / "out", progress=False)


def test_cli_verb_success_and_one_line_error(volume_case, tmp_path, capsys):
    images, pred, _ = volume_case
    out = tmp_path / "out"
    assert cli.main(["export", "-p", str(pred), "-i", str(images), "-o", str(out), "--no-progress"]) == 0
    assert (out / "case.nii.gz").is_file()
    assert cli.main(["export", "-p", str(tmp_path / "missing"), "-i", str(images), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnunet_anomaly export: error:") and "missing" in err[0]
