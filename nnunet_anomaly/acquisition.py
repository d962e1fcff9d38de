"""Acquisition and anatomy variation of a healthy scan: the same brain as another scanner would show it.

The paper's discussion traces its brain results' domain shift to acquisition differences and names
one cure, simulating anisotropic spacing. These are small, dimension-agnostic functions over
channel-first arrays ``(C, *spatial)`` with a foreground mask ``(*spatial)``; :func:`vary_acquisition`
draws a random combination of them from :class:`AcquisitionOptions`. Applied to a healthy training
image before a synthetic anomaly is inserted, they teach the network that these changes are normal:
the anomaly, not the scanner, is what it must mark.

Every function keeps the background (outside the foreground) at 0 and, through :func:`zscore_foreground`,
the foreground at zero mean and unit variance, as the brain preprocessing left it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage

__all__ = ["AcquisitionOptions", "smooth_random_field", "bias_field", "thick_slices", "gamma_contrast",
           "add_noise", "rescale", "zscore_foreground", "vary_acquisition"]


def smooth_random_field(shape, rng: np.random.Generator, grid: int, amplitude: float) -> np.ndarray:
    """A smooth random field: Gaussian noise on a coarse `grid`^N lattice, interpolated to `shape`.

    Separable Gaussian-kernel interpolation (one small matrix per axis, then tensor products): much
    faster than a cubic zoom of the whole volume and just as smooth.

    Examples
    --------
    >>> field = smooth_random_field((20, 30), np.random.default_rng(0), grid=3, amplitude=1.0)
    >>> field.shape, field.dtype, bool(np.abs(np.diff(field, axis=1)).max() < 0.2)
    ((20, 30), dtype('float32'), True)
    """
    coarse = rng.normal(0.0, amplitude, size=(grid,) * len(shape))
    field = coarse
    for axis, size in enumerate(shape):
        nodes = np.linspace(0.0, size - 1.0, grid)
        width = (size - 1.0) / max(grid - 1, 1)
        weights = np.exp(-0.5 * ((np.arange(size)[:, None] - nodes[None, :]) / width) ** 2)
        weights /= weights.sum(axis=1, keepdims=True)
        field = np.moveaxis(np.tensordot(weights, np.moveaxis(field, axis, 0), axes=(1, 0)), 0, axis)
    return field.astype(np.float32)


def zscore_foreground(image: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Each channel z-scored inside `foreground` and set to 0 outside (the brain preprocessing's convention).

    Examples
    --------
    >>> img = np.array([[1.0, 2.0, 3.0, 9.0]]); fg = np.array([True, True, True, False])
    >>> [round(float(v), 3) for v in zscore_foreground(img, fg)[0]]
    [-1.225, 0.0, 1.225, 0.0]
    """
    out = np.zeros_like(image, dtype=np.float32)
    if not foreground.any():
        return out
    for c in range(image.shape[0]):
        values = image[c][foreground]
        out[c][foreground] = (values - values.mean()) / max(float(values.std()), 1e-6)
    return out


def bias_field(image: np.ndarray, foreground: np.ndarray, rng: np.random.Generator, strength: float,
               grid: int = 3) -> np.ndarray:
    """Multiply the foreground's intensities by a smooth field ``exp(f)``, ``f`` of standard deviation `strength`.

    The image is shifted to be positive inside the foreground first (an MRI's bias multiplies
    magnitudes, not z-scores), then z-scored again.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(size=(1, 16, 16)).astype(np.float32); fg = np.ones((16, 16), bool)
    >>> out = bias_field(img, fg, rng, strength=0.3)
    >>> out.shape, round(float(out[0].mean()), 6) == 0.0, bool(np.abs(out - img).max() > 0.05)
    ((1, 16, 16), True, True)
    """
    field = np.exp(smooth_random_field(foreground.shape, rng, grid, strength))
    positive = np.where(foreground, image - image[:, foreground].min(axis=1).reshape(-1, *[1] * foreground.ndim)
                        + 1.0, 0.0)
    return zscore_foreground(positive * field, foreground)


def thick_slices(image: np.ndarray, foreground: np.ndarray, axis: int, factor: float) -> np.ndarray:
    """Simulate slices `factor` times thicker along spatial `axis`: average over the slab, sample, interpolate back.

    A thick-slice acquisition integrates the signal over each slab and is then resampled to the
    working grid: the image is box-averaged over `factor` voxels along `axis`, sampled every
    `factor` voxels, and linearly interpolated back to the original size. The foreground is kept.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(size=(1, 30, 30)).astype(np.float32); fg = np.ones((30, 30), bool)
    >>> out = thick_slices(img, fg, axis=0, factor=3.0)
    >>> def roughness(a, axis): return float(np.abs(np.diff(a[0], axis=axis)).mean())
    >>> roughness(out, 0) < 0.5 * roughness(img, 0), roughness(out, 1) > 0.5 * roughness(img, 1)
    (True, True)
    """
    if factor <= 1.0:
        return image
    spatial = image.shape[1:]
    n = spatial[axis]
    centred = np.where(foreground, image, 0.0)
    weight = foreground.astype(np.float32)
    size = max(1, int(round(factor)))
    # average over a slab, foreground-weighted so the brain's edge is not darkened by the background
    summed = ndimage.uniform_filter1d(centred, size, axis=axis + 1, mode="constant")
    norm = ndimage.uniform_filter1d(weight, size, axis=axis, mode="constant")
    slab = summed / np.maximum(norm, 1e-3)
    # one slab every `factor` voxels (centres 0, factor, 2 factor, ...)
    low_positions = np.clip(np.round(np.arange(0.0, n - 1e-6, factor)).astype(int), 0, n - 1)
    low = np.take(slab, low_positions, axis=axis + 1)
    # linear interpolation back to every voxel along the axis
    position = np.clip(np.arange(n) / factor, 0, len(low_positions) - 1)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, len(low_positions) - 1)
    t = (position - below).astype(np.float32)
    shape = [1] * image.ndim
    shape[axis + 1] = n
    out = np.take(low, below, axis=axis + 1) * (1 - t.reshape(shape)) + np.take(low, above, axis=axis + 1) * \
        t.reshape(shape)
    return zscore_foreground(out.astype(np.float32), foreground)


def gamma_contrast(image: np.ndarray, foreground: np.ndarray, gamma: float) -> np.ndarray:
    """A gamma curve on the foreground's intensities (mapped to [0, 1] per channel, raised to `gamma`, mapped back).

    Examples
    --------
    >>> img = np.array([[0.0, 0.5, 1.0]]); fg = np.ones(3, bool)
    >>> bool(gamma_contrast(img, fg, 2.0)[0, 1] < 0), bool(gamma_contrast(img, fg, 0.5)[0, 1] > 0)
    (True, True)
    """
    out = np.empty_like(image, dtype=np.float32)
    for c in range(image.shape[0]):
        values = image[c]
        low, high = float(values[foreground].min()), float(values[foreground].max())
        unit = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)
        out[c] = unit ** gamma
    return zscore_foreground(out, foreground)


def add_noise(image: np.ndarray, foreground: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian noise of standard deviation `sigma` (in units of the foreground's standard deviation).

    Examples
    --------
    >>> rng = np.random.default_rng(0); fg = np.ones((50, 50), bool)
    >>> out = add_noise(np.zeros((1, 50, 50), np.float32), fg, rng, sigma=0.1)
    >>> round(float(out.std()), 1)
    1.0
    """
    noisy = image + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    return zscore_foreground(noisy, foreground)


def rescale(image: np.ndarray, foreground: np.ndarray, scale) -> Tuple[np.ndarray, np.ndarray]:
    """Zoom the content by `scale` per spatial axis about the foreground's centre (a bigger or smaller head).

    Linear interpolation for the image, nearest neighbour for the foreground; the array shape is kept.

    Returns
    -------
    image, foreground

    Examples
    --------
    >>> img = np.zeros((1, 21, 21), np.float32); img[0, 8:13, 8:13] = 1; fg = img[0] > 0
    >>> _, bigger = rescale(img, fg, (1.4, 1.4))
    >>> int(fg.sum()), int(bigger.sum())
    (25, 49)
    """
    scale = np.broadcast_to(np.asarray(scale, float), (foreground.ndim,))
    where = np.argwhere(foreground)
    centre = where.mean(axis=0) if len(where) else (np.array(foreground.shape) - 1) / 2
    grid = np.indices(foreground.shape, dtype=np.float32)
    coords = [(grid[a] - centre[a]) / scale[a] + centre[a] for a in range(foreground.ndim)]
    new_foreground = ndimage.map_coordinates(foreground.astype(np.float32), coords, order=1, mode="constant") >= 0.5
    channels = [ndimage.map_coordinates(np.where(foreground, image[c], 0.0), coords, order=1, mode="constant")
                for c in range(image.shape[0])]
    new_image = np.stack(channels).astype(np.float32)
    if not new_foreground.any():
        return image, foreground
    return zscore_foreground(new_image, new_foreground), new_foreground


@dataclass(frozen=True)
class AcquisitionOptions:
    """How often and how strongly :func:`vary_acquisition` changes a healthy image.

    Each ``p_*`` is the probability of one change; the ranges are drawn uniformly. ``thick_slice_factor``
    is the slice thickness in voxels of the working grid (one random axis); ``scale_range`` zooms each
    axis independently (anatomy size and shape); ``gamma_range`` is drawn in log space.
    """

    p_thick_slices: float = 0.25
    thick_slice_factor: Tuple[float, float] = (1.5, 3.0)
    p_bias: float = 0.3
    bias_strength: Tuple[float, float] = (0.05, 0.3)
    p_gamma: float = 0.3
    gamma_range: Tuple[float, float] = (0.7, 1.5)
    p_noise: float = 0.2
    noise_sigma: Tuple[float, float] = (0.02, 0.15)
    p_scale: float = 0.3
    scale_range: Tuple[float, float] = (0.88, 1.12)

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"AcquisitionOptions.{field.name} must be in [0, 1], got {value}")
            if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1] or value[0] <= 0):
                raise ValueError(f"AcquisitionOptions.{field.name} must be (low, high) with 0 < low <= high, got "
                                 f"{value}")


def vary_acquisition(image: np.ndarray, foreground: np.ndarray, rng: np.random.Generator,
                     options: Optional[AcquisitionOptions] = None) -> Tuple[np.ndarray, np.ndarray]:
    """A random combination of the changes above, drawn from `options` (order: scale, slices, bias, gamma, noise).

    Parameters
    ----------
    image : ndarray, shape (C, *spatial)
        Z-scored inside `foreground`, 0 outside.
    foreground : bool ndarray, shape (*spatial)
    rng : numpy.random.Generator
    options : AcquisitionOptions, optional

    Returns
    -------
    image, foreground
        New arrays (the inputs are not modified); unchanged copies when no change was drawn or the
        foreground is empty.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(size=(1, 12, 14, 10)).astype(np.float32); fg = np.ones((12, 14, 10), bool)
    >>> out, out_fg = vary_acquisition(img, fg, rng, AcquisitionOptions(p_bias=1.0))
    >>> out.shape == img.shape, out_fg.shape == fg.shape
    (True, True)
    """
    options = options or AcquisitionOptions()
    image = np.asarray(image, np.float32)
    foreground = np.asarray(foreground, bool)
    if not foreground.any():
        return image.copy(), foreground.copy()
    ndim = foreground.ndim
    if rng.random() < options.p_scale:
        image, foreground = rescale(image, foreground, rng.uniform(*options.scale_range, size=ndim))
    if rng.random() < options.p_thick_slices:
        image = thick_slices(image, foreground, int(rng.integers(ndim)), float(rng.uniform(*options.thick_slice_factor)))
    if rng.random() < options.p_bias:
        image = bias_field(image, foreground, rng, float(rng.uniform(*options.bias_strength)))
    if rng.random() < options.p_gamma:
        low, high = np.log(options.gamma_range)
        image = gamma_contrast(image, foreground, float(np.exp(rng.uniform(low, high))))
    if rng.random() < options.p_noise:
        image = add_noise(image, foreground, rng, float(rng.uniform(*options.noise_sigma)))
    return image.copy(), foreground.copy()
