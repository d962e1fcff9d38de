"""Input validation shared by every public function: one checker each, clear messages."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def supported_float_dtype(dtype: np.dtype) -> np.dtype:
    """float32 stays float32, float64 stays float64, everything else becomes float64.

    Examples
    --------
    >>> supported_float_dtype(np.dtype("float32")), supported_float_dtype(np.dtype("uint8"))
    (dtype('float32'), dtype('float64'))
    """
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        return np.dtype(np.float32)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def check_finite(array: np.ndarray, name: str) -> None:
    """Raise ValueError if `array` holds NaN or inf."""
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"`{name}` has {int(bad.sum())} NaN/inf values; anomaly generation needs finite intensities")


def check_image(
    image,
    *,
    name: str = "image",
    spatial_ndim: Sequence[int] | None = None,
    channel_first: bool = True,
    allow_constant: bool = False,
) -> np.ndarray:
    """Validate a channel-first image ``(C, *spatial)`` and return it as an ndarray (no copy).

    Parameters
    ----------
    image : array_like
        The image.
    name : str
        Name used in error messages.
    spatial_ndim : sequence of int, optional
        Allowed numbers of spatial dimensions (default: any >= 1).
    channel_first : bool
        Whether axis 0 is a channel axis.
    allow_constant : bool
        Whether a constant image is acceptable.

    Raises
    ------
    ValueError
        For a non-numeric array, the wrong number of dimensions, NaN/inf or a constant image.

    Examples
    --------
    >>> check_image(np.zeros((1, 4, 4)))
    Traceback (most recent call last):
    ...
    ValueError: `image` is constant (every value is 0.0); synthetic anomalies need contrast
    """
    array = np.asarray(image)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"`{name}` must be a numeric array; got dtype {array.dtype}")
    n_spatial = array.ndim - (1 if channel_first else 0)
    layout = "(C, *spatial)" if channel_first else "spatial"
    if n_spatial < 1 or (spatial_ndim is not None and n_spatial not in spatial_ndim):
        allowed = "any number of" if spatial_ndim is None else " or ".join(map(str, spatial_ndim))
        raise ValueError(f"`{name}` must be {layout} with {allowed} spatial dimensions; got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"`{name}` is empty; got shape {array.shape}")
    check_finite(array, name)
    if not allow_constant and np.ptp(array) == 0:
        raise ValueError(f"`{name}` is constant (every value is {float(array.flat[0])}); synthetic anomalies need contrast")
    return array


def check_mask(mask, spatial_shape: Sequence[int], *, name: str = "mask", allow_empty: bool = True) -> np.ndarray:
    """Validate a boolean mask of the given spatial shape and return it as a bool ndarray."""
    array = np.asarray(mask)
    if array.shape != tuple(spatial_shape):
        raise ValueError(f"`{name}` must have the image's spatial shape {tuple(spatial_shape)}; got {array.shape}")
    if array.dtype != bool:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise ValueError(f"`{name}` must be boolean; got dtype {array.dtype}")
        check_finite(array, name)
        array = array != 0
    if not allow_empty and not array.any():
        raise ValueError(f"`{name}` is empty (no True voxel)")
    return array
