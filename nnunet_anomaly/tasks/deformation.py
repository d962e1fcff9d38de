"""Sink and source deformations: a radial remap inside the shape that contracts or expands tissue.

Each voxel ``p`` of the shape (but not on the outer layer of its box) samples the image at
``c + r' u`` where ``c`` is the deformation centre, ``r = |p - c|``, ``u = (p - c) / r`` and ``d`` is the
distance from ``c`` to the analytic shape boundary along ``u``:

- sink: ``r' = d - (d - r)**f / d**(f - 1)`` (tissue pulled towards ``c``);
- source: ``r' = r**f / d**(f - 1)`` (tissue pushed away from ``c``).

``f`` is chosen from the push distance ``p`` exactly as in the reference (section 4.2 of the notes):
``D`` is the mean distance from ``c`` to the shape's inner edge, ``Pmax = D / sqrt(2)``, and the curve
passes through the point at perpendicular distance ``p`` from the identity line at its midpoint.
Unlike the reference, the resampled patch is clipped to its per-channel range (no spline overshoot).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_anomaly.tasks.base import AnomalyTask, Placement, TaskOptions

DEFORMATION_KINDS = ("sink", "source")


@dataclass(frozen=True)
class DeformationParams:
    """Parameters of one sink or source deformation (plain data).

    Attributes
    ----------
    placement : Placement
    kind : {"sink", "source"}
    centre : tuple of int
        Deformation centre, a voxel of the shape in bbox-local coordinates.
    factor : float
        Exponent ``f`` (1 = identity).
    push : float
        The push distance ``p`` the factor was derived from (for inspection).
    interpolation_order : int
    """

    placement: Placement
    kind: str
    centre: tuple[int, ...]
    factor: float
    push: float
    interpolation_order: int = 1


def deformation_factor(kind: str, mean_edge_distance: float, push: float) -> float:
    """The exponent ``f`` whose curve passes a perpendicular distance `push` from the identity line.

    Examples
    --------
    >>> round(deformation_factor("sink", 10.0, 3.0), 4), round(deformation_factor("source", 10.0, 3.0), 4)
    (3.668, 3.668)
    >>> deformation_factor("sink", 10.0, 0.0)
    1.0
    """
    if kind not in DEFORMATION_KINDS:
        raise ValueError(f"deformation kind must be one of {DEFORMATION_KINDS}; got {kind!r}")
    size = float(mean_edge_distance)
    offset = push / np.sqrt(2.0)
    if kind == "source":
        x, y = size / 2 + offset, size / 2 - offset
        return float(np.log(y / size) / np.log(x / size))
    x, y = size / 2 - offset, size / 2 + offset
    return float(np.log(1 - y / size) / np.log(1 - x / size))


def sample_push_distance(rng: np.random.Generator, mean_edge_distance: float, options: TaskOptions) -> float:
    """``p ~ U(max(0.1 Pmax, min_push), min(0.9 Pmax, max_push))`` with ``Pmax = D / sqrt(2)`` (reference rule)."""
    largest = mean_edge_distance / np.sqrt(2.0)
    low, high = 0.1 * largest, 0.9 * largest
    if options.min_push >= high:
        return float(high)
    if options.max_push <= low:
        return float(low)
    return float(rng.uniform(max(low, options.min_push), min(high, options.max_push)))


def sample_deformation_params(
    rng: np.random.Generator, kind: str, placement: Placement, options: TaskOptions
) -> DeformationParams:
    """Draw the centre (a uniform voxel of the shape) and the factor ``f`` (via the push distance)."""
    mask = placement.shape.mask()
    voxels = np.flatnonzero(mask)
    centre = np.unravel_index(voxels[int(rng.integers(len(voxels)))], mask.shape)
    centre = np.array(centre)
    edge = mask & ~ndimage.binary_erosion(mask)
    edge_points = np.stack(np.nonzero(edge))
    mean_edge_distance = float(np.linalg.norm(edge_points - centre[:, None], axis=0).mean())
    if mean_edge_distance <= 0:  # a one-voxel shape: nothing to deform
        return DeformationParams(placement, kind, tuple(map(int, centre)), 1.0, 0.0, options.interpolation_order)
    push = sample_push_distance(rng, mean_edge_distance, options)
    factor = deformation_factor(kind, mean_edge_distance, push)
    return DeformationParams(placement, kind, tuple(map(int, centre)), factor, push, options.interpolation_order)


def apply_deformation(image: np.ndarray, params: DeformationParams) -> np.ndarray:
    """Return a copy of `image` (channel-first) with the deformation applied.

    Examples
    --------
    >>> from nnunet_anomaly.tasks.shapes import AnomalyShape
    >>> disc = AnomalyShape("ellipsoid", (9, 9), ((1.0, 0.0), (0.0, 1.0)))
    >>> image = np.tile(np.arange(11.0), (11, 1))[None]          # a horizontal ramp
    >>> params = DeformationParams(Placement(disc, (1, 1)), "sink", (4, 4), 2.0, 1.0)
    >>> out = apply_deformation(image, params)
    >>> out[0, 5, 3:8].round(2)    # the row through the centre: column 4 now shows what was at 3.22
    array([1.89, 3.22, 5.  , 6.78, 8.11])
    >>> bool(np.all(out[:, :, 0] == image[:, :, 0]))    # outside the shape nothing moves
    True
    """
    return _TASKS[params.kind].apply(image, params).image


def _sampling_coordinates(params: DeformationParams) -> tuple[np.ndarray, np.ndarray]:
    """Bbox-local sampling coordinates ``(D, N)`` for the remapped voxels and those voxels' flat indices."""
    shape = params.placement.shape
    mask = shape.mask()
    inner = np.zeros_like(mask)
    inner[(slice(1, -1),) * mask.ndim] = mask[(slice(1, -1),) * mask.ndim]
    centre = np.asarray(params.centre, dtype=float)
    inner[tuple(params.centre)] = False  # the centre maps to itself
    flat = np.flatnonzero(inner)
    points = np.stack(np.unravel_index(flat, mask.shape)).astype(float)
    offsets = points - centre[:, None]
    radius = np.linalg.norm(offsets, axis=0)
    directions = offsets / radius
    edge = np.maximum(shape.distance_to_edge(centre, directions), radius)  # r <= d (rounding guard)
    f = params.factor
    if params.kind == "sink":
        new_radius = edge - (edge - radius) ** f / edge ** (f - 1)
    else:
        new_radius = radius**f / edge ** (f - 1)
    return centre[:, None] + new_radius * directions, flat


class DeformationTask(AnomalyTask):
    """Tasks 2 and 3 of the reference: sink (``sink``) and source (``source``) deformations."""

    def __init__(self, kind: str):
        if kind not in DEFORMATION_KINDS:
            raise ValueError(f"deformation kind must be one of {DEFORMATION_KINDS}; got {kind!r}")
        self.kind = kind
        self.name = kind

    def sample_params(self, rng, image, placement, options, *, intra_pool=None, inter_pool=None):
        return sample_deformation_params(rng, self.kind, placement, options)

    def apply_into(self, work, params):
        box = params.placement.slices
        mask = params.placement.shape.mask()
        if params.factor == 1.0:
            return box, mask
        coords, flat = _sampling_coordinates(params)
        if flat.size == 0:
            return box, mask
        patch = work[(slice(None),) + box]
        index = np.unravel_index(flat, mask.shape)
        if _remap_whole_patch:  # the reference's way: every voxel of the box through the spline
            grid = np.indices(mask.shape, dtype=float)
            grid[(slice(None),) + index] = coords
            coords, index = grid.reshape(mask.ndim, -1), (slice(None),) * mask.ndim
        for channel in patch:
            # Sample only the remapped voxels; prefilter the (small) patch once for splines.
            values = ndimage.map_coordinates(channel, coords, order=params.interpolation_order, mode="nearest")
            low, high = channel.min(), channel.max()
            np.clip(values, low, high, out=values)  # splines overshoot; keep the patch's range
            if _remap_whole_patch:
                values = values.reshape(channel.shape)
            channel[index] = values  # `channel` is a view into `work`
        return box, mask

    def __reduce__(self):
        return (DeformationTask, (self.kind,))


# Private hook for the benchmark's reference-like pipeline: resample the whole box (identity outside
# the shape) instead of only the remapped voxels. Same result; the reference's cost.
_remap_whole_patch = False

SINK = DeformationTask("sink")
SOURCE = DeformationTask("source")
_TASKS = {"sink": SINK, "source": SOURCE}
