"""Real offline anatomy: shapes, ranges, dtypes, consistency with the source files, no shared state."""
import sys

import numpy as np
import pytest

from nnunet_anomaly import offline_data
from nnunet_anomaly.offline_data import (
    NATURAL_IMAGE_NAMES,
    chest_radiograph,
    mni152_brain,
    mni152_tissue_maps,
    natural_images,
)


def test_mni152_brain_matches_nilearn_files_and_is_zscored_inside_the_mask():
    nilearn_datasets = pytest.importorskip("nilearn.datasets")
    image, brain_mask, spacing = mni152_brain(2)
    assert image.shape == brain_mask.shape == (99, 117, 95)
    assert image.dtype == np.float32 and brain_mask.dtype == bool
    assert spacing == (2.0, 2.0, 2.0)
    # Independent truth: the bundled files read directly, normalised here by hand.
    raw = nilearn_datasets.load_mni152_template(resolution=2).get_fdata()
    mask = nilearn_datasets.load_mni152_brain_mask(resolution=2).get_fdata() > 0
    np.testing.assert_array_equal(brain_mask, mask)
    expected = (raw[mask] - raw[mask].mean()) / raw[mask].std()
    np.testing.assert_allclose(image[mask], expected, rtol=1e-5, atol=1e-5)
    assert np.all(image[~mask] == 0)
    # The brain is a sizeable, contiguous part of the volume and has real contrast inside.
    assert 0.1 < brain_mask.mean() < 0.5
    assert image[mask].std() == pytest.approx(1.0, abs=1e-4)
    assert np.isfinite(image).all()


def test_mni152_axis_order_is_x_y_z_with_the_brain_taller_front_to_back_than_wide():
    image, brain_mask, _ = mni152_brain(2)
    extent = [np.ptp(np.nonzero(brain_mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]) for axis in range(3)]
    # Human brain: anterior-posterior (y) is its longest dimension, left-right (x) next.
    assert extent[1] > extent[0] > extent[2] * 0.9
    # The symmetric template is (nearly) mirror-symmetric along x, not along y.
    inside = brain_mask & brain_mask[::-1]
    assert np.corrcoef(image[inside], image[::-1][inside])[0, 1] > 0.9


def test_mni152_small_resolution_and_tissue_maps_share_the_grid():
    image, brain_mask, spacing = mni152_brain(4)
    grey, white = mni152_tissue_maps(4)
    assert image.shape == grey.shape == white.shape == (50, 59, 48)
    assert spacing == (4.0, 4.0, 4.0)
    for tissue in (grey, white):
        assert tissue.dtype == np.float32
        assert np.all(tissue[~brain_mask] == 0)
        assert tissue[brain_mask].std() == pytest.approx(1.0, abs=1e-4)
    # In a T1 image white matter is bright: the T1 correlates with the WM map, against the GM map.
    assert np.corrcoef(image[brain_mask], white[brain_mask])[0, 1] > 0.5
    assert np.corrcoef(image[brain_mask], grey[brain_mask])[0, 1] < 0


def test_chest_radiograph_range_dtype_and_orientation():
    cxr = chest_radiograph(128)
    assert cxr.shape == (128, 128) and cxr.dtype == np.float32
    assert cxr.min() == -1.0 and cxr.max() == 1.0
    # Histogram-equalised: roughly uniform, so the mean is near 0 and the quartiles near +-0.5.
    assert abs(float(cxr.mean())) < 0.15
    q1, q3 = np.quantile(cxr, [0.25, 0.75])
    assert -0.7 < q1 < -0.3 and 0.3 < q3 < 0.7
    # After MONOCHROME1 inversion the mediastinum/spine (central column) is brighter than the lungs
    # either side of it, in the middle rows of a PA chest radiograph.
    rows = slice(40, 90)
    centre = cxr[rows, 58:70].mean()
    lungs = np.concatenate([cxr[rows, 25:45].ravel(), cxr[rows, 83:103].ravel()]).mean()
    assert centre > lungs + 0.3


def test_chest_radiograph_follows_the_dicom_pixels():
    pydicom = pytest.importorskip("pydicom")
    import pydicom.data
    from skimage.transform import resize

    path = pydicom.data.get_testdata_file("RG1_UNCR.dcm", download=False)
    assert path is not None
    raw = pydicom.dcmread(path).pixel_array.astype(float)
    side = min(raw.shape)
    top, left = (raw.shape[0] - side) // 2, (raw.shape[1] - side) // 2
    small = resize(raw[top : top + side, left : left + side], (64, 64), anti_aliasing=True)
    # MONOCHROME1: high stored values are dark, so the processed image anti-correlates with the raw one
    # (histogram equalisation is monotonic; rank correlation would be -1 without resizing differences).
    cxr = chest_radiograph(64)
    assert np.corrcoef(small.ravel(), cxr.ravel())[0, 1] < -0.8


def test_natural_images_pool():
    images = natural_images(48)
    assert len(images) == len(NATURAL_IMAGE_NAMES) == 12
    for image in images:
        assert image.shape == (48, 48) and image.dtype == np.float32
        assert image.min() == -1.0 and image.max() == 1.0
    # All different images (no accidental duplicates).
    flat = np.stack([image.ravel() for image in images])
    correlation = np.corrcoef(flat)
    assert np.all(correlation[~np.eye(len(images), dtype=bool)] < 0.99)


@pytest.mark.parametrize(
    "loader",
    [
        lambda: mni152_brain(4)[0],
        lambda: mni152_brain(4)[1],
        lambda: mni152_tissue_maps(4)[0],
        lambda: chest_radiograph(32),
        lambda: natural_images(16)[0],
    ],
    ids=["brain", "brain_mask", "tissue", "cxr", "natural"],
)
def test_results_are_deterministic_copies_that_callers_may_modify(loader):
    first = loader()
    reference = first.copy()
    assert first.flags.writeable
    first[...] = 0  # a caller mutating its result must not change the cache
    second = loader()
    np.testing.assert_array_equal(second, reference)
    assert second is not first


@pytest.mark.parametrize("bad", [0, -2, 2.5, "2", True])
def test_bad_sizes_are_rejected_clearly(bad):
    with pytest.raises(ValueError, match="positive integer"):
        chest_radiograph(bad)
    with pytest.raises(ValueError, match="resolution_mm"):
        mni152_brain(bad)
    with pytest.raises(ValueError, match="size"):
        natural_images(bad)


def test_missing_optional_package_names_the_extra(monkeypatch):
    # A None entry in sys.modules makes `import nilearn...` fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "nilearn", None)
    monkeypatch.setitem(sys.modules, "nilearn.datasets", None)
    offline_data._mni152_cached.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"nilearn.*pip install 'nnunet-anomaly\[demo\]'"):
            mni152_brain(3)
    finally:
        offline_data._mni152_cached.cache_clear()


def test_missing_radiograph_file_names_the_extra(monkeypatch):
    import pydicom.data

    monkeypatch.setattr(pydicom.data, "get_testdata_file", lambda *args, **kwargs: None)
    offline_data._chest_radiograph_cached.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pydicom-data.*nnunet-anomaly\[demo\]"):
            chest_radiograph(33)
    finally:
        offline_data._chest_radiograph_cached.cache_clear()
