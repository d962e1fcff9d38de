"""Intra- and inter-dataset Poisson blending: paste a rotated, rescaled source patch with mixed gradients.

The source comes from a :class:`~nnunet_anomaly.pools.SourcePool`: ``intra_blend`` draws from the
``intra_pool`` the caller provides (the same data partition as the image), ``inter_blend`` from the
external ``inter_pool``. Distributions follow the reference (section 4.1 of the notes):

1. rotation ``R``: a plane rotation by ``U(-pi/4, pi/4)`` for every axis pair; ``R`` maps target-patch
   coordinates to source coordinates;
2. scale ``s0 = 1 + Exp(0.1)``, ``s = s0`` or ``1 / s0`` with probability 1/2, capped so that the source
   region is at most 80% of the source per axis; ``M = s R``;
3. a uniform source corner; when the source has a mask, the region's centre must lie in it (bounded
   tries, then an exact draw among the valid centres; a source whose mask has no valid centre is
   sampled uniformly);
4. the region is resampled to the patch with ``scipy.ndimage.affine_transform`` at the options'
   interpolation order and clipped to the source's per-channel range;
5. :func:`nnunet_anomaly.poisson.poisson_blend` with mixed gradients, over the shape's box grown by a
   margin; the result is clipped to the current image range; every voxel of that solver box whose
   channel-mean change exceeds 0.001 joins the anomaly mask.

A source smaller than the patch is handled by the scale cap: the patch is then an upsampled view of
at most 80% of the source. A source must have the image's number of spatial dimensions (ValueError
otherwise) and either one channel (used for every image channel) or the image's channel count.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from nnunet_anomaly.tasks.base import AnomalyTask, Placement, TaskOptions, channel_ranges


@dataclass(frozen=True, eq=False)
class BlendParams:
    """Parameters of one Poisson blend (plain data; `source` is the pool's array, never modified).

    Attributes
    ----------
    placement : Placement
    source : ndarray, shape (C or 1, *S)
        The source image.
    source_corner : tuple of int
        Corner of the source region.
    region_shape : tuple of int
        Size of the source region.
    matrix : tuple of tuple of float
        ``M = s R``: patch coordinates -> region coordinates (before `offset`).
    offset : tuple of float
        ``-floor(min(M @ corners))``.
    source_low, source_high : tuple of float
        The source's per-channel range, used to clip the resampled patch.
    interpolation_order : int
    change_threshold : float
        Channel-mean change above which a voxel of the solver box joins the anomaly mask.
    """

    placement: Placement
    source: np.ndarray
    source_corner: tuple[int, ...]
    region_shape: tuple[int, ...]
    matrix: tuple[tuple[float, ...], ...]
    offset: tuple[float, ...]
    source_low: tuple[float, ...]
    source_high: tuple[float, ...]
    interpolation_order: int = 1
    change_threshold: float = 0.001


def _default_blend(target: np.ndarray, source: np.ndarray, mask: np.ndarray, patch_box) -> np.ndarray:
    from nnunet_anomaly.poisson import poisson_blend

    return poisson_blend(target, source, mask, mix_gradients=True, channel_axis=0)


# Private hook: the benchmark swaps in pie-torch's solver to time a reference-like pipeline. It gets
# the target crop, the positioned source crop, the mask crop and the patch's slices inside the crop.
_blend_function: Callable[..., np.ndarray] = _default_blend

# Private hook for the benchmark's reference-like pipeline: resample the whole patch (same blend).
_resample_whole_patch = False


def _solver_margin(size: int) -> int:
    # poisson_blend grows the mask's box by >= 1 voxel and to an FFT-friendly size; ~10% covers that.
    return 2 + int(np.ceil(0.1 * size))


def _corner_grid(extent: np.ndarray) -> np.ndarray:
    """The 2^D corners of the box ``[0, extent]`` as a ``(D, 2^D)`` array."""
    return np.array(list(itertools.product(*[(0.0, float(e)) for e in extent]))).T


def _check_source(source, mask, image: np.ndarray, pool_name: str):
    source = np.asarray(source)
    spatial_ndim = image.ndim - 1
    if source.ndim != spatial_ndim + 1:
        raise ValueError(
            f"{pool_name} gave a source of shape {source.shape} ({source.ndim - 1} spatial dimensions after the "
            f"channel axis) for an image of shape {image.shape} ({spatial_ndim} spatial dimensions); "
            "pool images must be channel-first with the image's number of spatial dimensions"
        )
    if source.shape[0] not in (1, image.shape[0]):
        raise ValueError(
            f"{pool_name} gave a source with {source.shape[0]} channels for an image with {image.shape[0]}; "
            "use 1 channel or the image's channel count"
        )
    if min(source.shape[1:]) < 2:
        raise ValueError(f"{pool_name} gave a source of shape {source.shape}; every spatial axis needs >= 2 voxels")
    # Per-channel range in two passes; a NaN or inf anywhere shows up in it (no separate isfinite pass).
    flat = source.reshape(source.shape[0], -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"{pool_name} gave a source with NaN/inf values")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != source.shape[1:]:
            raise ValueError(f"{pool_name} gave a mask of shape {mask.shape} for a source of shape {source.shape}")
    return source, mask, low, high


def _source_corner(rng, source_shape, region, mask, max_tries) -> np.ndarray:
    high = np.asarray(source_shape) - region  # inclusive upper bound of the corner
    half = region // 2
    if mask is None:
        return rng.integers(0, high, endpoint=True)
    for _ in range(max_tries):
        corner = rng.integers(0, high, endpoint=True)
        if mask[tuple(corner + half)]:
            return corner
    # Bounded fallback with the same distribution: uniform among the corners whose centre is in the mask.
    window = mask[tuple(slice(h, h + e + 1) for h, e in zip(half, high))]
    valid = np.flatnonzero(window)
    if valid.size == 0:  # no region centre can lie in the mask: ignore the mask
        return rng.integers(0, high, endpoint=True)
    return np.array(np.unravel_index(valid[int(rng.integers(valid.size))], window.shape))


def sample_blend_params(
    rng: np.random.Generator,
    image: np.ndarray,
    placement: Placement,
    options: TaskOptions,
    pool,
    *,
    pool_name: str = "pool",
) -> BlendParams:
    """Draw a source from `pool` and the rotation, scale and location of the source region."""
    if pool is None:
        raise ValueError(f"this blending task needs `{pool_name}` (a SourcePool); got None")
    source, source_mask = pool.sample(rng)
    source, source_mask, source_low, source_high = _check_source(source, source_mask, image, pool_name)
    ndim = image.ndim - 1
    patch_shape = np.asarray(placement.shape.bbox_shape)
    source_shape = np.asarray(source.shape[1:])

    rotation = np.eye(ndim)
    for i, j in itertools.combinations(range(ndim), 2):
        angle = rng.uniform(-options.max_source_rotation, options.max_source_rotation)
        plane = np.eye(ndim)
        plane[i, i] = plane[j, j] = np.cos(angle)
        plane[i, j], plane[j, i] = -np.sin(angle), np.sin(angle)
        rotation = plane @ rotation
    corners = _corner_grid(patch_shape)
    rotated = rotation @ corners
    rotated_extent = np.ceil(rotated.max(axis=1)) - np.floor(rotated.min(axis=1))
    max_scale = float(np.min(options.max_source_fraction * source_shape / np.maximum(rotated_extent, 1)))
    stretch = 1 + rng.exponential(options.source_scale_spread)
    scale = min(stretch if rng.random() < 0.5 else 1 / stretch, max_scale)
    matrix = scale * rotation
    mapped = matrix @ corners
    lowest = np.floor(mapped.min(axis=1))
    region = (np.ceil(mapped.max(axis=1)) - lowest).astype(int)
    region = np.clip(region, 1, source_shape)  # rounding guard for tiny sources
    corner = _source_corner(rng, source_shape, region, source_mask, options.max_source_tries)

    return BlendParams(
        placement=placement,
        source=source,
        source_corner=tuple(int(c) for c in corner),
        region_shape=tuple(int(r) for r in region),
        matrix=tuple(tuple(float(v) for v in row) for row in matrix),
        offset=tuple(float(-v) for v in lowest),
        source_low=tuple(float(v) for v in source_low),
        source_high=tuple(float(v) for v in source_high),
        interpolation_order=options.interpolation_order,
        change_threshold=options.blend_change_threshold,
    )


def _source_window(params: BlendParams) -> tuple[tuple[slice, ...], np.ndarray]:
    """The source region grown by the spline's reach (clamped to the source), and its corner.

    Resampling reads this window with ``mode="nearest"``, so a point just past the region (the patch's
    far faces map there) takes real source values, not a zero fill.
    """
    reach = params.interpolation_order + 1
    corner = np.asarray(params.source_corner)
    low = np.maximum(corner - reach, 0)
    high = np.minimum(corner + np.asarray(params.region_shape) + reach, params.source.shape[1:])
    return tuple(slice(a, b) for a, b in zip(low, high)), low


def _resample_at(params: BlendParams, index, dtype) -> np.ndarray:
    """The source at patch coordinates `index` (a tuple of integer arrays; may lie past the patch): ``(C or 1, N)``.

    The points are mapped by ``M`` and the offset into the source region, interpolated at the options'
    spline order and clipped to the source's per-channel range.
    """
    window, low = _source_window(params)
    points = np.asarray(params.matrix) @ np.stack(index).astype(np.float64)
    points += (np.asarray(params.offset) + np.asarray(params.source_corner) - low)[:, None]
    values = np.empty((params.source.shape[0], points.shape[1]), dtype=dtype)
    for c, channel in enumerate(params.source):
        ndimage.map_coordinates(np.asarray(channel[window], dtype=dtype), points, output=values[c],
                                order=params.interpolation_order, mode="nearest")
        np.clip(values[c], params.source_low[c], params.source_high[c], out=values[c])
    return values


def resample_source_patch(params: BlendParams, dtype=np.float64, *, margin: int = 0) -> np.ndarray:
    """The source region resampled to the patch grid grown by `margin` voxels per side: ``(C or 1, *(P + 2 margin))``.

    Clipped to the source's range. ``margin=1`` gives the source one voxel past every face of the
    patch, which the blend's forward differences read on the shape's far faces.

    Examples
    --------
    >>> from nnunet_anomaly.pools import ArrayPool
    >>> from nnunet_anomaly.tasks.shapes import AnomalyShape
    >>> square = AnomalyShape("rectangle", (4, 4), ((1.0, 0.0), (0.0, 1.0)))
    >>> params = sample_blend_params(np.random.default_rng(0), np.zeros((1, 20, 20)), Placement(square, (5, 5)),
    ...                              TaskOptions(), ArrayPool([np.ones((1, 30, 30))]))
    >>> resample_source_patch(params).shape, resample_source_patch(params, margin=1).shape
    ((1, 5, 5), (1, 7, 7))
    """
    shape = tuple(int(p) + 2 * margin for p in params.placement.shape.bbox_shape)
    grid = np.indices(shape).reshape(len(shape), -1) - margin
    return _resample_at(params, tuple(grid), dtype).reshape((-1,) + shape)


def _gradient_support(mask: np.ndarray) -> np.ndarray:
    """Voxels whose source value enters a guided forward difference: the mask and its +1 neighbours."""
    support = mask.copy()
    for axis in range(mask.ndim):
        ahead = tuple(slice(1, None) if a == axis else slice(None) for a in range(mask.ndim))
        behind = tuple(slice(None, -1) if a == axis else slice(None) for a in range(mask.ndim))
        support[ahead] |= mask[behind]
    return support


def apply_blend(image: np.ndarray, params: BlendParams) -> np.ndarray:
    """Return a copy of `image` (channel-first) with the source patch Poisson-blended in.

    Examples
    --------
    >>> from nnunet_anomaly.pools import ArrayPool
    >>> from nnunet_anomaly.tasks.shapes import AnomalyShape
    >>> rng = np.random.default_rng(0)
    >>> image = rng.normal(size=(1, 32, 32))
    >>> pool = ArrayPool([np.tile(np.linspace(-3, 3, 40), (40, 1))[None]])   # a steep ramp
    >>> square = AnomalyShape("rectangle", (9, 9), ((1.0, 0.0), (0.0, 1.0)))
    >>> params = sample_blend_params(rng, image, Placement(square, (10, 10)), TaskOptions(), pool)
    >>> out = apply_blend(image, params)
    >>> changed = np.abs(out - image)[0] > 0
    >>> bool(changed[14, 14]), bool(changed[:8].any() or changed[:, :8].any())   # only near the patch
    (True, False)
    """
    return INTRA_BLEND.apply(image, params).image


class BlendTask(AnomalyTask):
    """Tasks 0 and 1 of the reference: ``intra_blend`` (source from ``intra_pool``) and ``inter_blend``."""

    def __init__(self, name: str, pool_argument: str):
        self.name = name
        self.pool_argument = pool_argument

    def sample_params(self, rng, image, placement, options, *, intra_pool=None, inter_pool=None):
        pool = intra_pool if self.pool_argument == "intra_pool" else inter_pool
        return sample_blend_params(rng, image, placement, options, pool, pool_name=self.pool_argument)

    def apply_into(self, work, params):
        spatial = work.shape[1:]
        patch_box = params.placement.slices
        crop = tuple(
            slice(max(0, s.start - _solver_margin(s.stop - s.start)), min(n, s.stop + _solver_margin(s.stop - s.start)))
            for s, n in zip(patch_box, spatial)
        )
        inner = tuple(slice(p.start - c.start, p.stop - c.start) for p, c in zip(patch_box, crop))
        target = work[(slice(None),) + crop]
        mask = np.zeros(target.shape[1:], dtype=bool)
        mask[inner] = params.placement.shape.mask()
        # The solver reads source values only through forward differences guided by the mask, so only
        # the mask and its +1 neighbours need the source; elsewhere the source is the target itself.
        # The +1 neighbours of the far faces lie one voxel past the patch box: the source must be valid
        # there too, or those differences compare the target outside with the source inside (a seam).
        source = np.array(target, copy=True)
        if _resample_whole_patch:  # the reference's way (benchmark hook): every voxel of the grown box
            grown = tuple(slice(max(i.start - 1, 0), min(i.stop + 1, n)) for i, n in zip(inner, mask.shape))
            patch = resample_source_patch(params, work.dtype, margin=1)
            source[(slice(None),) + grown] = patch[(slice(None),) + tuple(
                slice(g.start - i.start + 1, g.stop - i.start + 1) for g, i in zip(grown, inner))]
        else:
            needed = np.nonzero(_gradient_support(mask))
            source[(slice(None),) + needed] = _resample_at(
                params, tuple(n - i.start for n, i in zip(needed, inner)), work.dtype)  # broadcasts 1 channel
        blended = np.asarray(_blend_function(target, source, mask, inner), dtype=work.dtype)
        low, high = channel_ranges(work)
        np.clip(blended, low, high, out=blended)
        changed = np.abs(blended - target).mean(axis=0) > params.change_threshold
        target[...] = blended
        return crop, mask | changed

    def __reduce__(self):
        return (BlendTask, (self.name, self.pool_argument))


INTRA_BLEND = BlendTask("intra_blend", "intra_pool")
INTER_BLEND = BlendTask("inter_blend", "inter_pool")
