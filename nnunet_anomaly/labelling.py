"""The Gaussian labelling function shared by every synthetic task.

``y = 1 - exp(-x**2 / (2 sigma**2))`` of the per-voxel intensity change ``x`` (channel mean of
``|anomalous - original|``) inside the anomaly mask, 0 outside. Each connected anomaly region then gets
the reference's grey closing and grey-level hole filling (morphological reconstruction by erosion), so
that an almost unchanged centre inside a changed region is labelled like its surroundings;
``fill_holes=False`` skips that and gives the raw per-voxel label.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from nnunet_anomaly._checks import check_finite, check_mask

__all__ = ["gaussian_label"]


def gaussian_label(original, anomalous, anomaly_mask, sigma: float = 0.2, *, fill_holes: bool = True) -> np.ndarray:
    """Soft anomaly label from the intensity change, 0 outside the anomaly mask.

    Parameters
    ----------
    original, anomalous : ndarray, shape (C, *spatial)
        The image before and after the synthetic anomalies.
    anomaly_mask : ndarray of bool, shape spatial
        Where anomalies were placed; the label is exactly 0 elsewhere.
    sigma : float, optional
        Change at which the label reaches ``1 - exp(-1/2) ~= 0.39`` (the reference's 0.2).
    fill_holes : bool, optional
        Apply (default) the reference's per-region grey closing (footprint
        ``generate_binary_structure(D, 2)``) and grey reconstruction-by-erosion hole filling within each
        connected region's bounding box. Unlike the reference, the result is then restricted to the
        mask again, so the label stays 0 outside it.

    Returns
    -------
    label : ndarray of float32, shape spatial, values in [0, 1].

    Raises
    ------
    ValueError
        For mismatched shapes, NaN/inf or a non-positive `sigma`.

    Examples
    --------
    >>> original = np.zeros((1, 6))
    >>> anomalous = np.array([[0.0, 0.1, 0.2, 0.4, 1.0, 0.5]])
    >>> mask = np.array([True, True, True, True, True, False])
    >>> gaussian_label(original, anomalous, mask, fill_holes=False).round(3)
    array([0.   , 0.118, 0.393, 0.865, 1.   , 0.   ], dtype=float32)

    Hole filling raises an unchanged centre to the level of the ring around it:

    >>> ring = np.full((1, 5, 5), 0.6); ring[0, 2, 2] = 0.0
    >>> label = gaussian_label(np.zeros((1, 5, 5)), ring, np.ones((5, 5), bool))
    >>> round(float(label[2, 2]), 3), float(gaussian_label(np.zeros((1, 5, 5)), ring, np.ones((5, 5), bool), fill_holes=False)[2, 2])
    (0.989, 0.0)
    """
    original = np.asarray(original)
    anomalous = np.asarray(anomalous)
    if original.shape != anomalous.shape:
        raise ValueError(f"`original` and `anomalous` must have the same shape; got {original.shape} and {anomalous.shape}")
    if original.ndim < 2:
        raise ValueError(f"`original` must be channel-first (C, *spatial); got shape {original.shape}")
    if not (np.isscalar(sigma) and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"`sigma` must be a positive finite number; got {sigma!r}")
    mask = check_mask(anomaly_mask, original.shape[1:], name="anomaly_mask")
    check_finite(original, "original")
    check_finite(anomalous, "anomalous")
    box = _bounding_box(mask)
    label = np.zeros(mask.shape, dtype=np.float32)
    if box is not None:
        label[box] = _label_in_box(original, anomalous, mask, box, float(sigma), fill_holes)
    return label


def _bounding_box(mask: np.ndarray) -> Optional[tuple]:
    """Slices of the mask's bounding box, or None for an empty mask."""
    # Two passes over the full array: one projection onto axis 0, one onto the other axes together.
    first = mask.any(axis=tuple(range(1, mask.ndim))) if mask.ndim > 1 else mask
    hits = np.flatnonzero(first)
    if hits.size == 0:
        return None
    box = [slice(int(hits[0]), int(hits[-1]) + 1)]
    if mask.ndim > 1:
        rest = mask.any(axis=0)
        for axis in range(rest.ndim):
            hits = np.flatnonzero(rest.any(axis=tuple(a for a in range(rest.ndim) if a != axis)))
            box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _label_in_box(original, anomalous, mask, box: Sequence[slice], sigma: float, fill_holes: bool) -> np.ndarray:
    """The label restricted to `box` (no validation; `apply_tasks` calls this with the anomalies' box)."""
    box = tuple(box)
    region = (slice(None),) + box
    change = np.abs(anomalous[region] - original[region])
    change = change[0] if change.shape[0] == 1 else change.mean(axis=0)
    local_mask = mask[box]
    label = -np.expm1(-(change**2) / (2 * sigma**2))
    label = np.where(local_mask, label, 0.0).astype(np.float32)
    if fill_holes:
        label = _close_and_fill(label, local_mask)
    return label


def _close_and_fill(label: np.ndarray, mask: np.ndarray) -> np.ndarray:
    footprint = ndimage.generate_binary_structure(mask.ndim, 2)
    # float32 throughout: closing and reconstruction only select values of `label` (float32 already), so
    # the result is the same as in float64, with half the memory traffic.
    out = np.array(label, dtype=np.float32)
    regions, _ = ndimage.label(mask)
    for region in ndimage.find_objects(regions):
        closed = ndimage.grey_closing(out[region], footprint=footprint)
        out[region] = _fill_function(closed, footprint)
    # The reference writes the whole region box back; we keep the label's support inside the mask.
    return np.where(mask, np.clip(out, 0.0, 1.0), 0.0).astype(np.float32)


def _reference_fill(closed: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """The reference's hole filling: scikit-image's reconstruction by erosion from the box's border.

    The seed is `closed` on the outer layer of the box and its maximum inside.
    """
    from skimage.morphology import reconstruction

    seed = closed.copy()
    seed[(slice(1, -1),) * closed.ndim] = closed.max()
    return reconstruction(seed, closed, method="erosion", footprint=footprint).astype(closed.dtype, copy=False)


def fill_basins(closed: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Grey-level hole filling from the border, equal to :func:`_reference_fill` value for value.

    Each voxel gets the lowest level at which it connects to the outer layer of the box through
    voxels no higher (connectivity `footprint`): the reconstruction by erosion of `closed` from its
    border. Two things make it cheaper than scikit-image's ``reconstruction`` on the same input:

    - most 3D regions have no basin at all (it then returns `closed` unchanged): a basin holds a
      regional minimum off the border, so when every regional minimum touches the border nothing can
      be filled (scikit-image's ``local_minima`` and one labelling tell);
    - otherwise scikit-image's own inner loop runs on ranks found with one sort of the distinct values
      and one radix sort of small integer keys, instead of two full sorts of seed and image.

    Both steps only compare and select values, so the output holds the same floats.

    Parameters
    ----------
    closed : ndarray of float
        The (grey-closed) label of one region's box.
    footprint : ndarray of bool
        The neighbourhood, a 3-per-axis structuring element (``generate_binary_structure``).

    Returns
    -------
    ndarray, same shape and dtype as `closed`.

    Examples
    --------
    >>> bowl = np.array([[3, 3, 3, 3], [3, 1, 2, 3], [3, 3, 3, 3]], np.float32)
    >>> fill_basins(bowl, ndimage.generate_binary_structure(2, 2))[1]
    array([3., 3., 3., 3.], dtype=float32)
    """
    if not _may_hold_a_basin(closed, footprint):
        return closed
    try:
        from skimage.morphology._grayreconstruct import reconstruction_loop
    except ImportError:  # a scikit-image without the private loop: its public (slower) function
        return _reference_fill(closed, footprint)
    ndim = closed.ndim
    padded = tuple(n + 2 for n in closed.shape)
    inside = tuple(slice(1, n + 1) for n in closed.shape)
    values = np.unique(closed)
    top = values.size - 1
    key_dtype = np.uint16 if top < 2**16 else np.uint32  # uint16 keys sort by radix, in linear time
    # The layout of scikit-image's reconstruction: (seed, image) stacked and padded by one voxel of the
    # largest value. A key is the position of a value in ascending order (erosion handles low values first).
    keys = np.full((2,) + padded, top, key_dtype)
    image_keys = np.searchsorted(values, closed).astype(key_dtype)
    keys[(1,) + inside] = image_keys
    seed = keys[(0,) + inside]  # interior: the largest value; outer layer: the image
    for axis in range(ndim):
        for end in (0, -1):
            face = (slice(None),) * axis + (end,)
            seed[face] = image_keys[face]
    flat = keys.reshape(-1)
    signed = np.result_type(np.min_scalar_type(-flat.size), np.int32)
    order = np.argsort(flat, kind="stable").astype(signed, copy=False)
    previous, following = np.empty(flat.size, signed), np.empty(flat.size, signed)
    previous[order[0]], following[order[-1]] = -1, -1
    previous[order[1:]], following[order[:-1]] = order[:-1], order[1:]
    offsets = np.stack(np.nonzero(footprint), axis=1) - 1
    offsets = offsets[np.any(offsets != 0, axis=1)]
    neighbours = (offsets @ (np.array(keys.strides[1:]) // keys.itemsize)).astype(signed)
    ranks = np.subtract(top, flat, dtype=np.dtype(signed.char.upper()))  # rank 0 = the largest value
    reconstruction_loop(ranks, previous, following, neighbours, order[0], flat.size // 2)
    filled = ranks[: flat.size // 2].reshape(padded)[inside]
    return values[top - filled.astype(np.intp)]


def _may_hold_a_basin(closed: np.ndarray, footprint: np.ndarray) -> bool:
    """False when every regional minimum of `closed` touches the box's outer layer (nothing to fill).

    A basin (a voxel that the reconstruction raises) holds a regional minimum off the outer layer:
    the lowest plateau of the voxels below its spill level, which no path leaves without climbing.
    Minima at the maximum (a constant box) fill nothing.
    """
    from skimage.morphology import local_minima

    if min(closed.shape) < 3:  # no interior: the seed is the image
        return False
    minima = local_minima(closed, footprint=footprint, allow_borders=True) & (closed < closed.max())
    plateaus, count = ndimage.label(minima, structure=footprint)
    if count == 0:
        return False
    border = np.ones(closed.shape, bool)
    border[(slice(1, -1),) * closed.ndim] = False
    touches = np.zeros(count + 1, bool)
    touches[plateaus[border]] = True
    return not touches[1:].all()


# Private hook for the benchmark's reference-like pipeline: scikit-image's reconstruction, the
# reference's way (same result, its cost).
_fill_function = fill_basins
