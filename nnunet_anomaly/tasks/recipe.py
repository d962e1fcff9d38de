"""The shared anomaly recipe: random shapes, placement on the foreground, repetition, labelling."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

from nnunet_anomaly._checks import check_image, check_mask, supported_float_dtype
from nnunet_anomaly.labelling import _bounding_box, _label_in_box
from nnunet_anomaly.tasks.base import PlacementError, Placement, TaskOptions
from nnunet_anomaly.tasks.registry import get_task
from nnunet_anomaly.tasks.shapes import sample_shape

#: Smallest spatial size per axis the recipe accepts (a shape needs room to be placed and deformed).
MIN_SPATIAL_SIZE = 5

# A shape is kept for this many corner draws before a new one is drawn, so that one unlucky large
# shape cannot exhaust the placement budget on a small foreground.
_CORNERS_PER_SHAPE = 25


class AnomalyResult(NamedTuple):
    """What :func:`apply_tasks` returns."""

    image: np.ndarray  #: anomalous image, (C, *spatial), the input's float dtype, a new array
    mask: np.ndarray  #: bool anomaly mask, spatial
    label: np.ndarray  #: float32 soft label in [0, 1], spatial, 0 outside `mask`
    task: str  #: the task that was applied
    n_anomalies: int  #: how many anomalies were placed (1..max_anomalies)


class AnomalyRecord(NamedTuple):
    """One placed anomaly: its parameters and the box of voxels it may have changed."""

    params: object
    box: tuple


def apply_tasks(
    image,
    tasks: Sequence[str] | str,
    rng: np.random.Generator,
    *,
    foreground=None,
    intra_pool=None,
    inter_pool=None,
    options: Optional[TaskOptions] = None,
) -> AnomalyResult:
    """Corrupt `image` with one synthetic task, chosen uniformly from `tasks`, and label the change.

    The recipe of the reference: draw a random shape, place it uniformly with its bounding box
    inside the image (with a `foreground`, at least ``options.min_overlap`` of the shape on it), apply
    the task, and repeat with probability ``options.p_another`` up to ``options.max_anomalies`` times.
    Later anomalies act on the already corrupted image; the label comes from the total change.

    Parameters
    ----------
    image : ndarray, shape (C, *spatial)
        Channel-first image, float32 or float64 (other dtypes are converted to float64). Never modified.
    tasks : sequence of str
        Names of registered tasks (``TASK_NAMES`` or added ones); one is chosen uniformly per call.
    rng : numpy.random.Generator
        The only source of randomness: the same seed gives the same result.
    foreground : ndarray of bool, shape spatial, optional
        Where anomalies may go (for brains, the brain mask). Must not be empty.
    intra_pool, inter_pool : SourcePool, optional
        Sources for ``intra_blend`` and ``inter_blend``; required when those tasks are listed.
    options : TaskOptions, optional
        Recipe settings (default ``TaskOptions()``, the reference's brain settings).

    Returns
    -------
    AnomalyResult
        ``(image, mask, label, task, n_anomalies)``.

    Raises
    ------
    PlacementError
        If the first anomaly cannot be placed within ``options.max_placement_tries`` (later
        anomalies that cannot be placed are skipped: the image gets fewer anomalies).
    ValueError
        For bad input: wrong ndim, NaN/inf, a constant image, an empty or mismatched foreground, an
        image smaller than ``MIN_SPATIAL_SIZE`` on some axis, an unknown task, a missing pool.

    Examples
    --------
    >>> image = np.random.default_rng(0).normal(size=(1, 32, 32)).astype(np.float32)
    >>> result = apply_tasks(image, ["smooth_intensity"], np.random.default_rng(1))
    >>> result.task, result.image.dtype, result.mask.shape, result.label.dtype
    ('smooth_intensity', dtype('float32'), (32, 32), dtype('float32'))
    >>> bool(result.mask.any() and 0 <= result.label.min() <= result.label.max() <= 1)
    True
    >>> bool(np.all(result.label[~result.mask] == 0))
    True
    """
    return _apply_tasks_detailed(
        image, tasks, rng, foreground=foreground, intra_pool=intra_pool, inter_pool=inter_pool, options=options
    )[0]


def _validate(image, tasks, rng, foreground, intra_pool, inter_pool, options):
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"`rng` must be a numpy.random.Generator (np.random.default_rng(seed)); got {type(rng).__name__}")
    if options is None:
        options = TaskOptions()
    elif not isinstance(options, TaskOptions):
        raise ValueError(f"`options` must be a TaskOptions; got {type(options).__name__}")
    image = _check_image_fast(image)
    if min(image.shape[1:]) < MIN_SPATIAL_SIZE:
        raise ValueError(
            f"`image` of shape {image.shape} is smaller than the smallest anomaly shape: every spatial axis "
            f"needs >= {MIN_SPATIAL_SIZE} voxels"
        )
    if isinstance(tasks, str):
        tasks = [tasks]
    tasks = list(tasks)
    if not tasks:
        raise ValueError("`tasks` is empty; name at least one task")
    task_objects = [get_task(name) for name in tasks]
    if "intra_blend" in tasks and intra_pool is None:
        raise ValueError("`intra_blend` needs `intra_pool` (a SourcePool of images from the same data partition)")
    if "inter_blend" in tasks and inter_pool is None:
        raise ValueError("`inter_blend` needs `inter_pool` (a SourcePool of external images, e.g. FolderPool)")
    if foreground is not None:
        foreground = check_mask(foreground, image.shape[1:], name="foreground", allow_empty=False)
    return image, task_objects, foreground, options


def _check_image_fast(image) -> np.ndarray:
    """`check_image`'s verdict in two passes (min and max) for valid images: NaN/inf show up in them.

    The full checker runs only when something looks wrong, to give its exact message.
    """
    array = np.asarray(image)
    if array.ndim < 2 or array.size == 0 or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        return check_image(array, name="image")
    flat = array.reshape(array.shape[0], -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    if not (np.isfinite(low).all() and np.isfinite(high).all()) or low.min() == high.max():
        check_image(array, name="image")  # raises the precise message (NaN/inf count, constant)
    return array


def _apply_tasks_detailed(image, tasks, rng, *, foreground=None, intra_pool=None, inter_pool=None, options=None):
    """:func:`apply_tasks` plus the list of :class:`AnomalyRecord` (for tests and inspection)."""
    image, task_objects, foreground, options = _validate(image, tasks, rng, foreground, intra_pool, inter_pool, options)
    task = task_objects[int(rng.integers(len(task_objects)))]
    work = image.astype(supported_float_dtype(image.dtype), copy=True)
    spatial = work.shape[1:]
    union = np.zeros(spatial, dtype=bool)
    foreground_box = _foreground_box(foreground) if foreground is not None else None
    records = []
    for index in range(int(options.max_anomalies)):
        placement = _sample_placement(rng, spatial, foreground, foreground_box, options)
        if placement is None:
            if index == 0:
                raise PlacementError(
                    f"could not place an anomaly with >= {options.min_overlap:.0%} of its shape on the foreground "
                    f"in {options.max_placement_tries} tries (foreground: "
                    f"{int(foreground.sum()) if foreground is not None else 'none'} of {union.size} voxels)"
                )
        else:
            params = task.sample_params(rng, work, placement, options, intra_pool=intra_pool, inter_pool=inter_pool)
            box, local_mask = task.apply_into(work, params)
            union[box] |= local_mask
            records.append(AnomalyRecord(params, box))
        if rng.random() >= options.p_another:
            break
    label = np.zeros(spatial, dtype=np.float32)
    if records:
        lows = np.min([[s.start for s in r.box] for r in records], axis=0)
        highs = np.max([[s.stop for s in r.box] for r in records], axis=0)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lows, highs))
        label[box] = _label_in_box(image, work, union, box, options.sigma, options.fill_holes)
    return AnomalyResult(work, union, label, task.name, len(records)), records


def _foreground_box(foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last foreground index per axis."""
    box = _bounding_box(foreground)
    return np.array([s.start for s in box]), np.array([s.stop - 1 for s in box])


def sample_placement(
    rng: np.random.Generator,
    spatial_shape: Sequence[int],
    *,
    foreground=None,
    options: Optional[TaskOptions] = None,
) -> Optional[Placement]:
    """Draw a shape and a corner for it, or None when none fits the foreground within the try budget.

    Corners are uniform over the positions that keep the bounding box in the image; with a
    foreground, a placement needs ``options.min_overlap`` of the shape's voxels on it. Corners whose
    box misses the foreground's bounding box entirely are never drawn (they would be rejected anyway,
    so the accepted distribution is unchanged).

    Examples
    --------
    >>> placement = sample_placement(np.random.default_rng(0), (40, 40))
    >>> all(0 <= c and c + s <= 40 for c, s in zip(placement.corner, placement.shape.bbox_shape))
    True
    """
    options = options or TaskOptions()
    spatial = tuple(int(s) for s in spatial_shape)
    box = None
    if foreground is not None:
        foreground = check_mask(foreground, spatial, name="foreground", allow_empty=False)
        box = _foreground_box(foreground)
    return _sample_placement(rng, spatial, foreground, box, options)


def _sample_placement(rng, spatial, foreground, foreground_box, options) -> Optional[Placement]:
    size = np.asarray(spatial)
    shape = mask = None
    for attempt in range(int(options.max_placement_tries)):
        if attempt % _CORNERS_PER_SHAPE == 0:
            shape = sample_shape(
                rng, spatial, min_fraction=options.min_anomaly_fraction, max_fraction=options.max_anomaly_fraction
            )
            extent = np.asarray(shape.bbox_shape)
            mask = shape.mask() if foreground is not None else None
        high = size - extent  # inclusive upper bound of the corner
        if np.any(high < 0):
            continue  # cannot happen after sample_shape's cap; kept as a guard
        low = np.zeros_like(high)
        if foreground_box is not None and options.min_overlap > 0:
            low = np.maximum(low, foreground_box[0] - extent + 1)
            high = np.minimum(high, foreground_box[1])
            if np.any(low > high):
                continue
        corner = rng.integers(low, high, endpoint=True)
        placement = Placement(shape, tuple(int(c) for c in corner))
        if foreground is None:
            return placement
        on_foreground = np.count_nonzero(mask & foreground[placement.slices])
        if on_foreground >= options.min_overlap * np.count_nonzero(mask) and on_foreground > 0:
            return placement
    return None
