"""Where a training or validation patch lies in its image: the reference's canvas.

The reference trains on the whole image, padded and centred (3D brain 80x112x80, 2D 256x256). nnU-Net's
data loader instead centres a third of its patches on a random foreground voxel
(``oversample_foreground_percent``), which shifts an image smaller than the patch by up to half the
patch and pads the rest: an edge the network never meets at test time, where the sliding window sees
the whole image centred.

:func:`patch_origin` is the one rule, used by training (:class:`CanvasDataLoader`) and by the fixed
validation set alike: along an axis where the image fits in the patch, the image is centred; along an
axis where it does not, the patch lies inside the image, over a chosen (foreground) voxel as nearly
centred as the image allows. An image is never shifted out of its patch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

__all__ = ["patch_origin", "CanvasDataLoader"]


def patch_origin(shape: Sequence[int], patch_size: Sequence[int], centre: Sequence[int] | None = None,
                 rng: np.random.Generator | None = None) -> list[int]:
    """The lower corner of the patch of `patch_size` in an image of `shape` (negative: padding before).

    Parameters
    ----------
    shape, patch_size : sequences of int
        Spatial shape of the image and of the patch.
    centre : sequence of int, optional
        The voxel the patch should be centred on where the image is larger than the patch (the patch
        is shifted as little as needed to stay inside the image).
    rng : numpy Generator, optional
        Without `centre`: where the image is larger than the patch, a uniformly random position inside
        it. Without either, the patch is centred on the image along every axis.

    Examples
    --------
    The image fits: centred, whatever the centre asked for.

    >>> patch_origin((40, 48, 40), (64, 80, 64), centre=(3, 3, 3))
    [-12, -16, -12]

    It does not fit along the first axis: the patch stays inside the image, over the centre.

    >>> patch_origin((100, 48), (64, 80), centre=(95, 10))
    [36, -16]
    """
    shape, patch_size = [int(s) for s in shape], [int(p) for p in patch_size]
    if len(shape) != len(patch_size):
        raise ValueError(f"image shape {tuple(shape)} and patch size {tuple(patch_size)} differ in dimensions")
    origin = []
    for axis, (n, p) in enumerate(zip(shape, patch_size)):
        if n <= p:
            origin.append(-((p - n + 1) // 2))  # as nnU-Net's loader centres: the odd voxel of padding before
        elif centre is not None:
            origin.append(int(np.clip(int(centre[axis]) - p // 2, 0, n - p)))
        elif rng is not None:
            origin.append(int(rng.integers(0, n - p + 1)))
        else:
            origin.append((n - p) // 2)
    return origin


class CanvasDataLoader(nnUNetDataLoader):
    """nnU-Net's data loader with the reference's canvas (:func:`patch_origin`).

    Oversampled ("foreground") samples are placed over a random foreground voxel, the others at a
    random position, both inside the image; where the image fits the patch it is centred. nnU-Net's
    rotation margin (``patch_size`` larger than ``final_patch_size``) is kept around the patch.
    """

    def get_bbox(self, data_shape, force_fg, class_locations, overwrite_class=None, verbose=False):
        margin = self.need_to_pad  # the larger initial patch of rotation/scaling (0 without them)
        final = [p - m for p, m in zip(self.patch_size, margin)]
        centre = None
        if force_fg and class_locations:
            eligible = [key for key, where in class_locations.items() if len(where)]
            if eligible:
                # nnU-Net's global generator, as its own loader: seeded by the trainer, per worker
                where = class_locations[eligible[np.random.choice(len(eligible))]]
                centre = where[np.random.choice(len(where))][1:]
        rng = None if centre is not None else np.random.default_rng(np.random.randint(2 ** 31))
        origin = patch_origin(data_shape, final, centre, rng)
        lower = [o - m // 2 for o, m in zip(origin, margin)]
        return lower, [lo + p for lo, p in zip(lower, self.patch_size)]
