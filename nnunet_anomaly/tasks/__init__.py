"""The five synthetic anomaly tasks of Many-tasks, and the shared recipe that applies them.

Everything works on channel-first numpy arrays ``(C, *spatial)`` in any number of spatial dimensions,
with an explicit :class:`numpy.random.Generator`. The entry point is :func:`apply_tasks`::

    result = apply_tasks(image, TASK_NAMES, rng, foreground=brain_mask,
                         intra_pool=ArrayPool(training_images), inter_pool=FolderPool(folder))
    result.image, result.mask, result.label, result.task, result.n_anomalies

Each task is also available on its own, as "sample the parameters, then apply them":

- ``intra_blend`` / ``inter_blend``: :func:`sample_blend_params`, :func:`apply_blend`;
- ``sink`` / ``source``: :func:`sample_deformation_params`, :func:`apply_deformation`;
- ``smooth_intensity``: :func:`sample_smooth_intensity_params`, :func:`apply_smooth_intensity`;

and as task objects in :data:`TASKS` (``TASKS["sink"].sample_params(...)``, ``.apply(image, params)``).
To add a sixth task, subclass :class:`AnomalyTask` and call :func:`register_task` (see
:mod:`nnunet_anomaly.tasks.base`).

The distributions are the reference's (Baugh et al.'s code). Where we differ, it is on purpose:

- every random search is bounded: placement gives up after ``max_placement_tries`` (a new shape every
  25 tries), raising :class:`PlacementError` for the first anomaly and skipping later ones; the
  blend-source location falls back to an exact draw among valid centres;
- deformations are clipped to the patch's range after resampling (splines overshoot); every task
  clips to the image's per-channel range, so no intensity is invented;
- nothing the caller passes is modified, and all randomness comes from the ``rng`` argument;
- resampling is order 1 by default (``TaskOptions(interpolation_order=3)`` restores the reference's
  cubic splines), and only the voxels that matter are resampled;
- the Poisson solve covers the shape's box grown by at least one voxel (an FFT-friendly size), not the
  patch box itself, and the anomaly mask grows over that solver box where the change exceeds 0.001;
- the blend source is resampled one voxel past the patch box, so the forward differences on the
  shape's far faces compare source with source; the reference instead zeroes the mask's outer box
  layer (pie-torch, in place), and a source valid only inside the box would leave a ramp ending in a
  cliff on the far faces (measured far/near face change ratio 8-19 before the fix, 1.0-1.3 after);
- the labeller closes and fills holes per region as the reference does (``TaskOptions.fill_holes``,
  default True; without it the mean label inside the mask is 6-13 points lower for the blends, sink
  and source), but the result is restricted to the anomaly mask, where the reference writes the
  region's whole bounding box back;
- the intensity ramp's inside distance counts the box border as outside the shape (the reference's
  box-local transform has no background at all when a shape fills its box);
- shapes never exceed the image, sides are at least one voxel, and images need >= ``MIN_SPATIAL_SIZE``
  voxels per axis.
"""
from nnunet_anomaly.tasks.base import AnomalyTask, Placement, PlacementError, TaskOptions, TaskOutput
from nnunet_anomaly.tasks.blending import BlendParams, apply_blend, resample_source_patch, sample_blend_params
from nnunet_anomaly.tasks.deformation import (
    DeformationParams,
    apply_deformation,
    deformation_factor,
    sample_deformation_params,
    sample_push_distance,
)
from nnunet_anomaly.tasks.intensity import (
    SmoothIntensityParams,
    apply_smooth_intensity,
    sample_smooth_intensity_params,
)
from nnunet_anomaly.tasks.recipe import MIN_SPATIAL_SIZE, AnomalyResult, apply_tasks, sample_placement
from nnunet_anomaly.tasks.registry import TASK_NAMES, TASKS, get_task, register_task
from nnunet_anomaly.tasks.shapes import AnomalyShape, sample_shape

intra_blend = TASKS["intra_blend"]
inter_blend = TASKS["inter_blend"]
sink = TASKS["sink"]
source = TASKS["source"]
smooth_intensity = TASKS["smooth_intensity"]

__all__ = [
    "TASK_NAMES", "TASKS", "TaskOptions", "AnomalyResult", "PlacementError", "apply_tasks",
    "AnomalyTask", "TaskOutput", "Placement", "AnomalyShape", "sample_shape", "sample_placement",
    "register_task", "get_task", "MIN_SPATIAL_SIZE",
    "BlendParams", "sample_blend_params", "apply_blend", "resample_source_patch",
    "DeformationParams", "sample_deformation_params", "apply_deformation", "deformation_factor",
    "sample_push_distance",
    "SmoothIntensityParams", "sample_smooth_intensity_params", "apply_smooth_intensity",
    "intra_blend", "inter_blend", "sink", "source", "smooth_intensity",
]
