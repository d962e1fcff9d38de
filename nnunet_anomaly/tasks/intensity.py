"""Smooth intensity change: add a constant per channel inside the shape, ramped in from its edge."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_anomaly.tasks.base import AnomalyTask, Placement, TaskOptions, channel_ranges


@dataclass(frozen=True)
class SmoothIntensityParams:
    """Parameters of one smooth intensity change (plain data).

    Attributes
    ----------
    placement : Placement
    margin : float
        Ramp width before it is capped by the shape's largest inside distance.
    deltas : tuple of float
        Intensity change per channel (signed).
    """

    placement: Placement
    margin: float
    deltas: tuple[float, ...]


def sample_smooth_intensity_params(
    rng: np.random.Generator, image: np.ndarray, placement: Placement, options: TaskOptions
) -> SmoothIntensityParams:
    """Draw the ramp width and the per-channel change with the reference's distributions.

    ``margin = min(image_shape) * (0.02 + Gamma(3, 0.01))``; ``|delta| = scale / 2 + Gamma(3, scale)``,
    one magnitude for all channels with a random sign per channel.
    """
    margin = float(min(image.shape[1:]) * (0.02 + rng.gamma(3.0, 0.01)))
    scale = options.intensity_scale
    magnitude = scale / 2 + rng.gamma(3.0, scale)
    signs = rng.choice(np.array([1.0, -1.0]), size=image.shape[0])
    return SmoothIntensityParams(placement, margin, tuple(float(magnitude * s) for s in signs))


def apply_smooth_intensity(image: np.ndarray, params: SmoothIntensityParams) -> np.ndarray:
    """Return a copy of `image` (channel-first) with the intensity change applied.

    The change is ``delta_c * min(E / d_s, 1)`` inside the shape, where ``E`` is the Euclidean distance
    to the outside of the shape (bbox-local) and ``d_s = min(margin, max(E))``; the result is clipped
    to the image's per-channel range.

    Examples
    --------
    >>> from nnunet_anomaly.tasks.shapes import AnomalyShape
    >>> square = AnomalyShape("rectangle", (3, 3), ((1.0, 0.0), (0.0, 1.0)))
    >>> image = np.linspace(0, 1, 25).reshape(1, 5, 5)
    >>> params = SmoothIntensityParams(Placement(square, (1, 1)), margin=2.0, deltas=(-0.1,))
    >>> (apply_smooth_intensity(image, params) - image)[0].round(3)
    array([[ 0.  ,  0.  ,  0.  ,  0.  ,  0.  ],
           [ 0.  , -0.05, -0.05, -0.05,  0.  ],
           [ 0.  , -0.05, -0.1 , -0.05,  0.  ],
           [ 0.  , -0.05, -0.05, -0.05,  0.  ],
           [ 0.  ,  0.  ,  0.  ,  0.  ,  0.  ]])
    """
    return SMOOTH_INTENSITY.apply(image, params).image


class SmoothIntensityTask(AnomalyTask):
    """Task 4 of the reference: a smooth intensity change (``smooth_intensity``)."""

    name = "smooth_intensity"

    def sample_params(self, rng, image, placement, options, *, intra_pool=None, inter_pool=None):
        return sample_smooth_intensity_params(rng, image, placement, options)

    def apply_into(self, work, params):
        box = params.placement.slices
        mask = params.placement.shape.mask()
        # Pad so that shape voxels on the box border count as next to the outside (the reference's
        # bbox-local transform has no background at all for a shape that fills its box).
        distance = ndimage.distance_transform_edt(np.pad(mask, 1))[(slice(1, -1),) * mask.ndim]
        ramp_width = min(params.margin, float(distance.max()))
        ramp = np.minimum(distance / ramp_width, 1.0).astype(work.dtype, copy=False)
        low, high = channel_ranges(work)
        deltas = np.asarray(params.deltas, dtype=work.dtype).reshape((-1,) + (1,) * mask.ndim)
        patch = work[(slice(None),) + box]
        np.clip(patch + deltas * ramp, low, high, out=patch)
        return box, mask


SMOOTH_INTENSITY = SmoothIntensityTask()
