"""Random anomaly shapes: sheared, rotated hyper-rectangles and hyper-ellipsoids in any dimension.

A shape is plain data (:class:`AnomalyShape`): the kind, the aligned side lengths and the linear map
(shear, then rotations, then an optional uniform shrink) from aligned to image coordinates. The
rasterised mask and the analytic distance to the boundary along a ray (used by the deformation
tasks) are pure functions of that data.

The distributions follow the reference implementation (section 3.1 of the reference notes):
side lengths ``int(clip((0.03 + Gamma(2, 0.1)) * S_d, lb_d, ub_d))``; for every axis a shear
``T[d, o] ~ N(0, 0.2)`` towards another random axis ``o``; a plane rotation by ``U(-pi/2, pi/2)`` for
every axis pair in ``itertools.combinations`` order; a uniform shrink when the rotated bounding box
exceeds the upper bound.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

SHAPE_KINDS = ("rectangle", "ellipsoid")


@dataclass(frozen=True)
class AnomalyShape:
    """A deformed hyper-rectangle or hyper-ellipsoid, as plain data.

    Attributes
    ----------
    kind : {"rectangle", "ellipsoid"}
    side_lengths : tuple of int
        Side lengths (rectangle) or diameters (ellipsoid) before the linear map.
    matrix : tuple of tuple of float
        ``D x D`` map from aligned to image coordinates (shear, rotation, shrink).

    Examples
    --------
    >>> shape = AnomalyShape("rectangle", (3, 5), ((1.0, 0.0), (0.0, 1.0)))
    >>> shape.bbox_shape
    (3, 5)
    >>> shape.mask().astype(int)
    array([[1, 1, 1, 1, 1],
           [1, 1, 1, 1, 1],
           [1, 1, 1, 1, 1]])
    >>> disc = AnomalyShape("ellipsoid", (5, 5), ((1.0, 0.0), (0.0, 1.0)))
    >>> disc.mask().astype(int)
    array([[0, 1, 1, 1, 0],
           [1, 1, 1, 1, 1],
           [1, 1, 1, 1, 1],
           [1, 1, 1, 1, 1],
           [0, 1, 1, 1, 0]])
    """

    kind: str
    side_lengths: tuple[int, ...]
    matrix: tuple[tuple[float, ...], ...]

    def __post_init__(self):
        if self.kind not in SHAPE_KINDS:
            raise ValueError(f"shape kind must be one of {SHAPE_KINDS}; got {self.kind!r}")
        ndim = len(self.side_lengths)
        if np.shape(self.matrix) != (ndim, ndim):
            raise ValueError(f"shape matrix must be {ndim}x{ndim}; got shape {np.shape(self.matrix)}")

    @property
    def ndim(self) -> int:
        return len(self.side_lengths)

    @cached_property
    def _matrix(self) -> np.ndarray:
        return np.asarray(self.matrix, dtype=float)

    @cached_property
    def _inverse(self) -> np.ndarray:
        return np.linalg.inv(self._matrix)

    @cached_property
    def half_extent(self) -> np.ndarray:
        """Per axis ``ceil(max |T @ corner|)`` over the corners ``+-(L - 1) / 2``; bbox = 2 * this + 1."""
        return _half_extent(self._matrix, np.asarray(self.side_lengths, dtype=float))

    @property
    def bbox_shape(self) -> tuple[int, ...]:
        """Shape of the rasterised bounding box (odd sizes, centre voxel at ``(bbox_shape - 1) / 2``)."""
        return tuple(int(2 * h + 1) for h in self.half_extent)

    def mask(self) -> np.ndarray:
        """Boolean mask of the shape over its bounding box (read-only; computed once per shape)."""
        return self._mask

    @cached_property
    def _mask(self) -> np.ndarray:
        mask = _rasterise(self.kind, np.asarray(self.side_lengths, float), self._inverse, self.half_extent)
        mask.flags.writeable = False  # shared by every caller of mask()
        return mask

    def distance_to_edge(self, origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Distance from `origin` to the analytic boundary along each unit direction.

        Parameters
        ----------
        origin : ndarray, shape (D,)
            A point inside the shape, in bbox-local voxel coordinates.
        directions : ndarray, shape (D, N)
            Unit vectors (image coordinates).

        Returns
        -------
        distances : ndarray, shape (N,)
            Non-negative distances (slab test for rectangles, quadratic for ellipsoids).

        Examples
        --------
        >>> disc = AnomalyShape("ellipsoid", (10, 10), ((1.0, 0.0), (0.0, 1.0)))
        >>> centre = (np.array(disc.bbox_shape) - 1) / 2
        >>> disc.distance_to_edge(centre, np.array([[1.0, 0.0], [0.0, 1.0]]))
        array([5., 5.])
        """
        centre = (np.asarray(self.bbox_shape, float) - 1) / 2
        o = self._inverse @ (np.asarray(origin, float) - centre)  # aligned origin (D,)
        v = self._inverse @ np.asarray(directions, float)  # aligned directions (D, N)
        half = np.asarray(self.side_lengths, float)[:, None] / 2
        if self.kind == "rectangle":
            with np.errstate(divide="ignore", invalid="ignore"):
                upper = (half - o[:, None]) / v
                lower = (-half - o[:, None]) / v
            exits = np.where(v > 0, upper, np.where(v < 0, lower, np.inf))
            t = exits.min(axis=0)
        else:
            a = np.sum(v**2 / half**2, axis=0)
            b = np.sum(2 * o[:, None] * v / half**2, axis=0)
            c = np.sum(o**2 / half[:, 0] ** 2) - 1
            t = (-b + np.sqrt(np.maximum(b**2 - 4 * a * c, 0.0))) / (2 * a)
        # The origin lies inside (c <= 0, or inside every slab), so t >= 0 up to rounding.
        return np.maximum(t, 0.0)


def size_bounds(spatial_shape: Sequence[int], min_fraction: float, max_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis side-length bounds ``round(min_fraction * S)``, ``round(max_fraction * S)`` (at least 1).

    Examples
    --------
    >>> lo, hi = size_bounds((80, 112, 80), 0.06, 0.8)
    >>> lo.tolist(), hi.tolist()
    ([5, 7, 5], [64, 90, 64])
    """
    size = np.asarray(spatial_shape, dtype=float)
    lower = np.maximum(np.round(min_fraction * size), 1).astype(int)
    upper = np.maximum(np.round(max_fraction * size), lower).astype(int)
    return lower, upper


def sample_shape(
    rng: np.random.Generator,
    spatial_shape: Sequence[int],
    *,
    min_fraction: float = 0.06,
    max_fraction: float = 0.8,
) -> AnomalyShape:
    """Draw a random shape with the reference distributions.

    Parameters
    ----------
    rng : numpy.random.Generator
    spatial_shape : sequence of int
        Image size ``S``; side lengths scale with it.
    min_fraction, max_fraction : float
        Side-length bounds as fractions of ``S`` (the reference's 0.06 and 0.8).

    Returns
    -------
    AnomalyShape
        Its bounding box never exceeds ``round(max_fraction * S)`` by more than the rasterisation
        rounding (one voxel per side).

    Examples
    --------
    >>> shape = sample_shape(np.random.default_rng(0), (64, 64))
    >>> shape.kind in SHAPE_KINDS, shape.ndim, bool(shape.mask().any())
    (True, 2, True)
    """
    spatial_shape = tuple(int(s) for s in spatial_shape)
    if not spatial_shape or min(spatial_shape) < 3:
        raise ValueError(f"spatial_shape must have every axis >= 3 voxels; got {spatial_shape}")
    ndim = len(spatial_shape)
    lower, upper = size_bounds(spatial_shape, min_fraction, max_fraction)
    kind = SHAPE_KINDS[int(rng.integers(2))]
    fractions = 0.03 + rng.gamma(2.0, 0.1, size=ndim)
    sides = np.clip(fractions * np.asarray(spatial_shape), lower, upper).astype(int)

    matrix = np.eye(ndim)
    if ndim > 1:
        for d in range(ndim):
            others = [axis for axis in range(ndim) if axis != d]
            other = others[int(rng.integers(len(others)))]
            matrix[d, other] = rng.normal(0.0, 0.2)
        for i, j in itertools.combinations(range(ndim), 2):
            matrix = _plane_rotation(ndim, i, j, rng.uniform(-np.pi / 2, np.pi / 2)) @ matrix

    # Shrink uniformly when the rotated box is larger than the bound (the reference's size cap).
    grid = 2 * _half_extent(matrix, sides.astype(float)) + 1
    if np.any(grid > upper):
        matrix = matrix / np.max(grid / upper)
    # The cap above can leave the box a voxel too large after rounding; never exceed the image.
    size = np.asarray(spatial_shape)
    raw = np.abs(matrix) @ ((sides - 1) / 2)
    allowed = np.floor((size - 1) / 2)
    if np.any(raw > allowed):
        matrix = matrix * np.min(np.where(raw > allowed, allowed / np.maximum(raw, 1e-12), 1.0))
    return AnomalyShape(kind, tuple(int(s) for s in sides), tuple(tuple(float(v) for v in row) for row in matrix))


def _plane_rotation(ndim: int, i: int, j: int, angle: float) -> np.ndarray:
    rotation = np.eye(ndim)
    cos, sin = np.cos(angle), np.sin(angle)
    rotation[i, i] = rotation[j, j] = cos
    rotation[i, j], rotation[j, i] = -sin, sin
    return rotation


def _half_extent(matrix: np.ndarray, sides: np.ndarray) -> np.ndarray:
    # max over the 2^D corners of |T @ corner| per axis = sum_k |T[d, k]| * (L_k - 1) / 2
    return np.ceil(np.abs(matrix) @ ((sides - 1) / 2) - 1e-9).clip(min=0).astype(int)


def _rasterise(kind: str, sides: np.ndarray, inverse: np.ndarray, half_extent: np.ndarray) -> np.ndarray:
    ndim = len(sides)
    axes = [np.arange(-h, h + 1, dtype=float) for h in half_extent]
    # Sparse coordinate vectors, shaped to broadcast along their own axis only.
    grids = [ax.reshape([-1 if k == d else 1 for k in range(ndim)]) for d, ax in enumerate(axes)]
    half = sides / 2
    inside = None
    for k in range(ndim):  # aligned coordinate k = sum_d inverse[k, d] * x_d, built by broadcasting
        aligned = sum(inverse[k, d] * grids[d] for d in range(ndim))
        if kind == "rectangle":
            term = np.abs(aligned) <= half[k] + 1e-9
            inside = term if inside is None else inside & term
        else:
            term = (aligned / half[k]) ** 2
            inside = term if inside is None else inside + term
    if kind == "ellipsoid":
        inside = inside <= 1 + 1e-9
    return np.broadcast_to(inside, tuple(len(a) for a in axes)).copy()
