"""poisson_blend against pie-torch's blend_dst_numpy, against the discrete Poisson equation, and its contract."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pietorch import blend_dst_numpy

from nnunet_anomaly.poisson import _is_fast_box_size, blend_box, poisson_blend

RELATIVE_TOLERANCE = 1e-5


def _pie_blend(target, source, mask, mix_gradients, channel_axis=None):
    """pie-torch's DST solver on exactly the box poisson_blend uses (its region = the source/mask crop)."""
    box = blend_box(mask)
    corner = np.array([s.start for s in box])
    if channel_axis is None:
        source_crop = source[box]
    else:
        crop = list(box)
        crop.insert(channel_axis % target.ndim, slice(None))
        source_crop = source[tuple(crop)]
    # pie-torch zeroes the faces of its mask argument in place: give it a float copy.
    mask_crop = mask[box].astype(np.float64).copy()
    return blend_dst_numpy(target, source_crop, mask_crop, corner, mix_gradients, channels_dim=channel_axis)


def _assert_relative_close(actual, expected, rtol=RELATIVE_TOLERANCE):
    scale = max(np.abs(expected).max(), 1e-12)
    error = np.abs(actual - expected).max() / scale
    assert error <= rtol, f"relative max error {error:.3g} > {rtol}"


def _blob_mask(shape, rng, margin=1):
    """A random ellipsoid-ish mask away from the image border (plus random voxels for irregular edges)."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij", sparse=True)
    radii = rng.uniform(0.4, 0.9, size=len(shape))
    mask = sum((g / r) ** 2 for g, r in zip(grids, radii)) < 1
    mask |= rng.random(shape) > 0.9
    inner = tuple(slice(margin, n - margin) for n in shape)
    trimmed = np.zeros(shape, dtype=bool)
    trimmed[inner] = mask[inner]
    return trimmed


def _residual(result, target, source, mask, mix_gradients):
    """Discrete Laplacian of the result minus the guidance divergence, over the box interior.

    Written independently of the module: the full guidance field v_d (source or mixed gradient where
    the face-zeroed mask is set at the difference's start voxel, target gradient elsewhere), its
    backward divergence, and the (2N+1)-point Laplacian stencil.
    """
    box = blend_box(mask)
    f, t, s = result[box], target[box], source[box]
    m = mask[box].copy()
    ndim = m.ndim
    for axis in range(ndim):
        index = [slice(None)] * ndim
        index[axis] = [0, -1]
        m[tuple(index)] = False
    interior = tuple(slice(1, -1) for _ in range(ndim))
    laplacian = np.zeros(tuple(n - 2 for n in m.shape))
    divergence = np.zeros_like(laplacian)
    for axis in range(ndim):
        forward = lambda a: np.diff(a, axis=axis)  # noqa: E731  v[i+1] - v[i], i = 0..n-2
        grad_t, grad_s = forward(t), forward(s)
        if mix_gradients:
            grad_s = np.where(np.abs(grad_t) >= np.abs(grad_s), grad_t, grad_s)
        start = [slice(None)] * ndim
        start[axis] = slice(0, -1)
        v = np.where(m[tuple(start)], grad_s, grad_t)
        others = list(interior)
        others[axis] = slice(None)
        divergence += np.diff(v[tuple(others)], axis=axis)
        centre, plus, minus = list(interior), list(interior), list(interior)
        plus[axis], minus[axis] = slice(2, None), slice(0, -2)
        laplacian += f[tuple(plus)] + f[tuple(minus)] - 2 * f[tuple(centre)]
    return np.abs(laplacian - divergence).max() / max(np.abs(divergence).max(), 1.0)


def _random_case(shape, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    target = rng.normal(size=shape).astype(dtype)
    source = (3 * rng.normal(size=shape) + 2).astype(dtype)
    return target, source, _blob_mask(shape, rng)


# --- (1) agreement with pie-torch -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40,), (33, 47), (21, 26, 19)])
@pytest.mark.parametrize("mix_gradients", [False, True])
def test_agrees_with_pietorch(shape, mix_gradients):
    target, source, mask = _random_case(shape, seed=len(shape))
    ours = poisson_blend(target, source, mask, mix_gradients=mix_gradients)
    _assert_relative_close(ours, _pie_blend(target, source, mask, mix_gradients))


@pytest.mark.parametrize("mix_gradients", [False, True])
def test_agrees_with_pietorch_with_channels(mix_gradients):
    rng = np.random.default_rng(5)
    target, source = rng.normal(size=(24, 30, 3)), rng.normal(size=(24, 30, 3)) * 2
    mask = _blob_mask((24, 30), rng)
    ours = poisson_blend(target, source, mask, mix_gradients=mix_gradients, channel_axis=-1)
    _assert_relative_close(ours, _pie_blend(target, source, mask, mix_gradients, channel_axis=-1))
    # channel-first gives the same numbers as channel-last
    first = poisson_blend(
        np.moveaxis(target, -1, 0), np.moveaxis(source, -1, 0), mask, mix_gradients=mix_gradients, channel_axis=0
    )
    np.testing.assert_allclose(np.moveaxis(first, 0, -1), ours, rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(3, 12), min_size=1, max_size=3).map(tuple),
    seed=st.integers(0, 2**32 - 1),
    mix_gradients=st.booleans(),
    fill=st.floats(0.05, 1.0),
)
def test_property_pietorch_and_residual(shape, seed, mix_gradients, fill):
    rng = np.random.default_rng(seed)
    target = rng.normal(size=shape)
    source = rng.normal(size=shape) * rng.uniform(0.1, 10)
    mask = rng.random(shape) < fill
    box = blend_box(mask)
    ours = poisson_blend(target, source, mask, mix_gradients=mix_gradients)
    assert ours.shape == target.shape and ours.dtype == target.dtype and np.isfinite(ours).all()
    if box is None or min(s.stop - s.start for s in box) < 3:
        np.testing.assert_array_equal(ours, target)
        return
    _assert_relative_close(ours, _pie_blend(target, source, mask, mix_gradients))
    assert _residual(ours, target, source, mask, mix_gradients) < 1e-10
    outside = np.ones(shape, dtype=bool)
    outside[tuple(slice(s.start + 1, s.stop - 1) for s in box)] = False
    np.testing.assert_array_equal(ours[outside], target[outside])  # faces and everything outside


# --- (2) the discrete Poisson equation itself --------------------------------------------------------------


@pytest.mark.parametrize("shape", [(50,), (40, 37), (18, 23, 20), (7, 8, 9, 6)])
@pytest.mark.parametrize("mix_gradients", [False, True])
def test_solves_the_discrete_poisson_equation(shape, mix_gradients):
    target, source, mask = _random_case(shape, seed=sum(shape))
    result = poisson_blend(target, source, mask, mix_gradients=mix_gradients)
    assert _residual(result, target, source, mask, mix_gradients) < 1e-10
    box = blend_box(mask)
    faces_and_outside = np.ones(shape, dtype=bool)
    faces_and_outside[tuple(slice(s.start + 1, s.stop - 1) for s in box)] = False
    np.testing.assert_array_equal(result[faces_and_outside], target[faces_and_outside])


def test_one_dimensional_closed_form():
    # 1-D, solved by hand.  The source has a unit step between voxels 2 and 3; the mask covers voxels
    # 2 and 3, so the guided forward differences are 2->3 (= 1) and 3->4 (= 0).  Box: bbox [2, 4) grown
    # by one voxel = [1, 5), 4 voxels, 2*(4-1) = 6 is FFT-friendly; unknowns h2, h3; h1 = h4 = 0.
    #   h1 - 2 h2 + h3 = G(2) - G(1) = 1 - 0,   h2 - 2 h3 + h4 = G(3) - G(2) = 0 - 1
    #   -> h2 = -1/3, h3 = 1/3: the step of 1 is shared between the guided jump (2/3) and the faces.
    target = np.zeros(9)
    source = np.zeros(9)
    source[3:] = 1.0
    mask = np.zeros(9, dtype=bool)
    mask[2:4] = True
    box = blend_box(mask)
    assert box == (slice(1, 5),)
    result = poisson_blend(target, source, mask)
    np.testing.assert_allclose(result, [0, 0, -1 / 3, 1 / 3, 0, 0, 0, 0, 0], atol=1e-14)


# --- (3) identities ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(30,), (25, 31), (12, 15, 14)])
@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_source_equal_to_target_gives_target(shape, dtype, atol):
    target = np.random.default_rng(1).normal(size=shape).astype(dtype)
    for mix_gradients in (False, True):
        result = poisson_blend(target, target.copy(), np.ones(shape, dtype=bool), mix_gradients=mix_gradients)
        np.testing.assert_allclose(result, target, rtol=0, atol=atol)


def test_constant_offset_source_changes_nothing():
    # Gradients of source = target + c equal target's: the solution is the target.
    target, _, mask = _random_case((30, 30), seed=3)
    np.testing.assert_allclose(poisson_blend(target, target + 100.0, mask), target, atol=1e-11)


def test_empty_mask_returns_a_copy():
    target = np.random.default_rng(0).normal(size=(8, 9)).astype(np.float32)
    result = poisson_blend(target, target * 2, np.zeros((8, 9), dtype=bool))
    assert result is not target
    np.testing.assert_array_equal(result, target)


def test_mask_on_the_border_keeps_border_values():
    target, source, _ = _random_case((20, 24), seed=4)
    mask = np.zeros((20, 24), dtype=bool)
    mask[:6, 18:] = True  # touches two image borders
    box = blend_box(mask)
    assert box[0].start == 0 and box[1].stop == 24
    result = poisson_blend(target, source, mask)
    np.testing.assert_array_equal(result[0], target[0])
    np.testing.assert_array_equal(result[:, -1], target[:, -1])
    assert not np.allclose(result[1:6, 18:23], target[1:6, 18:23])  # the inside did blend
    _assert_relative_close(result, _pie_blend(target, source, mask, False))


def test_tiny_images_without_interior_are_returned_unchanged():
    for shape in [(1,), (2,), (2, 5), (5, 1, 5)]:
        target = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
        result = poisson_blend(target, -target, np.ones(shape, dtype=bool))
        np.testing.assert_array_equal(result, target)


# --- (4)-(6) contract: inputs untouched, outside untouched, dtype/shape --------------------------------


@pytest.mark.parametrize("mix_gradients", [False, True])
def test_inputs_not_modified(mix_gradients):
    target, source, mask = _random_case((20, 22, 18), seed=7, dtype=np.float32)
    copies = target.copy(), source.copy(), mask.copy()
    poisson_blend(target, source, mask, mix_gradients=mix_gradients)
    for original, kept in zip((target, source, mask), copies):
        np.testing.assert_array_equal(original, kept)


def test_outside_the_box_untouched_and_inside_changed():
    target, source, mask = _random_case((64, 64), seed=8, dtype=np.float32)
    small = np.zeros_like(mask)
    small[20:30, 35:41] = True
    result = poisson_blend(target, source, small)
    box = blend_box(small)
    outside = np.ones(small.shape, dtype=bool)
    outside[box] = False
    np.testing.assert_array_equal(result[outside], target[outside])
    assert np.abs(result[small] - target[small]).max() > 0.1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(40,), (30, 28), (14, 16, 12)])
def test_dtype_and_shape_preserved_and_float32_close_to_float64(dtype, shape):
    target, source, mask = _random_case(shape, seed=9)
    result = poisson_blend(target.astype(dtype), source.astype(dtype), mask)
    assert result.dtype == dtype and result.shape == shape
    reference = poisson_blend(target, source, mask)
    np.testing.assert_allclose(result, reference, rtol=0, atol=1e-4 * np.abs(reference).max())


def test_float32_target_with_float64_source_stays_float32():
    target, source, mask = _random_case((20, 20), seed=10)
    assert poisson_blend(target.astype(np.float32), source, mask).dtype == np.float32


# --- blend_box -------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 80), min_size=1, max_size=3).map(tuple),
    seed=st.integers(0, 2**32 - 1),
    margin=st.integers(1, 3),
)
def test_blend_box_properties(shape, seed, margin):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=bool)
    corner = [rng.integers(0, n) for n in shape]
    extent = [rng.integers(1, n - c + 1) for n, c in zip(shape, corner)]
    mask[tuple(slice(c, c + e) for c, e in zip(corner, extent))] = True
    tight = blend_box(mask, margin=margin, fft_friendly=False)
    grown = blend_box(mask, margin=margin)
    for n, c, e, t, g in zip(shape, corner, extent, tight, grown):
        assert t.start == max(c - margin, 0) and t.stop == min(c + e + margin, n)
        assert 0 <= g.start <= t.start and t.stop <= g.stop <= n  # contains the tight box, inside the image
        size = g.stop - g.start
        fast_exists = any(_is_fast_box_size(m) for m in range(t.stop - t.start, n + 1))
        if fast_exists:
            assert _is_fast_box_size(size)
            assert not any(_is_fast_box_size(m) for m in range(t.stop - t.start, size))  # smallest such
        else:
            assert g == t


def test_fast_box_sizes():
    # n is fast when 2(n-1) has only the prime factors 2, 3, 5, 7 (performance-anchors section 5).
    assert [n for n in range(30, 70) if _is_fast_box_size(n)] == [
        31, 33, 36, 37, 41, 43, 46, 49, 50, 51, 55, 57, 61, 64, 65,
    ]
    assert not _is_fast_box_size(48) and not _is_fast_box_size(128) and _is_fast_box_size(129)


def test_blend_box_errors():
    with pytest.raises(ValueError, match="margin"):
        blend_box(np.ones(5, dtype=bool), margin=0)
    with pytest.raises(ValueError, match="at least one dimension"):
        blend_box(np.array(True))


# --- (7) clear errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(target=np.zeros((5, 5), dtype=np.int32)), "`target` must be float32 or float64; got dtype int32"),
        (dict(target=np.zeros((5, 5), dtype=np.float16)), "`target` must be float32 or float64"),
        (dict(source=np.zeros((5, 6))), r"`source` must have `target`'s shape \(5, 5\); got \(5, 6\)"),
        (dict(source=np.full((5, 5), "a")), "`source` must be a real numeric array"),
        (dict(mask=np.ones((5, 4), dtype=bool)), r"`mask` must have the image's spatial shape \(5, 5\)"),
        (dict(mask=np.full((5, 5), "x")), "`mask` must be boolean"),
        (dict(target=np.float64(1.0), source=np.float64(1.0), mask=np.array(True)), "at least one spatial"),
        (dict(channel_axis=2), r"`channel_axis` 2 is out of range for `target` of shape \(5, 5\)"),
        (dict(channel_axis=1.5), "`channel_axis` must be an integer or None; got 1.5"),
        (dict(target=np.full((5, 5), np.nan)), "`target` has 25 NaN/inf values"),
        (dict(source=np.full((5, 5), np.inf)), "`source` has 25 NaN/inf values"),
    ],
)
def test_clear_errors(kwargs, message):
    arguments = dict(target=np.zeros((5, 5)), source=np.ones((5, 5)), mask=np.ones((5, 5), dtype=bool))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        poisson_blend(arguments.pop("target"), arguments.pop("source"), arguments.pop("mask"), **arguments)


def test_non_finite_inside_the_box_is_reported_without_warnings():
    import warnings

    target, source, mask = _random_case((20, 20), seed=12)
    target[10, 10] = np.nan
    source[9, 11] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning from numpy would fail here
        with pytest.raises(ValueError, match="`target` has 1 NaN/inf values"):
            poisson_blend(target, source, mask)
        target[10, 10] = 0
        with pytest.raises(ValueError, match="`source` has 1 NaN/inf values"):
            poisson_blend(target, source, mask, mix_gradients=True)


def test_overflowing_gradients_are_reported():
    target = np.zeros((9, 9), dtype=np.float32)
    source = target.copy()
    target[4, 4], source[4, 4] = 3e38, -3e38  # finite, but source - target overflows float32
    mask = np.zeros((9, 9), dtype=bool)
    mask[3:6, 3:6] = True
    with pytest.raises(ValueError, match="overflow float32 inside the blend box"):
        poisson_blend(target, source, mask)


def test_channel_axis_mask_shape_error_names_spatial_shape():
    with pytest.raises(ValueError, match=r"spatial shape \(4, 6\)"):
        poisson_blend(np.zeros((3, 4, 6)), np.zeros((3, 4, 6)), np.ones((3, 4, 6), dtype=bool), channel_axis=0)


def test_blending_a_crop_equal_to_the_box_gives_the_same_result():
    # The documented speed-up: blend on views cropped to blend_box(mask), paste back.
    for shape in [(60, 70), (40, 45, 38)]:
        target, source, _ = _random_case(shape, seed=13, dtype=np.float32)
        mask = np.zeros(shape, dtype=bool)
        mask[tuple(slice(n // 3, n // 2 + 1) for n in shape)] = True
        full = poisson_blend(target, source, mask, mix_gradients=True)
        box = blend_box(mask)
        assert blend_box(mask[box]) == tuple(slice(0, s.stop - s.start) for s in box)
        pasted = target.copy()
        pasted[box] = poisson_blend(target[box], source[box], mask[box], mix_gradients=True)
        np.testing.assert_array_equal(pasted, full)


def test_mixed_gradient_ties_keep_the_target():
    # |grad target| == |grad source| everywhere (opposite ramps): ties go to the target, nothing changes.
    target = np.add.outer(np.arange(12.0), np.arange(10.0))
    result = poisson_blend(target, -target, np.ones(target.shape, dtype=bool), mix_gradients=True)
    np.testing.assert_allclose(result, target, atol=1e-12)
    # Integer-valued images tie often: still the reference's choice, voxel by voxel.
    rng = np.random.default_rng(11)
    target, source = rng.integers(-2, 3, size=(2, 15, 17)).astype(float)
    mask = _blob_mask((15, 17), rng)
    ours = poisson_blend(target, source, mask, mix_gradients=True)
    _assert_relative_close(ours, _pie_blend(target, source, mask, True))


# --- the benchmark script runs and reports what it measured -----------------------------------------------


def test_benchmark_script_smoke(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_poisson.py"
    out = tmp_path / "poisson.json"
    completed = subprocess.run(
        [sys.executable, str(script), "--rounds", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "| 3D 80x112x80, box 48^3 | 48x48x48 -> 49x49x49 |" in completed.stdout
    report = json.loads(out.read_text())
    rows = report["results_cpu_time"]
    assert [row["box_B"] for row in rows] == [[64, 64], [128, 128], [32, 32, 32], [48, 48, 48], [64, 90, 64]]
    for row in rows:
        assert all(_is_fast_box_size(n) for n in row["box_ours"])
        assert all(ours >= b for ours, b in zip(row["box_ours"], row["box_B"]))
        assert row["ours"]["median_ms"] > 0 and row["ratios_of_medians"]["pie_over_ours"] > 0
