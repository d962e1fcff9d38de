"""Property tests of apply_tasks over random shapes, dimensions, dtypes and foregrounds."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnunet_anomaly.pools import ArrayPool
from nnunet_anomaly.tasks import MIN_SPATIAL_SIZE, TASK_NAMES, PlacementError, TaskOptions
from nnunet_anomaly.tasks.recipe import _apply_tasks_detailed


@st.composite
def cases(draw):
    ndim = draw(st.sampled_from([2, 3]))
    top = 40 if ndim == 2 else 18
    spatial = tuple(draw(st.integers(MIN_SPATIAL_SIZE, top)) for _ in range(ndim))
    channels = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    image = (rng.normal(size=(channels,) + spatial) * draw(st.sampled_from([0.01, 1.0, 100.0]))).astype(dtype)
    kind = draw(st.sampled_from(["none", "full", "box", "sparse", "single"]))
    foreground = None
    if kind == "full":
        foreground = np.ones(spatial, bool)
    elif kind == "box":
        lo = [draw(st.integers(0, s - 1)) for s in spatial]
        hi = [draw(st.integers(l + 1, s)) for l, s in zip(lo, spatial)]
        foreground = np.zeros(spatial, bool)
        foreground[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    elif kind == "sparse":
        foreground = rng.random(spatial) < draw(st.sampled_from([0.05, 0.5]))
        foreground.flat[0] = True
    elif kind == "single":
        foreground = np.zeros(spatial, bool)
        foreground[tuple(s // 2 for s in spatial)] = True
    tasks = draw(st.lists(st.sampled_from(TASK_NAMES), min_size=1, max_size=5, unique=True))
    source_shape = tuple(draw(st.integers(2, 30)) for _ in range(ndim))
    source = rng.normal(size=(1,) + source_shape).astype(np.float32)
    source_mask = rng.random(source_shape) < 0.3 if draw(st.booleans()) else None
    order = draw(st.sampled_from([1, 3]))
    return image, foreground, tasks, ArrayPool([image]), ArrayPool([source], masks=[source_mask]), seed, order


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_apply_tasks_properties(case):
    image, foreground, tasks, intra, inter, seed, order = case
    before = image.copy()
    try:
        result, records = _apply_tasks_detailed(
            image, tasks, np.random.default_rng(seed), foreground=foreground, intra_pool=intra, inter_pool=inter,
            options=TaskOptions(interpolation_order=order),
        )
    except PlacementError:
        assert foreground is not None  # only a foreground can make placement impossible
        return
    np.testing.assert_array_equal(image, before)
    assert result.image.dtype == image.dtype and result.image.shape == image.shape
    assert np.isfinite(result.image).all()
    assert result.label.dtype == np.float32 and np.isfinite(result.label).all()
    assert result.label.min() >= 0 and result.label.max() <= 1
    assert np.all(result.label[~result.mask] == 0)
    assert result.n_anomalies == len(records) >= 1
    inside = np.zeros(result.mask.shape, bool)
    for record in records:
        inside[record.box] = True
    assert not np.any(result.mask & ~inside)  # the mask lies within the anomalies' boxes
    assert np.all(result.image[:, ~inside] == image[:, ~inside])  # nothing changes outside them
    # every value stays within the image's per-channel range (all tasks clip)
    axes = tuple(range(1, image.ndim))
    assert np.all(result.image.min(axis=axes) >= image.min(axis=axes))
    assert np.all(result.image.max(axis=axes) <= image.max(axis=axes))
