"""What every task shares: the options, the placement of a shape, and the task interface.

A task is an object with a stable ``name`` and two methods:

- ``sample_params(rng, image, placement, options, *, intra_pool=None, inter_pool=None)`` draws every
  random number the task needs and returns a frozen dataclass of plain data;
- ``apply_into(work, params)`` applies those parameters to the working image ``work`` (a buffer
  owned by the caller, overwritten inside the anomaly's box only) and returns the box it touched and
  the anomaly mask inside that box. It draws nothing.

``apply(image, params)`` is the pure version for callers: it copies the image first.

How to add a task
-----------------
Subclass :class:`AnomalyTask`, set ``name``, implement ``sample_params`` and ``apply_into``, and
register an instance::

    from nnunet_anomaly.tasks import AnomalyTask, register_task

    class Blur(AnomalyTask):
        name = "blur"
        def sample_params(self, rng, image, placement, options, **pools): ...
        def apply_into(self, work, params): ...

    register_task(Blur())

The task can then be named in ``apply_tasks(image, ["blur", ...], rng)``. Define the class at module
level in an importable module: nnU-Net's augmentation workers pickle tasks by reference.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from nnunet_anomaly.tasks.shapes import AnomalyShape


class PlacementError(ValueError):
    """Not even one anomaly could be placed (for instance the foreground is too small for any shape)."""


@dataclass(frozen=True)
class TaskOptions:
    """Settings of the shared anomaly recipe; the defaults are the reference's brain settings.

    All fields are plain numbers, so the options pickle (nnU-Net's augmentation workers need that)
    and can be stored beside results.

    Attributes
    ----------
    interpolation_order : int
        Spline order for resampling blend sources and deformations: 1 (default, fast) or 3 (the reference).
    max_anomalies : int
        At most this many anomalies per image.
    p_another : float
        Probability of adding one more anomaly after each one (the reference's 0.5).
    min_anomaly_fraction, max_anomaly_fraction : float
        Side-length bounds of a shape as a fraction of the image size per axis (0.06, 0.8).
    min_overlap : float
        Fraction of a shape that must lie on the foreground, when a foreground is given.
    max_placement_tries : int
        Placement attempts (shape and position) per anomaly before giving up.
    max_source_tries : int
        Attempts to find a blend-source location whose centre lies in the source mask.
    intensity_scale : float
        Scale of the smooth intensity change (magnitude ``scale/2 + Gamma(3, scale)``).
    min_push, max_push : float
        Bounds of the deformation push distance in voxels (max 5 brain, 10 CXR).
    max_source_rotation : float
        Blend-source rotation bound per axis pair, in radians (pi/4).
    source_scale_spread : float
        Scale of the exponential in the blend-source scale ``1 + Exp(spread)`` (0.1).
    max_source_fraction : float
        The blend-source region is at most this fraction of the source per axis (0.8).
    blend_change_threshold : float
        A blended voxel whose channel-mean change exceeds this joins the anomaly mask (0.001).
    sigma : float
        Width of the Gaussian labelling function.
    fill_holes : bool
        The reference's grey closing + hole filling per anomaly region in the labeller (default True:
        without it the mean label inside the mask is 6-13 points lower for the blends, sink and source,
        measured on the MNI brain; its cost is in benchmarks/README.md, "Anomaly generator").
        False gives the raw per-voxel label.

    Examples
    --------
    >>> TaskOptions.cxr().max_push, TaskOptions.brain().max_push
    (10.0, 5.0)
    >>> TaskOptions(interpolation_order=3).interpolation_order
    3
    """

    interpolation_order: int = 1
    max_anomalies: int = 4
    p_another: float = 0.5
    min_anomaly_fraction: float = 0.06
    max_anomaly_fraction: float = 0.8
    min_overlap: float = 0.5
    max_placement_tries: int = 100
    max_source_tries: int = 100
    intensity_scale: float = 0.2
    min_push: float = 0.5
    max_push: float = 5.0
    max_source_rotation: float = float(np.pi / 4)
    source_scale_spread: float = 0.1
    max_source_fraction: float = 0.8
    blend_change_threshold: float = 0.001
    sigma: float = 0.2
    fill_holes: bool = True

    def __post_init__(self):
        if self.interpolation_order not in range(6):
            raise ValueError(f"interpolation_order must be an int in 0..5; got {self.interpolation_order!r}")
        if int(self.max_anomalies) < 1:
            raise ValueError(f"max_anomalies must be >= 1; got {self.max_anomalies!r}")
        if not 0 <= self.p_another <= 1:
            raise ValueError(f"p_another must be in [0, 1]; got {self.p_another!r}")
        if not 0 < self.min_anomaly_fraction <= self.max_anomaly_fraction <= 1:
            raise ValueError(
                "need 0 < min_anomaly_fraction <= max_anomaly_fraction <= 1; got "
                f"{self.min_anomaly_fraction!r}, {self.max_anomaly_fraction!r}"
            )
        if not 0 <= self.min_overlap <= 1:
            raise ValueError(f"min_overlap must be in [0, 1]; got {self.min_overlap!r}")
        if int(self.max_placement_tries) < 1 or int(self.max_source_tries) < 1:
            raise ValueError("max_placement_tries and max_source_tries must be >= 1")
        if not 0 <= self.min_push <= self.max_push:
            raise ValueError(f"need 0 <= min_push <= max_push; got {self.min_push!r}, {self.max_push!r}")
        if self.sigma <= 0 or self.intensity_scale <= 0:
            raise ValueError(f"sigma and intensity_scale must be > 0; got {self.sigma!r}, {self.intensity_scale!r}")
        if not 0 < self.max_source_fraction <= 1:
            raise ValueError(f"max_source_fraction must be in (0, 1]; got {self.max_source_fraction!r}")

    @classmethod
    def brain(cls, **changes: Any) -> "TaskOptions":
        """The reference's 3D brain MRI settings (max push 5 voxels)."""
        return cls(**changes)

    @classmethod
    def cxr(cls, **changes: Any) -> "TaskOptions":
        """The reference's 2D chest X-ray settings (max push 10 pixels)."""
        return replace(cls(), max_push=10.0, **changes)


@dataclass(frozen=True)
class Placement:
    """A shape and the corner of its bounding box in the image (plain data).

    Examples
    --------
    >>> shape = AnomalyShape("rectangle", (2, 2), ((1.0, 0.0), (0.0, 1.0)))
    >>> Placement(shape, (4, 1)).slices
    (slice(4, 7, None), slice(1, 4, None))
    """

    shape: AnomalyShape
    corner: tuple[int, ...]

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(c, c + s) for c, s in zip(self.corner, self.shape.bbox_shape))


class TaskOutput(NamedTuple):
    """What :meth:`AnomalyTask.apply` returns: the new image and the full-size boolean anomaly mask."""

    image: np.ndarray
    mask: np.ndarray


class AnomalyTask:
    """Base class of the synthetic anomaly tasks (see the module docstring for the contract)."""

    name: str = ""

    def sample_params(self, rng, image, placement, options, *, intra_pool=None, inter_pool=None):
        raise NotImplementedError

    def apply_into(self, work: np.ndarray, params) -> tuple[tuple[slice, ...], np.ndarray]:
        raise NotImplementedError

    def apply(self, image: np.ndarray, params) -> TaskOutput:
        """Apply `params` to a copy of `image` (channel-first); the input is never modified."""
        work = np.array(image, copy=True)
        box, local_mask = self.apply_into(work, params)
        mask = np.zeros(work.shape[1:], dtype=bool)
        mask[box] = local_mask
        return TaskOutput(work, mask)

    def __repr__(self) -> str:
        return f"<anomaly task {self.name!r}>"


def channel_ranges(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel minimum and maximum of a channel-first image, shaped to broadcast against it."""
    flat = image.reshape(image.shape[0], -1)
    shape = (image.shape[0],) + (1,) * (image.ndim - 1)
    return flat.min(axis=1).reshape(shape), flat.max(axis=1).reshape(shape)
