"""Unit tests of the synthetic anomaly tasks and the shared recipe, against independent truths."""
import itertools
import pickle

import numpy as np
import pytest

from nnunet_anomaly.pools import ArrayPool
from nnunet_anomaly.tasks import (
    MIN_SPATIAL_SIZE,
    TASK_NAMES,
    TASKS,
    AnomalyShape,
    AnomalyTask,
    DeformationParams,
    Placement,
    PlacementError,
    SmoothIntensityParams,
    TaskOptions,
    apply_deformation,
    apply_smooth_intensity,
    apply_tasks,
    deformation_factor,
    register_task,
    sample_blend_params,
    sample_deformation_params,
    sample_shape,
    sample_smooth_intensity_params,
)
from nnunet_anomaly.tasks.blending import resample_source_patch
from nnunet_anomaly.tasks.recipe import _apply_tasks_detailed

IDENTITY2 = ((1.0, 0.0), (0.0, 1.0))


def _phantom(shape, channels=1, seed=0, dtype=np.float32):
    """A smooth blob plus noise: contrast everywhere, like a z-scored scan."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    blob = np.exp(-sum(g**2 for g in grids) * 2)
    image = np.stack([blob * (c + 1) + 0.1 * rng.normal(size=shape) for c in range(channels)])
    return image.astype(dtype)


def _pools(image):
    return dict(intra_pool=ArrayPool([image]), inter_pool=ArrayPool([_phantom(image.shape[1:], image.shape[0], seed=7)]))


# --- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spatial, median_range, fill_range",
    [((80, 112, 80), (25, 33), (0.10, 0.24)), ((256, 256), (60, 78), (0.38, 0.56))],
)
def test_shape_statistics_match_reference(spatial, median_range, fill_range):
    # Reference measurements (notes 3.1): 3D bbox side median 27-31, fill ~16%; 2D median 69, fill ~47%.
    rng = np.random.default_rng(0)
    shapes = [sample_shape(rng, spatial) for _ in range(300)]
    sides = np.concatenate([s.bbox_shape for s in shapes])
    assert median_range[0] <= np.median(sides) <= median_range[1]
    fills = [s.mask().mean() for s in shapes]
    assert fill_range[0] <= np.median(fills) <= fill_range[1]
    kinds = [s.kind for s in shapes]
    assert 0.4 < kinds.count("rectangle") / len(kinds) < 0.6
    upper = np.round(0.8 * np.array(spatial))
    assert all(np.all(np.array(s.bbox_shape) <= upper + 2) for s in shapes)
    # raw side fraction 0.03 + Gamma(2, 0.1) has median ~0.20
    fractions = np.concatenate([np.array(s.side_lengths) / np.array(spatial) for s in shapes])
    assert 0.17 <= np.median(fractions) <= 0.23


def test_shape_mask_is_sheared_rotated_geometry():
    # A 45-degree rotated square of side 11: a diamond, |x| + |y| <= 11 / sqrt(2)
    c = np.cos(np.pi / 4)
    shape = AnomalyShape("rectangle", (11, 11), ((c, -c), (c, c)))
    mask = shape.mask()
    half = (np.array(mask.shape) - 1) / 2
    y, x = np.indices(mask.shape) - half[:, None, None]
    expected = (np.abs(x * c + y * c) <= 5.5) & (np.abs(-y * c + x * c) <= 5.5)
    np.testing.assert_array_equal(mask, expected)
    assert mask[tuple(half.astype(int))]


def test_distance_to_edge_rectangle_and_ellipse():
    rect = AnomalyShape("rectangle", (10, 6), IDENTITY2)
    centre = (np.array(rect.bbox_shape) - 1) / 2
    dirs = np.array([[1.0, 0.0, np.sqrt(0.5)], [0.0, 1.0, np.sqrt(0.5)]])
    np.testing.assert_allclose(rect.distance_to_edge(centre, dirs), [5.0, 3.0, 3 * np.sqrt(2)])
    ellipse = AnomalyShape("ellipsoid", (10, 6), IDENTITY2)
    np.testing.assert_allclose(ellipse.distance_to_edge(centre, dirs[:, :2]), [5.0, 3.0])
    # off-centre origin: from (1, 0) along +x the edge is 4 away, along -x 6 away
    origin = centre + np.array([1.0, 0.0])
    np.testing.assert_allclose(ellipse.distance_to_edge(origin, np.array([[1.0, -1.0], [0.0, 0.0]])), [4.0, 6.0])


def test_shape_fits_tiny_images():
    rng = np.random.default_rng(1)
    for _ in range(200):
        shape = sample_shape(rng, (5, 6, 7))
        assert np.all(np.array(shape.bbox_shape) <= (5, 6, 7))
        assert shape.mask().any()


# --- deformations -------------------------------------------------------------------------------


def test_deformation_factor_bounds_and_push():
    rng = np.random.default_rng(0)
    for options, spatial in [(TaskOptions.brain(), (80, 112, 80)), (TaskOptions.cxr(), (256, 256))]:
        factors, pushes = [], []
        for _ in range(150):
            shape = sample_shape(rng, spatial)
            for kind in ("sink", "source"):
                p = sample_deformation_params(rng, kind, Placement(shape, (0,) * len(spatial)), options)
                factors.append(p.factor)
                pushes.append(p.push)
        factors, pushes = np.array(factors), np.array(pushes)
        assert np.all(factors >= 1.336 - 1e-3) and np.all(factors <= 58.4 + 1e-3)  # reference bounds
        assert np.all(pushes <= options.max_push + 1e-9)
        assert 1.8 < np.median(factors) < 3.2  # reference medians ~2.5 (brain), ~2.1 (CXR)


@pytest.mark.parametrize("kind", ["sink", "source"])
def test_deformation_curve_passes_through_push_point(kind):
    size, push = 12.0, 2.5
    f = deformation_factor(kind, size, push)
    o = push / np.sqrt(2)
    x, y = (size / 2 - o, size / 2 + o) if kind == "sink" else (size / 2 + o, size / 2 - o)
    r_new = size - (size - x) ** f / size ** (f - 1) if kind == "sink" else x**f / size ** (f - 1)
    assert r_new == pytest.approx(y)
    # the point (x, y) is `push` away from the identity line
    assert abs(y - x) / np.sqrt(2) == pytest.approx(push)


@pytest.mark.parametrize("kind", ["sink", "source"])
def test_deformation_samples_where_the_formula_says(kind):
    # Coordinate ramps as channels: after the remap each voxel holds the point it sampled (order 1 is exact).
    disc = AnomalyShape("ellipsoid", (31, 31), IDENTITY2)
    size = 41
    ramps = np.stack(np.indices((size, size)).astype(float))
    corner = (5, 5)
    centre_local = (15, 15)
    params = DeformationParams(Placement(disc, corner), kind, centre_local, 2.5, 0.0)
    out = apply_deformation(ramps, params)
    mask = disc.mask()
    radius_edge = 15.5  # diameter 31: the analytic edge is 15.5 from the centre in every direction
    for local in [(15, 20), (10, 15), (20, 24), (15, 5)]:  # sampling points inside the patch
        assert mask[local]
        offset = np.array(local, float) - centre_local
        r = np.linalg.norm(offset)
        f = 2.5
        r_new = radius_edge - (radius_edge - r) ** f / radius_edge ** (f - 1) if kind == "sink" else r**f / radius_edge ** (f - 1)
        expected = np.array(centre_local) + np.array(corner) + r_new * offset / r
        np.testing.assert_allclose(out[:, local[0] + corner[0], local[1] + corner[1]], expected, atol=1e-9)
        assert (r_new > r) if kind == "sink" else (r_new < r)
    outside = np.ones((size, size), bool)
    outside[5:36, 5:36] = ~mask
    np.testing.assert_array_equal(out[:, outside], ramps[:, outside])


def test_deformation_is_clipped_to_patch_range_at_order_3():
    rng = np.random.default_rng(0)
    image = np.zeros((1, 40, 40))
    image[0, ::2] = 1.0  # stripes: cubic splines overshoot here
    disc = AnomalyShape("ellipsoid", (25, 25), IDENTITY2)
    params = DeformationParams(Placement(disc, (7, 7)), "sink", (12, 12), 3.0, 0.0, interpolation_order=3)
    out = apply_deformation(image, params)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.array_equal(out, image)
    del rng


# --- smooth intensity change --------------------------------------------------------------------


def test_intensity_change_magnitude_and_margin_statistics():
    rng = np.random.default_rng(0)
    image = np.zeros((1, 80, 112, 80), np.float32)
    placement = Placement(AnomalyShape("rectangle", (3, 3, 3), tuple(map(tuple, np.eye(3)))), (0, 0, 0))
    draws = [sample_smooth_intensity_params(rng, image, placement, TaskOptions()) for _ in range(3000)]
    magnitudes = np.abs([d.deltas[0] for d in draws])
    # reference: |delta| = 0.1 + Gamma(3, 0.2): mean 0.70, median 0.64, 5-95% 0.26-1.36
    assert 0.66 < magnitudes.mean() < 0.74
    assert 0.60 < np.median(magnitudes) < 0.68
    assert magnitudes.min() >= 0.1
    signs = np.sign([d.deltas[0] for d in draws])
    assert 0.45 < np.mean(signs > 0) < 0.55
    margins = np.array([d.margin for d in draws])
    assert 3.4 < np.median(margins) < 4.0  # reference median 3.7 voxels on an 80-voxel axis


def test_intensity_change_plateau_ramp_and_clipping():
    disc = AnomalyShape("ellipsoid", (21, 21), IDENTITY2)
    image = np.zeros((2, 30, 30))
    image[:, 0, 0] = -5.0
    image[:, -1, -1] = 5.0
    params = SmoothIntensityParams(Placement(disc, (4, 4)), margin=3.0, deltas=(0.5, -7.0))
    out = apply_smooth_intensity(image, params)
    assert out[0, 14, 14] == pytest.approx(0.5)  # plateau = delta
    assert out[1, 14, 14] == pytest.approx(-5.0)  # clipped to the channel's minimum
    change = out - image
    inside = np.zeros((30, 30), bool)
    inside[4:25, 4:25] = disc.mask()
    assert np.all(change[:, ~inside] == 0)
    ring = change[0][inside]
    assert ring.min() > 0 and np.any(ring < 0.5)  # a ramp towards the edge
    np.testing.assert_array_equal(image[:, 5:9, 5:9], 0)  # input untouched


# --- blending -----------------------------------------------------------------------------------


class _FixedPool:
    def __init__(self, image, mask=None):
        self.image, self.mask = image, mask

    def __len__(self):
        return 1

    def sample(self, rng):
        return self.image, self.mask


def test_blend_source_patch_identity_transform_copies_the_region():
    source = np.random.default_rng(0).normal(size=(1, 30, 30))
    image = np.zeros((1, 40, 40))
    placement = Placement(AnomalyShape("rectangle", (6, 6), IDENTITY2), (0, 0))
    params = sample_blend_params(np.random.default_rng(0), image, placement, TaskOptions(), _FixedPool(source))
    from dataclasses import replace

    params = replace(params, matrix=IDENTITY2, offset=(0.0, 0.0), region_shape=(7, 7), source_corner=(3, 4))
    np.testing.assert_allclose(resample_source_patch(params)[0], source[0, 3:10, 4:11])  # bbox of side 6 is 7


def test_blend_scale_rotation_and_source_location_statistics():
    rng = np.random.default_rng(0)
    source = np.random.default_rng(1).normal(size=(1, 100, 100))
    source_mask = np.zeros((100, 100), bool)
    source_mask[60:90, 10:40] = True
    image = np.zeros((1, 128, 128))
    placement = Placement(AnomalyShape("rectangle", (20, 20), IDENTITY2), (0, 0))
    scales, centres_ok = [], []
    for _ in range(500):
        p = sample_blend_params(rng, image, placement, TaskOptions(), _FixedPool(source, source_mask))
        matrix = np.array(p.matrix)
        scale = np.sqrt(abs(np.linalg.det(matrix)))
        scales.append(scale)
        angle = np.arctan2(matrix[1, 0], matrix[0, 0])
        assert abs(angle) <= np.pi / 4 + 1e-9
        assert np.all(np.array(p.region_shape) <= 0.8 * 100 + 1)
        centre = np.array(p.source_corner) + np.array(p.region_shape) // 2
        centres_ok.append(source_mask[tuple(centre)])
    stretch = np.maximum(scales, 1 / np.array(scales))
    assert 1.05 < np.median(stretch) < 1.10  # 1 + Exp(0.1): median 1.07
    assert 0.4 < np.mean(np.array(scales) > 1) < 0.6
    assert all(centres_ok)


def test_blend_small_source_is_scaled_to_fit():
    source = np.random.default_rng(1).normal(size=(1, 8, 8))
    image = _phantom((128, 128))
    placement = Placement(AnomalyShape("rectangle", (60, 60), IDENTITY2), (10, 10))
    p = sample_blend_params(np.random.default_rng(0), image, placement, TaskOptions(), _FixedPool(source))
    assert np.all(np.array(p.region_shape) <= 8)
    out = TASKS["inter_blend"].apply(image, p)
    assert np.isfinite(out.image).all() and out.mask.any()


def test_blend_errors_for_mismatched_sources():
    image = _phantom((32, 32))
    placement = Placement(AnomalyShape("rectangle", (6, 6), IDENTITY2), (2, 2))
    with pytest.raises(ValueError, match="spatial dimensions"):
        sample_blend_params(np.random.default_rng(0), image, placement, TaskOptions(), _FixedPool(np.ones((1, 8, 8, 8))))
    with pytest.raises(ValueError, match="channels"):
        sample_blend_params(np.random.default_rng(0), image, placement, TaskOptions(), _FixedPool(np.ones((3, 8, 8))))
    with pytest.raises(ValueError, match="inter_pool"):
        apply_tasks(image, ["inter_blend"], np.random.default_rng(0))


def test_blend_mask_covers_every_changed_voxel_and_changes_stay_in_the_box():
    image = _phantom((64, 64))
    for seed in range(10):
        result, records = _apply_tasks_detailed(image, ["intra_blend", "inter_blend"], np.random.default_rng(seed), **_pools(image))
        change = np.abs(result.image - image).mean(axis=0)
        assert np.all(result.mask[change > 0.001])
        inside = np.zeros(change.shape, bool)
        for record in records:
            inside[record.box] = True
        assert np.all(change[~inside] == 0)
        assert result.image.min() >= image.min() and result.image.max() <= image.max()


# --- the recipe ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial", [(48, 48), (20, 28, 24)])
@pytest.mark.parametrize("task", TASK_NAMES)
def test_every_task_2d_3d_reproducible_and_inputs_untouched(spatial, task):
    image = _phantom(spatial, channels=2)
    foreground = np.zeros(spatial, bool)
    foreground[tuple(slice(s // 5, s - s // 5) for s in spatial)] = True
    pools = _pools(image)
    before = image.copy(), foreground.copy(), pools["intra_pool"][0][0].copy()
    a = apply_tasks(image, [task], np.random.default_rng(3), foreground=foreground, **pools)
    b = apply_tasks(image, [task], np.random.default_rng(3), foreground=foreground, **pools)
    c = apply_tasks(image, [task], np.random.default_rng(4), foreground=foreground, **pools)
    np.testing.assert_array_equal(image, before[0])
    np.testing.assert_array_equal(foreground, before[1])
    np.testing.assert_array_equal(pools["intra_pool"][0][0], before[2])
    assert a.task == task and a.image.dtype == np.float32 and a.image.shape == image.shape
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.image, c.image)
    assert a.mask.any() and 1 <= a.n_anomalies <= 4
    assert a.label.dtype == np.float32 and a.label.min() >= 0 and a.label.max() <= 1
    assert np.all(a.label[~a.mask] == 0) and a.label.max() > 0
    changed = np.abs(a.image - image).max(axis=0) > 0
    assert np.all(a.mask[changed] | (np.abs(a.image - image).mean(axis=0)[changed] <= 0.001))


def test_label_equals_gaussian_of_change():
    image = _phantom((40, 40), dtype=np.float64)
    raw = apply_tasks(image, ["smooth_intensity"], np.random.default_rng(0), options=TaskOptions(fill_holes=False))
    change = np.abs(raw.image - image).mean(axis=0)
    expected = np.where(raw.mask, 1 - np.exp(-(change**2) / (2 * 0.2**2)), 0)
    np.testing.assert_allclose(raw.label, expected, atol=1e-6)
    filled = apply_tasks(image, ["smooth_intensity"], np.random.default_rng(0))  # the default closes and fills
    np.testing.assert_array_equal(filled.image, raw.image)
    assert np.all(filled.label >= raw.label - 1e-6) and np.all(filled.label[~filled.mask] == 0)


def test_number_of_anomalies_follows_the_geometric_rule():
    image = _phantom((32, 32))
    counts = [apply_tasks(image, ["smooth_intensity"], np.random.default_rng(s)).n_anomalies for s in range(400)]
    counts = np.bincount(counts, minlength=5)[1:] / 400
    np.testing.assert_allclose(counts, [0.5, 0.25, 0.125, 0.125], atol=0.07)
    one = apply_tasks(image, ["sink"], np.random.default_rng(0), options=TaskOptions(max_anomalies=1))
    assert one.n_anomalies == 1


def test_placement_respects_the_foreground():
    image = _phantom((64, 64))
    foreground = np.zeros((64, 64), bool)
    foreground[40:, 40:] = True
    for seed in range(30):
        result, records = _apply_tasks_detailed(image, ["smooth_intensity"], np.random.default_rng(seed), foreground=foreground)
        for record in records:
            placement = record.params.placement
            mask = placement.shape.mask()
            assert (mask & foreground[placement.slices]).sum() >= 0.5 * mask.sum()


def test_tiny_foreground_raises_placement_error_quickly():
    image = _phantom((64, 64))
    foreground = np.zeros((64, 64), bool)
    foreground[10, 10] = True
    with pytest.raises(PlacementError, match="foreground"):
        apply_tasks(image, ["sink"], np.random.default_rng(0), foreground=foreground)
    assert issubclass(PlacementError, ValueError)


@pytest.mark.parametrize(
    "image, kwargs, message",
    [
        (np.arange(3.0), {}, "spatial dimensions"),  # no spatial axis after the channel axis
        (np.full((1, 16, 16), 3.0), {}, "constant"),
        (np.where(np.eye(16, dtype=bool)[None], np.nan, 1.0), {}, "NaN"),
        (np.random.default_rng(0).normal(size=(1, 4, 16)), {}, "smaller than the smallest"),
        (np.random.default_rng(0).normal(size=(1, 16, 16)), {"foreground": np.zeros((16, 16), bool)}, "empty"),
        (np.random.default_rng(0).normal(size=(1, 16, 16)), {"foreground": np.ones((16, 15), bool)}, "spatial shape"),
        (np.random.default_rng(0).normal(size=(1, 16, 16)), {"tasks": ["blur"]}, "unknown task"),
        (np.random.default_rng(0).normal(size=(1, 16, 16)), {"tasks": []}, "empty"),
        (np.random.default_rng(0).normal(size=(1, 16, 16)), {"rng": 0}, "Generator"),
    ],
)
def test_bad_input_gives_clear_value_error(image, kwargs, message):
    tasks = kwargs.pop("tasks", ["sink"])
    rng = kwargs.pop("rng", np.random.default_rng(0))
    with pytest.raises(ValueError, match=message):
        apply_tasks(image, tasks, rng, **kwargs)


def test_order_three_option_changes_resampling_only():
    image = _phantom((48, 48))
    pools = _pools(image)
    a = apply_tasks(image, ["inter_blend"], np.random.default_rng(5), **pools)
    b = apply_tasks(image, ["inter_blend"], np.random.default_rng(5), options=TaskOptions(interpolation_order=3), **pools)
    assert a.n_anomalies == b.n_anomalies
    assert not np.array_equal(a.image, b.image)
    np.testing.assert_allclose(a.image, b.image, atol=2.0)


def test_options_tasks_and_results_pickle():
    options = TaskOptions.cxr(interpolation_order=3)
    assert pickle.loads(pickle.dumps(options)) == options
    for name in TASK_NAMES:
        task = pickle.loads(pickle.dumps(TASKS[name]))
        assert task.name == name and isinstance(task, AnomalyTask)
    image = _phantom((24, 24))
    result = apply_tasks(image, ["source"], np.random.default_rng(0))
    again = pickle.loads(pickle.dumps(result))
    np.testing.assert_array_equal(again.label, result.label)
    with pytest.raises(ValueError, match="interpolation_order"):
        TaskOptions(interpolation_order=7)


def test_a_sixth_task_can_be_registered():
    class Negate(AnomalyTask):
        name = "negate_test"

        def sample_params(self, rng, image, placement, options, *, intra_pool=None, inter_pool=None):
            return placement

        def apply_into(self, work, params):
            mask = params.shape.mask()
            patch = work[(slice(None),) + params.slices]
            patch[:, mask] = -patch[:, mask]
            return params.slices, mask

    register_task(Negate())
    try:
        image = _phantom((32, 32)) + 1
        result = apply_tasks(image, ["negate_test"], np.random.default_rng(0))
        np.testing.assert_allclose(result.image[:, result.mask], -image[:, result.mask])
        with pytest.raises(ValueError, match="already registered"):
            register_task(Negate())
    finally:
        TASKS.pop("negate_test")


def test_multichannel_source_broadcast_and_channel_signs():
    image = _phantom((40, 40), channels=3)
    gray_source = ArrayPool([_phantom((50, 50), channels=1, seed=3)])
    result = apply_tasks(image, ["inter_blend"], np.random.default_rng(0), inter_pool=gray_source)
    assert result.image.shape == (3, 40, 40) and result.mask.any()
    rng = np.random.default_rng(0)
    placement = Placement(AnomalyShape("rectangle", (3, 3), IDENTITY2), (0, 0))
    deltas = np.array([sample_smooth_intensity_params(rng, image, placement, TaskOptions()).deltas for _ in range(50)])
    np.testing.assert_allclose(np.abs(deltas), np.abs(deltas[:, :1]) * np.ones((1, 3)))  # one magnitude per draw
    assert np.any(np.sign(deltas[:, 0]) != np.sign(deltas[:, 1]))  # independent signs


def test_min_spatial_size_is_enforced_and_sufficient():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1,) + (MIN_SPATIAL_SIZE,) * 3)
    for task, seed in itertools.product(TASK_NAMES, range(3)):
        result = apply_tasks(image, [task], np.random.default_rng(seed), **_pools(image))
        assert np.isfinite(result.image).all()


def test_windowed_inside_distance_gives_the_edt_ramp():
    from scipy import ndimage

    from nnunet_anomaly.tasks.intensity import inside_distance

    rng = np.random.default_rng(0)
    for spatial in [(80, 112, 80), (256, 256), (9, 9, 9)]:
        for _ in range(15):
            mask = sample_shape(rng, spatial).mask()
            margin = min(spatial) * (0.02 + rng.gamma(3, 0.01))
            exact = ndimage.distance_transform_edt(np.pad(mask, 1))[(slice(1, -1),) * mask.ndim]
            fast = inside_distance(mask, margin)
            assert min(margin, fast.max()) == pytest.approx(min(margin, exact.max()))
            width = min(margin, exact.max())
            np.testing.assert_allclose(np.minimum(fast / width, 1)[mask], np.minimum(exact / width, 1)[mask], atol=1e-6)


def test_reference_hooks_give_the_same_result():
    """The benchmark's reference-like switches change the cost, not the outcome (at equal order)."""
    from scipy import ndimage

    from nnunet_anomaly.tasks import deformation, intensity

    image = _phantom((40, 36))
    plain = [apply_tasks(image, [t], np.random.default_rng(2)) for t in ("sink", "source", "smooth_intensity")]
    deformation._remap_whole_patch = True
    intensity._inside_distance_function = lambda m, cap: ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    try:
        hooked = [apply_tasks(image, [t], np.random.default_rng(2)) for t in ("sink", "source", "smooth_intensity")]
    finally:
        deformation._remap_whole_patch = False
        intensity._inside_distance_function = intensity.inside_distance
    for a, b in zip(plain, hooked):
        np.testing.assert_allclose(a.image, b.image, atol=1e-5)
        np.testing.assert_array_equal(a.mask, b.mask)


@pytest.mark.parametrize("spatial", [(64,), (12, 10, 9, 8)])
def test_any_number_of_spatial_dimensions(spatial):
    image = np.random.default_rng(0).normal(size=(1,) + spatial)
    for task in TASK_NAMES:
        result = apply_tasks(image, [task], np.random.default_rng(1), **_pools(image))
        assert result.mask.any() and np.isfinite(result.image).all()
        assert np.all(result.label[~result.mask] == 0)


def test_blend_with_sparse_resampling_equals_full_patch_blend():
    """Resampling only the gradient support gives the blend of the source resampled over the grown patch."""
    from nnunet_anomaly.poisson import poisson_blend
    from nnunet_anomaly.tasks.blending import _solver_margin

    for spatial, seed in [((48, 40), 0), ((24, 26, 22), 1), ((48, 40), 2)]:
        image = _phantom(spatial, channels=2, dtype=np.float64)
        rng = np.random.default_rng(seed)
        placement = Placement(sample_shape(rng, spatial), (3,) * len(spatial))
        for order in (1, 3):
            params = sample_blend_params(rng, image, placement, TaskOptions(interpolation_order=order),
                                         ArrayPool([_phantom(spatial, 1, seed=9, dtype=np.float64)]))
            out = TASKS["intra_blend"].apply(image, params)
            box = placement.slices
            crop = tuple(slice(max(0, b.start - _solver_margin(b.stop - b.start)),
                               min(n, b.stop + _solver_margin(b.stop - b.start))) for b, n in zip(box, spatial))
            # the source resampled over the patch box grown by one voxel (every box lies inside its crop)
            grown = tuple(slice(b.start - c.start - 1, b.stop - c.start + 1) for b, c in zip(box, crop))
            target = image[(slice(None),) + crop]
            source = target.copy()
            source[(slice(None),) + grown] = resample_source_patch(params, margin=1)
            inner = tuple(slice(g.start + 1, g.stop - 1) for g in grown)
            mask = np.zeros(target.shape[1:], bool)
            mask[inner] = placement.shape.mask()
            expected = poisson_blend(target, source, mask, mix_gradients=True, channel_axis=0)
            per_channel = (2,) + (1,) * len(spatial)
            low, high = image.reshape(2, -1).min(1).reshape(per_channel), image.reshape(2, -1).max(1).reshape(per_channel)
            expected = np.clip(expected, low, high)
            np.testing.assert_allclose(out.image[(slice(None),) + crop], expected, atol=1e-10)


def test_later_anomalies_that_cannot_be_placed_are_skipped(monkeypatch):
    from nnunet_anomaly.tasks import recipe

    calls = []
    real = recipe._sample_placement

    def first_only(*args):
        calls.append(1)
        return real(*args) if len(calls) == 1 else None

    monkeypatch.setattr(recipe, "_sample_placement", first_only)
    image = _phantom((32, 32))
    result = apply_tasks(image, ["smooth_intensity"], np.random.default_rng(0), options=TaskOptions(p_another=1.0))
    assert len(calls) == 4 and result.n_anomalies == 1 and result.mask.any()
    full = TaskOptions(p_another=1.0)
    monkeypatch.setattr(recipe, "_sample_placement", real)
    assert apply_tasks(image, ["smooth_intensity"], np.random.default_rng(0), options=full).n_anomalies == 4


def _face_layers(mask, box):
    """Mask voxels on the first and on the last layer of `box` along any axis, outside the mask beyond it."""
    near, far = np.zeros(mask.shape, bool), np.zeros(mask.shape, bool)
    for axis, side in enumerate(box):
        before = [slice(None)] * mask.ndim
        before[axis] = side.start
        after = list(before)
        after[axis] = side.stop - 1
        near[tuple(before)] |= mask[tuple(before)]
        far[tuple(after)] |= mask[tuple(after)]
    return near & ~far, far & ~near


@pytest.mark.parametrize("spatial", [(64, 64), (32, 36, 30)])
@pytest.mark.parametrize("task", ["intra_blend", "inter_blend", "smooth_intensity"])
def test_blend_is_as_seamless_on_the_far_faces_as_on_the_near_faces(task, spatial):
    """A textured source at another level blended into a flat target: no cliff on any face.

    The source must be valid one voxel past the patch's far faces; without that, the forward
    differences there compare the target outside with the source inside, and the blend ramps up to a
    cliff on the far faces (ratio far/near ~8-19 before the fix). Smooth intensity is the yardstick.
    """
    rng = np.random.default_rng(0)
    grid = np.indices(spatial).astype(float)
    near_change, far_change = [], []
    for _ in range(40):
        image = 0.1 * rng.normal(size=(1, *spatial))
        image[0].flat[0], image[0].flat[-1] = -10.0, 10.0  # room for the blend in the image's range
        source = (3 + np.cos(grid[-1] / 3.0) + 0.2 * rng.normal(size=spatial))[None]
        shape = sample_shape(rng, spatial)
        corner = tuple(int(rng.integers(3, max(4, n - b - 2))) for n, b in zip(spatial, shape.bbox_shape))
        placement = Placement(shape, corner)
        params = TASKS[task].sample_params(rng, image, placement, TaskOptions(), intra_pool=ArrayPool([source]),
                                           inter_pool=ArrayPool([source]))
        change = np.abs(TASKS[task].apply(image, params).image - image)[0]
        mask = np.zeros(spatial, bool)
        mask[placement.slices] = shape.mask()
        near, far = _face_layers(mask, placement.slices)
        near_change.append(change[near])
        far_change.append(change[far])
    ratio = np.concatenate(far_change).mean() / np.concatenate(near_change).mean()
    assert 1 / 1.5 < ratio < 1.5, f"far/near change ratio {ratio:.2f}"
