"""batchgeneratorsv2 transforms that turn nnU-Net's data loader into a synthetic-anomaly generator.

:class:`SyntheticAnomalyTransform` runs inside nnU-Net's data-augmentation workers. It takes the cropped
(and possibly augmented) image patch and nnU-Net's segmentation of it, applies one of the training
tasks (:func:`nnunet_anomaly.tasks.apply_tasks`) inside the foreground, and replaces ``segmentation``
with the float soft label ``(1, *patch)``. :class:`SoftDownsampleForDSTransform` then builds the
deep-supervision targets by averaging, so a soft label stays a soft label at every scale.

Reproducibility
---------------
Each call draws its parameters from a fresh ``numpy.random.Generator`` seeded with
``SeedSequence(seed, spawn_key=(*worker_identity, call_counter))``. The worker identity is the
``multiprocessing`` identity of the data-augmentation process (``()`` in the main process,
``(k,)`` for the k-th worker started), so workers never share a stream, and a given worker produces
the same sequence of anomaly parameters for the same sequence of patches in every run. What is *not*
reproducible is nnU-Net's own sampling: which case and which patch a worker receives comes from
numpy's global RNG, which nnU-Net seeds from OS entropy in each worker, and the multi-process
augmenter delivers batches in arrival order. With ``nnUNet_n_proc_DA=0`` and ``np.random.seed`` /
``torch.manual_seed`` set before training, the whole data stream is reproducible.
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Sequence

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform, SegOnlyTransform
from torch.nn.functional import interpolate

__all__ = ["SyntheticAnomalyTransform", "AcquisitionVariationTransform", "SoftDownsampleForDSTransform",
           "foreground_from_segmentation"]


def foreground_from_segmentation(segmentation) -> np.ndarray:
    """Foreground mask from an nnU-Net segmentation ``(1, *spatial)``: ``label > 0``.

    nnU-Net marks voxels outside the nonzero region as -1 when ``use_mask_for_norm`` is on and pads
    patches with -1; both count as background, as does label 0.

    Examples
    --------
    >>> foreground_from_segmentation(np.array([[-1, 0, 1, 2]])).tolist()
    [False, False, True, True]
    """
    seg = segmentation.numpy() if isinstance(segmentation, torch.Tensor) else np.asarray(segmentation)
    if seg.ndim < 2:
        raise ValueError(f"segmentation must be (1, *spatial), got shape {seg.shape}")
    return seg[0] > 0


def _worker_identity() -> tuple:
    # multiprocessing numbers child processes deterministically in creation order: (1,), (2,), ...
    return tuple(getattr(multiprocessing.current_process(), "_identity", ()) or ())


class _PerSampleSeededTransform(BasicTransform):
    """A transform that draws each sample's parameters from its own generator (see the module docstring)."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = int(seed)
        self._pid = None
        self._worker = ()
        self._counter = 0

    def next_rng(self) -> np.random.Generator:
        """The generator for the next sample of this process (deterministic per worker and call)."""
        pid = os.getpid()
        if pid != self._pid:  # first call in this (possibly freshly started) process
            self._pid, self._worker, self._counter = pid, _worker_identity(), 0
        sequence = np.random.SeedSequence(self.seed, spawn_key=(*self._worker, self._counter))
        self._counter += 1
        return np.random.default_rng(sequence)

    def get_parameters(self, **data_dict) -> dict:
        return {"rng": self.next_rng()}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pid"] = None  # a child process starts its own stream
        return state


class AcquisitionVariationTransform(_PerSampleSeededTransform):
    """Show a healthy patch as another scan would (:func:`nnunet_anomaly.acquisition.vary_acquisition`).

    Runs before :class:`SyntheticAnomalyTransform`, so the network learns these changes as normal. A
    zoom moves the foreground, so the segmentation's foreground (label 1) follows it; padding (-1)
    stays where it was outside the new foreground.

    Parameters
    ----------
    options : nnunet_anomaly.acquisition.AcquisitionOptions
    seed : int
        Base seed of the per-worker, per-call generators.
    """

    def __init__(self, options, *, seed: int):
        super().__init__(seed)
        self.options = options

    def apply(self, data_dict: dict, **params) -> dict:
        from nnunet_anomaly.acquisition import vary_acquisition

        image = data_dict["image"]
        segmentation = data_dict["segmentation"]
        image_np = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        seg_np = segmentation.numpy() if isinstance(segmentation, torch.Tensor) else np.asarray(segmentation)
        foreground = foreground_from_segmentation(seg_np)
        new_image, new_foreground = vary_acquisition(image_np.astype(np.float32, copy=False), foreground,
                                                     params["rng"], self.options)
        new_seg = np.where(new_foreground, 1, np.where(seg_np[0] < 0, seg_np[0], 0)).astype(seg_np.dtype)
        data_dict["image"] = torch.from_numpy(np.ascontiguousarray(new_image))
        data_dict["segmentation"] = torch.from_numpy(np.ascontiguousarray(new_seg[None]))
        return data_dict

    def __repr__(self):
        return f"{type(self).__name__}({self.options}, seed={self.seed})"


class SyntheticAnomalyTransform(_PerSampleSeededTransform):
    """Apply one synthetic anomaly task to the patch and replace the segmentation by its soft label.

    Parameters
    ----------
    tasks : sequence of str
        Task names (:data:`nnunet_anomaly.tasks.TASK_NAMES`); one is chosen uniformly per sample.
    seed : int
        Base seed of the per-worker, per-call generators (see the module docstring).
    intra_pool, inter_pool : SourcePool, optional
        Sources for ``intra_blend`` (the training partition) and ``inter_blend`` (the external pool).
    options : nnunet_anomaly.tasks.TaskOptions, optional
        Recipe settings; ``None`` uses the engine's defaults.
    p_anomaly : float, optional
        Probability that a sample receives an anomaly; the rest keep a zero label. The reference
        corrupts every sample (1.0).

    Notes
    -----
    When the patch holds no foreground, is constant (nothing to blend, deform or label), or not even
    one anomaly can be placed (:class:`nnunet_anomaly.tasks.PlacementError`), the patch is returned
    unchanged with a zero label: a normal example rather than a crashed worker.
    """

    def __init__(self, tasks: Sequence[str], *, seed: int, intra_pool=None, inter_pool=None, options=None,
                 p_anomaly: float = 1.0):
        super().__init__(seed)
        tasks = tuple(tasks)
        if not tasks:
            raise ValueError("tasks must name at least one task")
        if not 0.0 <= p_anomaly <= 1.0:
            raise ValueError(f"p_anomaly must be in [0, 1], got {p_anomaly}")
        self.tasks = tasks
        self.intra_pool = intra_pool
        self.inter_pool = inter_pool
        self.options = options
        self.p_anomaly = float(p_anomaly)

    def apply(self, data_dict: dict, **params) -> dict:
        image = data_dict["image"]
        segmentation = data_dict["segmentation"]
        image_np = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        image_np = image_np.astype(np.float32, copy=False)
        new_image, label = self.corrupt(image_np, foreground_from_segmentation(segmentation), params["rng"])
        data_dict["image"] = torch.from_numpy(np.ascontiguousarray(new_image))
        data_dict["segmentation"] = torch.from_numpy(np.ascontiguousarray(label[None]))
        return data_dict

    def corrupt(self, image: np.ndarray, foreground: np.ndarray, rng: np.random.Generator):
        """Return ``(anomalous image, float32 soft label)`` for one channel-first image."""
        from nnunet_anomaly.tasks import PlacementError, apply_tasks

        zero_label = np.zeros(image.shape[1:], dtype=np.float32)
        if rng.random() >= self.p_anomaly or not foreground.any() or np.ptp(image) == 0:
            return image, zero_label
        try:
            result = apply_tasks(image, self.tasks, rng, foreground=foreground, intra_pool=self.intra_pool,
                                 inter_pool=self.inter_pool, options=self.options)
        except PlacementError:
            return image, zero_label
        label = np.clip(np.asarray(result.label, dtype=np.float32), 0.0, 1.0)
        return np.asarray(result.image, dtype=np.float32), label

    def __repr__(self):
        # short: nnU-Net writes the transforms' repr into debug.json, and pools may hold arrays
        pools = ", ".join(f"{name}={type(pool).__name__}({len(pool)})" for name, pool in
                          (("intra_pool", self.intra_pool), ("inter_pool", self.inter_pool)) if pool is not None)
        return (f"{type(self).__name__}(tasks={list(self.tasks)}, seed={self.seed}, p_anomaly={self.p_anomaly}"
                + (f", {pools}" if pools else "") + ")")


class SoftDownsampleForDSTransform(SegOnlyTransform):
    """Deep-supervision targets by area averaging (not nearest neighbour) of a float segmentation.

    nnU-Net's ``DownsampleSegForDSTransform`` picks the nearest voxel, which aliases a soft label. Here each
    coarse voxel is the mean of the fine voxels it covers (``interpolate(mode="area")``, i.e. adaptive
    average pooling), which is exact when the scale divides the patch, as nnU-Net's pooling guarantees.

    Examples
    --------
    >>> seg = torch.tensor([[[0., 1., 0., 0.], [1., 1., 0., 0.], [0., 0., 0., 1.], [0., 0., 0., 1.]]])
    >>> out = SoftDownsampleForDSTransform([[1, 1], [0.5, 0.5]])(segmentation=seg)["segmentation"]
    >>> out[1].tolist()
    [[[0.75, 0.0], [0.0, 0.5]]]
    """

    def __init__(self, ds_scales):
        super().__init__()
        self.ds_scales = ds_scales

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> list:
        results = []
        seg_float = segmentation.float()
        for scale in self.ds_scales:
            if not isinstance(scale, (tuple, list)):
                scale = [scale] * (segmentation.ndim - 1)
            if len(scale) != segmentation.ndim - 1:
                raise ValueError(f"deep-supervision scale {scale} does not match segmentation shape "
                                 f"{tuple(segmentation.shape)}")
            if all(s == 1 for s in scale):
                results.append(seg_float)
                continue
            new_shape = [max(1, round(n * s)) for n, s in zip(segmentation.shape[1:], scale)]
            results.append(interpolate(seg_float[None], size=new_shape, mode="area")[0])
        return results
