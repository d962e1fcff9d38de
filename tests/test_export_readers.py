"""`nnunet_anomaly export` writes maps in the file's own voxel order whatever nnU-Net reader the model used.

The reference volume is cubic and not RAS (its first two voxel axes are swapped and flipped against
the world axes, as in many scanner NIfTIs), so a map left in a reader's reoriented order would keep
its shape and pass every shape check while being wrong. Each test reads the reference with nnU-Net's
own reader (that is the order ``nnUNetv2_predict`` saves probabilities in), exports, and compares the
written file voxel by voxel with the reference file.
"""
import json

import nibabel
import numpy as np
import pytest

from nnunet_anomaly import cli
from nnunet_anomaly.export import export_anomaly_maps
from nnunet_anomaly.readers import array_shape

AFFINE = np.array([[0.0, -1.5, 0.0, 10.0],    # voxel j -> -x (flipped)
                   [-2.0, 0.0, 0.0, 20.0],    # voxel i -> -y (flipped)
                   [0.0, 0.0, 1.2, -5.0],
                   [0.0, 0.0, 0.0, 1.0]])
READERS = ["SimpleITKIO", "NibabelIO", "NibabelIOWithReorient", "SimpleITKIOWithReorient"]


def _score(values):
    """A map that is a known function of the image: each voxel's score follows its own intensity."""
    return ((values - 100.0) / 216.0).astype(np.float32)


def _nnunet_reader(name):
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name
    return recursive_find_reader_writer_by_name(name)()


@pytest.fixture
def mood_like(tmp_path):
    """A cubic, non-RAS NIfTI with all-distinct intensities, and its folders."""
    data = (100.0 + np.arange(6 ** 3, dtype=np.float32)).reshape(6, 6, 6)
    images, pred = tmp_path / "images", tmp_path / "pred"
    images.mkdir(), pred.mkdir()
    nibabel.save(nibabel.Nifti1Image(data, AFFINE), images / "00042.nii.gz")
    return images, pred, data


def _predict_like_nnunet(images, pred, reader):
    """What nnUNetv2_predict --save_probabilities leaves: the map in the reader's array order + plans.json."""
    array, _ = _nnunet_reader(reader).read_images([str(images / "00042.nii.gz")])
    probabilities = _score(array)  # (1, *reader's shape)
    np.savez_compressed(pred / "00042.npz", probabilities=probabilities)
    (pred / "plans.json").write_text(json.dumps({"image_reader_writer": reader}))
    return probabilities


@pytest.mark.parametrize("reader", READERS)
def test_map_lands_in_the_files_voxel_order(mood_like, tmp_path, reader):
    images, pred, data = mood_like
    probabilities = _predict_like_nnunet(images, pred, reader)
    assert array_shape(images / "00042.nii.gz", reader) == probabilities.shape[1:]
    [written] = export_anomaly_maps(pred, images, tmp_path / "out", masks_dir=tmp_path / "masks", threshold=0.5,
                                    progress=False)
    out = nibabel.load(str(written))
    np.testing.assert_allclose(out.affine, AFFINE, atol=1e-5)
    np.testing.assert_array_equal(out.get_fdata(dtype=np.float32), _score(data))  # voxel (i, j, k) <-> (i, j, k)
    assert out.get_data_dtype() == np.float32
    # and the model's own reader reads it back as the map it predicted
    again, _ = _nnunet_reader(reader).read_images([str(written)])
    np.testing.assert_array_equal(again, probabilities)
    mask = nibabel.load(str(tmp_path / "masks" / "00042.nii.gz"))
    np.testing.assert_array_equal(np.asarray(mask.dataobj), (_score(data) > 0.5).astype(np.uint8))


def test_the_reorienting_reader_really_reorders_this_volume(mood_like):
    """Guards the test itself: for this reference the reoriented order differs from the file order."""
    images, _, data = mood_like
    array, _ = _nnunet_reader("NibabelIOWithReorient").read_images([str(images / "00042.nii.gz")])
    assert array.shape[1:] == data.shape and not np.array_equal(array[0], data.transpose(2, 1, 0))


def test_without_plans_the_order_is_refused_or_given(mood_like, tmp_path, capsys):
    images, pred, data = mood_like
    _predict_like_nnunet(images, pred, "NibabelIOWithReorient")
    plans = tmp_path / "model_plans.json"
    (pred / "plans.json").rename(plans)  # like an nnUNetv2_ensemble output
    with pytest.raises(ValueError, match="no plans.json.*--plans"):
        export_anomaly_maps(pred, images, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert cli.main(["export", "-p", str(pred), "-i", str(images), "-o", str(tmp_path / "out"), "--no-progress"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert cli.main(["export", "-p", str(pred), "-i", str(images), "-o", str(tmp_path / "out"), "--no-progress",
                     "--plans", str(plans)]) == 0
    np.testing.assert_array_equal(nibabel.load(str(tmp_path / "out" / "00042.nii.gz")).get_fdata(dtype=np.float32),
                                  _score(data))
    assert cli.main(["export", "-p", str(pred), "-i", str(images), "-o", str(tmp_path / "out2"), "--no-progress",
                     "--reader", "NibabelIOWithReorient"]) == 0


def test_an_unsupported_reader_is_refused_before_anything_is_written(mood_like, tmp_path):
    images, pred, _ = mood_like
    _predict_like_nnunet(images, pred, "NibabelIO")
    (pred / "plans.json").write_text(json.dumps({"image_reader_writer": "Tiff3DIO"}))
    with pytest.raises(ValueError, match="Tiff3DIO; export supports"):
        export_anomaly_maps(pred, images, tmp_path / "out", progress=False)
    (pred / "plans.json").write_text(json.dumps({"image_reader_writer": "NaturalImage2DIO"}))
    with pytest.raises(ValueError, match="NaturalImage2DIO reads .png files, but the input images include 00042"):
        export_anomaly_maps(pred, images, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
