"""Tests of the source pools with real files written by SimpleITK, PIL, scikit-image and numpy."""
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from nnunet_anomaly.pools import ArrayPool, FolderPool, SourcePool
from nnunet_anomaly.tasks import apply_tasks


def _write_nifti(path, array):
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


@pytest.fixture
def pool_folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    volume = rng.normal(5.0, 3.0, size=(12, 14, 16)).astype(np.float32)
    mask = np.zeros((12, 14, 16), np.uint8)
    mask[2:10, 3:11, 4:12] = 1
    volume[mask == 0] = 0.0
    _write_nifti(tmp_path / "images" / "vol.nii.gz", volume)
    _write_nifti(tmp_path / "masks" / "vol.nii.gz", mask)
    _write_nifti(tmp_path / "images" / "plain.nii", rng.normal(size=(10, 10, 10)).astype(np.float32))
    rgb = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "images" / "photo.png")
    np.save(tmp_path / "images" / "array.npy", rng.normal(2.0, 4.0, size=(9, 11)))
    (tmp_path / "images" / "notes.txt").write_text("ignored")
    return tmp_path


def test_folder_pool_lists_lazily_and_normalises(pool_folder):
    pool = FolderPool(pool_folder, cache_size=2)
    assert isinstance(pool, SourcePool)
    assert [p.name for p in pool.files] == ["array.npy", "photo.png", "plain.nii", "vol.nii.gz"]
    assert len(pool._cache) == 0  # nothing loaded at construction
    by_name = {p.name: pool[i] for i, p in enumerate(pool.files)}
    assert len(pool._cache) == 2  # LRU bound

    image, mask = by_name["vol.nii.gz"]
    assert image.shape == (1, 12, 14, 16) and image.dtype == np.float32
    assert mask.dtype == bool and mask.sum() == 8 * 8 * 8
    assert abs(image[0][mask].mean()) < 1e-5 and image[0][mask].std() == pytest.approx(1.0, abs=1e-4)

    image, mask = by_name["photo.png"]
    assert image.shape == (1, 20, 24) and mask is None
    assert image.min() >= -1 and image.max() <= 1 and image.max() == pytest.approx(1.0)
    # histogram equalised: roughly uniform on [-1, 1]
    assert abs(float(np.median(image))) < 0.1

    image, mask = by_name["array.npy"]
    assert image.shape == (1, 9, 11) and mask is None
    assert image.mean() == pytest.approx(0, abs=1e-5) and image.std() == pytest.approx(1, abs=1e-4)


def test_folder_pool_grey_png_from_skimage_and_raw_values(tmp_path):
    from skimage import io

    (tmp_path / "images").mkdir()
    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (5, 1))
    io.imsave(tmp_path / "images" / "grey.png", grey, check_contrast=False)
    image, _ = FolderPool(tmp_path).sample(np.random.default_rng(0))
    assert image.shape == (1, 5, 25)
    assert np.all(np.diff(image[0, 0]) > 0)  # order kept by equalisation
    raw, _ = FolderPool(tmp_path, normalise=False).sample(np.random.default_rng(0))
    np.testing.assert_array_equal(raw[0], grey)


def test_folder_pool_files_are_untouched(pool_folder):
    before = {p: p.read_bytes() for p in (pool_folder / "images").iterdir()}
    pool = FolderPool(pool_folder)
    for i in range(len(pool)):
        pool[i]
    assert before == {p: p.read_bytes() for p in (pool_folder / "images").iterdir()}


def test_folder_pool_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="images"):
        FolderPool(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        FolderPool(tmp_path)
    (tmp_path / "images" / "broken.nii.gz").write_bytes(b"not a nifti")
    pool = FolderPool(tmp_path)
    with pytest.raises(ValueError, match="broken.nii.gz"):
        pool[0]
    (tmp_path / "images" / "broken.nii.gz").unlink()
    np.save(tmp_path / "images" / "four_d.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="four_d.npy.*2-D or 3-D"):
        FolderPool(tmp_path)[0]
    (tmp_path / "images" / "four_d.npy").unlink()
    np.save(tmp_path / "images" / "a.npy", np.random.default_rng(0).normal(size=(6, 6)))
    (tmp_path / "masks").mkdir()
    np.save(tmp_path / "masks" / "a.npy", np.ones((5, 6)))
    with pytest.raises(ValueError, match="a.npy.*mask shape"):
        FolderPool(tmp_path)[0]
    np.save(tmp_path / "masks" / "a.npy", np.ones((6, 6)))
    np.save(tmp_path / "images" / "a.npy", np.ones((6, 6)))
    with pytest.raises(ValueError, match="a.npy.*constant"):
        FolderPool(tmp_path)[0]


def test_array_pool_validation_and_sampling():
    rng = np.random.default_rng(0)
    images = [rng.normal(size=(1, 8, 8)), rng.normal(size=(1, 10, 6))]
    pool = ArrayPool(images, masks=[None, np.ones((10, 6))])
    seen = {pool.sample(np.random.default_rng(s))[0].shape for s in range(20)}
    assert seen == {(1, 8, 8), (1, 10, 6)}
    assert pool[1][1].dtype == bool
    with pytest.raises(ValueError, match="at least one"):
        ArrayPool([])
    with pytest.raises(ValueError, match="same number of dimensions"):
        ArrayPool([np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 4))])
    with pytest.raises(ValueError, match="mask 0"):
        ArrayPool([np.zeros((1, 4, 4))], masks=[np.ones((3, 4))])
    with pytest.raises(ValueError, match="2 masks"):
        ArrayPool([np.zeros((1, 4, 4))], masks=[None, None])
    with pytest.raises(ValueError, match="NaN"):
        ArrayPool([np.full((1, 4, 4), np.nan)])


def test_folder_pool_feeds_inter_blend(pool_folder, tmp_path):
    volume_pool = tmp_path / "vols"
    (volume_pool / "images").mkdir(parents=True)
    import shutil

    shutil.copy(pool_folder / "images" / "plain.nii", volume_pool / "images" / "plain.nii")
    image = np.random.default_rng(0).normal(size=(1, 20, 20, 20)).astype(np.float32)
    result = apply_tasks(image, ["inter_blend"], np.random.default_rng(0), inter_pool=FolderPool(volume_pool))
    assert result.mask.any() and np.isfinite(result.image).all()
    # a 2-D pool for a 3-D image is a clear error
    png_pool = tmp_path / "pngs"
    (png_pool / "images").mkdir(parents=True)
    shutil.copy(pool_folder / "images" / "photo.png", png_pool / "images" / "photo.png")
    with pytest.raises(ValueError, match="spatial dimensions"):
        apply_tasks(image, ["inter_blend"], np.random.default_rng(0), inter_pool=FolderPool(png_pool))
