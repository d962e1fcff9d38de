"""The task registry: stable names -> task objects (the extension point for a sixth task)."""
from __future__ import annotations

from nnunet_anomaly.tasks.base import AnomalyTask
from nnunet_anomaly.tasks.blending import INTER_BLEND, INTRA_BLEND
from nnunet_anomaly.tasks.deformation import SINK, SOURCE
from nnunet_anomaly.tasks.intensity import SMOOTH_INTENSITY

#: The reference's five tasks; the index is the task id (task i is tied to data block i).
TASK_NAMES = ("intra_blend", "inter_blend", "sink", "source", "smooth_intensity")

#: Every registered task by name. Add one with :func:`register_task`.
TASKS: dict[str, AnomalyTask] = {task.name: task for task in (INTRA_BLEND, INTER_BLEND, SINK, SOURCE, SMOOTH_INTENSITY)}


def register_task(task: AnomalyTask, *, replace: bool = False) -> AnomalyTask:
    """Register `task` under ``task.name`` so that :func:`apply_tasks` accepts that name.

    Examples
    --------
    >>> from nnunet_anomaly.tasks.intensity import SmoothIntensityTask
    >>> class Brighter(SmoothIntensityTask):
    ...     name = "brighter_example"
    >>> register_task(Brighter()).name in TASKS
    True
    >>> _ = TASKS.pop("brighter_example")
    """
    if not isinstance(task, AnomalyTask):
        raise ValueError(f"a task must be an AnomalyTask instance; got {type(task).__name__}")
    if not task.name or not isinstance(task.name, str):
        raise ValueError(f"a task needs a non-empty string `name`; got {task.name!r}")
    if task.name in TASKS and not replace:
        raise ValueError(f"a task named {task.name!r} is already registered; pass replace=True to override it")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> AnomalyTask:
    """The registered task called `name` (ValueError listing the known names otherwise)."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
