"""Tests of the Gaussian labelling function against hand-worked values and the reference's morphology."""
import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import reconstruction

from nnunet_anomaly.labelling import gaussian_label


def test_reference_sample_values():
    # notes section 6: x = 0.1 -> 0.12, 0.2 -> 0.39, 0.3 -> 0.68, 0.4 -> 0.87, 0.5 -> 0.96, 0.6 -> 0.99
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    label = gaussian_label(np.zeros((1, 6)), x[None], np.ones(6, bool), fill_holes=False)
    np.testing.assert_allclose(label, [0.12, 0.39, 0.68, 0.87, 0.96, 0.99], atol=0.006)


def test_channel_mean_of_absolute_change_and_zero_outside():
    original = np.zeros((2, 3, 3))
    anomalous = original.copy()
    anomalous[0, 1, 1], anomalous[1, 1, 1] = 0.3, -0.1  # mean |change| = 0.2
    anomalous[:, 0, 0] = 5.0  # changed but outside the mask
    mask = np.zeros((3, 3), bool)
    mask[1, 1] = True
    label = gaussian_label(original, anomalous, mask)
    assert label.dtype == np.float32 and label.shape == (3, 3)
    assert label[1, 1] == pytest.approx(1 - np.exp(-0.5), abs=1e-6)
    assert label[0, 0] == 0 and np.count_nonzero(label) == 1


def test_sigma_scales_the_curve():
    label = gaussian_label(np.zeros((1, 1)), np.full((1, 1), 0.1), np.ones(1, bool), sigma=0.1)
    assert float(label[0]) == pytest.approx(1 - np.exp(-0.5), abs=1e-6)


def _reference_fill(y, mask):
    """The reference's labeller morphology, written out independently (and writing whole boxes)."""
    footprint = ndimage.generate_binary_structure(mask.ndim, 2)
    y = y.copy()
    for box in ndimage.find_objects(ndimage.label(mask)[0]):
        closed = ndimage.grey_closing(y[box], footprint=footprint)
        seed = closed.copy()
        seed[(slice(1, -1),) * mask.ndim] = closed.max()
        y[box] = reconstruction(seed, closed, method="erosion", footprint=footprint)
    return y


@pytest.mark.parametrize("ndim", [2, 3])
def test_fill_holes_matches_reference_inside_the_mask(ndim):
    rng = np.random.default_rng(ndim)
    shape = (12,) * ndim
    mask = np.zeros(shape, bool)
    mask[(slice(2, 7),) * ndim] = True
    mask[(slice(8, 11),) * ndim] = True
    original = rng.normal(size=(1,) + shape)
    anomalous = original + rng.uniform(-0.5, 0.5, size=(1,) + shape)
    ours = gaussian_label(original, anomalous, mask, fill_holes=True)
    plain = np.where(mask, 1 - np.exp(-np.abs(anomalous - original)[0] ** 2 / 0.08), 0)
    expected = _reference_fill(plain, mask)
    np.testing.assert_allclose(ours[mask], expected[mask], atol=1e-6)
    assert np.all(ours[~mask] == 0)
    assert np.all(ours >= gaussian_label(original, anomalous, mask) - 1e-6)  # closing only raises


def test_ring_centre_is_filled():
    # notes section 6: a ring-shaped change with an unchanged centre gets the ring's value there
    ring = np.full((1, 7, 7), 0.5)
    ring[0, 3, 3] = 0.02
    label = gaussian_label(np.zeros((1, 7, 7)), ring, np.ones((7, 7), bool))
    assert label[3, 3] == pytest.approx(label[1, 1], abs=1e-6)
    assert gaussian_label(np.zeros((1, 7, 7)), ring, np.ones((7, 7), bool), fill_holes=False)[3, 3] < 0.01


def test_empty_mask_gives_zero_label():
    label = gaussian_label(np.zeros((1, 4, 4)), np.ones((1, 4, 4)), np.zeros((4, 4), bool), fill_holes=True)
    assert label.shape == (4, 4) and not label.any()


@pytest.mark.parametrize(
    "original, anomalous, mask, sigma, message",
    [
        (np.zeros((1, 4, 4)), np.zeros((1, 4, 5)), np.ones((4, 4), bool), 0.2, "same shape"),
        (np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), np.ones((4, 5), bool), 0.2, "spatial shape"),
        (np.zeros((1, 4, 4)), np.full((1, 4, 4), np.nan), np.ones((4, 4), bool), 0.2, "NaN"),
        (np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), np.ones((4, 4), bool), 0.0, "sigma"),
        (np.zeros(4), np.zeros(4), np.ones(4, bool), 0.2, "channel-first"),
    ],
)
def test_bad_input(original, anomalous, mask, sigma, message):
    with pytest.raises(ValueError, match=message):
        gaussian_label(original, anomalous, mask, sigma)


def test_inputs_untouched():
    original = np.random.default_rng(0).normal(size=(1, 8, 8))
    anomalous = original + 0.3
    mask = np.ones((8, 8), bool)
    copies = original.copy(), anomalous.copy(), mask.copy()
    gaussian_label(original, anomalous, mask, fill_holes=True)
    for a, b in zip((original, anomalous, mask), copies):
        np.testing.assert_array_equal(a, b)


def test_the_task_presets_label_like_the_reference():
    """The reference always closes and fills holes; so do the defaults and both presets."""
    from nnunet_anomaly.tasks import TaskOptions

    assert TaskOptions().fill_holes and TaskOptions.brain().fill_holes and TaskOptions.cxr().fill_holes
    ring = np.full((1, 7, 7), 0.6)
    ring[0, 3, 3] = 0.0
    assert gaussian_label(np.zeros((1, 7, 7)), ring, np.ones((7, 7), bool))[3, 3] > 0.9


def _close_and_fill_before(label, mask):
    """The labeller's closing and hole filling before issue 16 (scikit-image's reconstruction, float64), frozen."""
    footprint = ndimage.generate_binary_structure(mask.ndim, 2)
    out = label.astype(np.float64)
    regions, _ = ndimage.label(mask)
    for region in ndimage.find_objects(regions):
        closed = ndimage.grey_closing(out[region], footprint=footprint)
        seed = closed.copy()
        seed[(slice(1, -1),) * mask.ndim] = closed.max()
        out[region] = reconstruction(seed, closed, method="erosion", footprint=footprint)
    return np.where(mask, np.clip(out, 0.0, 1.0), 0.0).astype(np.float32)


@pytest.mark.parametrize("ndim", [2, 3])
def test_generator_labels_are_bit_for_bit_those_of_before(ndim, monkeypatch):
    """Issue 16 item 7: the faster hole filling gives the same labels, every task, several seeds."""
    from nnunet_anomaly import labelling
    from nnunet_anomaly.pools import ArrayPool
    from nnunet_anomaly.tasks import TASK_NAMES, TaskOptions, apply_tasks

    rng = np.random.default_rng(100 + ndim)
    shape = (96, 96) if ndim == 2 else (40, 48, 40)
    image = ndimage.gaussian_filter(rng.normal(size=shape), 2).astype(np.float32)[None]
    image /= image.std()
    other = ndimage.gaussian_filter(rng.normal(size=shape), 1).astype(np.float32)[None]
    pool = ArrayPool([image, other])
    options = TaskOptions.cxr() if ndim == 2 else TaskOptions.brain()
    fast = labelling._close_and_fill
    compared = filled = 0
    for seed in range(6):
        for task in TASK_NAMES:
            results = []
            for fill in (_close_and_fill_before, fast):
                monkeypatch.setattr(labelling, "_close_and_fill", fill)
                results.append(apply_tasks(image, [task], np.random.default_rng(seed), intra_pool=pool,
                                           inter_pool=pool, options=options))
            before, now = results
            np.testing.assert_array_equal(now.image, before.image)
            assert now.label.dtype == before.label.dtype and now.label.tobytes() == before.label.tobytes()
            raw = labelling.gaussian_label(image, before.image, before.mask, options.sigma, fill_holes=False)
            compared += 1
            filled += bool(np.any(before.label != raw))
    assert compared == 6 * len(TASK_NAMES) and filled > 0  # the filling did something to compare


@pytest.mark.parametrize("ndim", [2, 3])
def test_fill_basins_equals_scikit_images_reconstruction(ndim):
    from nnunet_anomaly.labelling import _reference_fill, fill_basins

    rng = np.random.default_rng(ndim)
    footprint = ndimage.generate_binary_structure(ndim, 2)
    for trial in range(8):
        shape = tuple(rng.integers(3, 30 if ndim == 2 else 14, size=ndim))
        values = ndimage.gaussian_filter(rng.uniform(size=shape), 1.5).astype(np.float32)
        values[values < np.quantile(values, 0.3)] = 0  # the label's zeros and saturated plateau
        values[values > np.quantile(values, 0.9)] = 1
        closed = ndimage.grey_closing(values, footprint=footprint)
        expected = _reference_fill(closed.astype(np.float64), footprint)
        got = fill_basins(closed, footprint)
        assert got.dtype == np.float32 and np.array_equal(got.astype(np.float64), expected), (trial, shape)
    bowl = np.full((5,) * ndim, 0.8, np.float32)
    bowl[(2,) * ndim] = 0.1
    assert fill_basins(bowl, footprint)[(2,) * ndim] == np.float32(0.8)  # a basin is filled to its rim
