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
