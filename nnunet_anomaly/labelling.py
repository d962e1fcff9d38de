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
    from skimage.morphology import reconstruction

    footprint = ndimage.generate_binary_structure(mask.ndim, 2)
    out = label.astype(np.float64)
    regions, _ = ndimage.label(mask)
    for region in ndimage.find_objects(regions):
        closed = ndimage.grey_closing(out[region], footprint=footprint)
        seed = closed.copy()
        seed[(slice(1, -1),) * mask.ndim] = closed.max()
        out[region] = reconstruction(seed, closed, method="erosion", footprint=footprint)
    # The reference writes the whole region box back; we keep the label's support inside the mask.
    return np.where(mask, np.clip(out, 0.0, 1.0), 0.0).astype(np.float32)
