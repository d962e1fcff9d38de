"""Source pools for the blending tasks inside nnU-Net: the preprocessed training partition, the external pool.

Memory and I/O
--------------
:class:`PreprocessedCasePool` holds only case identifiers and a folder. Each :meth:`~PreprocessedCasePool.sample`
opens one case with nnU-Net's own dataset class (blosc2 or npz, whichever the preprocessing wrote) and
decompresses it whole, so every data-augmentation worker holds at most one extra case at a time, and
each ``intra_blend`` sample costs one extra case read (the same order of cost as the read of the
target case that nnU-Net's loader already does). Nothing is cached across samples.

External pool (one rule)
------------------------
The pool for ``inter_blend`` is, in this order:

1. the folder named by the environment variable ``nnunet_anomaly_pool`` (a FolderPool layout:
   ``images/`` and optional ``masks/``), if set;
2. ``$nnUNet_preprocessed/DatasetXXX_Name/anomaly_pool/`` if that folder exists;
3. otherwise, for 2D configurations, scikit-image's bundled natural images
   (:func:`nnunet_anomaly.offline_data.natural_images`, a dozen photographs where the reference draws
   from 10,000 ImageNet images), announced with a loud warning (:func:`builtin_pool_warning`, in the
   training log and on stderr); for 3D there is no honest built-in stand-in, so ``inter_blend`` is
   dropped from the tasks with a loud warning.

Which rule applied, and how many images the pool holds, is recorded in the fold's
``validation/summary.json`` (``inter_blend_pool``, :meth:`ExternalPoolChoice.record`).

The validation partition is never used as a training source, and no partition is used as the
"external" pool.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["PreprocessedCasePool", "ExternalPoolChoice", "resolve_external_pool", "POOL_ENV_VAR", "POOL_FOLDER_NAME",
           "case_view", "pool_instructions", "dropped_inter_blend_warning", "builtin_pool_warning"]

POOL_ENV_VAR = "nnunet_anomaly_pool"
POOL_FOLDER_NAME = "anomaly_pool"


def case_view(data: np.ndarray, segmentation: np.ndarray, spatial_dims: int, rng: np.random.Generator | None = None):
    """Bring a preprocessed case ``(C, *spatial3)`` to the configuration's dimensionality.

    For a 3D configuration the case is returned as is. For a 2D configuration the case is
    ``(C, Z, H, W)``; a slice along Z is chosen (at random among slices holding foreground when `rng`
    is given, else the slice with the most foreground) and ``(C, H, W)`` is returned.

    Returns
    -------
    image : float32 ndarray, (C, *spatial)
    foreground : bool ndarray, spatial (``segmentation > 0``)

    Examples
    --------
    >>> data = np.zeros((1, 3, 4, 4), np.float32); seg = np.zeros((1, 3, 4, 4), np.int8); seg[0, 2, 1, 1] = 1
    >>> image, fg = case_view(data, seg, 2)
    >>> image.shape, int(fg.sum())
    ((1, 4, 4), 1)
    """
    data = np.asarray(data[:], dtype=np.float32)
    foreground = np.asarray(segmentation[:])[0] > 0
    if spatial_dims == data.ndim - 1:
        return data, foreground
    if spatial_dims != 2 or data.ndim != 4:
        raise ValueError(f"cannot view a case of shape {data.shape} as {spatial_dims}D")
    per_slice = foreground.reshape(foreground.shape[0], -1).sum(1)
    if rng is None:
        z = int(np.argmax(per_slice))
    else:
        candidates = np.flatnonzero(per_slice) if per_slice.any() else np.arange(len(per_slice))
        z = int(candidates[rng.integers(len(candidates))])
    return data[:, z], foreground[z]


class PreprocessedCasePool:
    """A SourcePool over nnU-Net preprocessed cases, loaded lazily one case per sample.

    Parameters
    ----------
    folder : path
        ``nnUNet_preprocessed/DatasetXXX/<data_identifier>``.
    identifiers : sequence of str
        The cases this pool may draw from (the training partition for training).
    spatial_dims : int
        2 or 3: dimensionality of the configuration; 2D configurations draw a slice.
    dataset_class : type, optional
        nnU-Net dataset class; inferred from the folder when omitted.

    ``sample(rng)`` returns ``(image (C, *spatial) float32, foreground mask (bool, spatial))``.
    """

    def __init__(self, folder, identifiers: Sequence[str], *, spatial_dims: int, dataset_class=None):
        self.folder = str(folder)
        self.identifiers = sorted(str(i) for i in identifiers)
        if not self.identifiers:
            raise ValueError(f"PreprocessedCasePool over {self.folder} needs at least one case identifier")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.dataset_class = dataset_class
        self._dataset = None

    def __len__(self) -> int:
        return len(self.identifiers)

    def _open(self):
        if self._dataset is None:
            if self.dataset_class is None:
                from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
                self.dataset_class = infer_dataset_class(self.folder)
            self._dataset = self.dataset_class(self.folder, self.identifiers)
        return self._dataset

    def load(self, identifier: str):
        """``(data, segmentation)`` of one case, decompressed."""
        data, seg, _, _ = self._open().load_case(identifier)
        return np.asarray(data[:]), np.asarray(seg[:])

    def sample(self, rng: np.random.Generator):
        identifier = self.identifiers[int(rng.integers(len(self.identifiers)))]
        data, seg = self.load(identifier)
        image, foreground = case_view(data, seg, self.spatial_dims, rng)
        return image, (foreground if foreground.any() else None)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_dataset"] = None  # open file handles stay in their process
        return state

    def __repr__(self):
        return f"PreprocessedCasePool({len(self)} cases in {Path(self.folder).name}, {self.spatial_dims}D)"


class ExternalPoolChoice:
    """The resolved external pool: ``pool`` (or None) and a one-line ``description`` for the log.

    ``source`` names the rule that applied: ``"environment"`` (``$nnunet_anomaly_pool``),
    ``"dataset_folder"`` (``DatasetXXX/anomaly_pool/``), ``"builtin_natural_images"`` (the 2D
    fallback) or ``"none"`` (3D without a pool: ``inter_blend`` dropped).
    """

    def __init__(self, pool, description: str, source: str = "none", location=None):
        self.pool = pool
        self.description = description
        self.source = source
        self.location = None if location is None else str(location)

    @property
    def fallback(self) -> bool:
        """True when ``inter_blend`` draws from the built-in stand-in instead of a configured pool."""
        return self.source == "builtin_natural_images"

    def record(self) -> dict:
        """What ``validation/summary.json`` keeps of the choice (JSON-ready).

        Examples
        --------
        >>> ExternalPoolChoice(None, "no pool").record()
        {'source': 'none', 'images': 0, 'location': None, 'fallback': False, 'description': 'no pool'}
        """
        return {"source": self.source, "images": 0 if self.pool is None else len(self.pool),
                "location": self.location, "fallback": self.fallback, "description": self.description}

    def __repr__(self):
        return f"ExternalPoolChoice({self.description!r})"


class _ChannelTiledPool:
    """Repeat a one-channel pool's images to `num_channels` channels (natural images for multi-channel data)."""

    def __init__(self, pool, num_channels: int):
        self.pool = pool
        self.num_channels = num_channels

    def __len__(self):
        return len(self.pool)

    def sample(self, rng):
        image, mask = self.pool.sample(rng)
        if image.shape[0] == 1 and self.num_channels > 1:
            image = np.repeat(image, self.num_channels, axis=0)
        return image, mask


def resolve_external_pool(preprocessed_dataset_folder, spatial_dims: int, *, num_channels: int = 1,
                          environ=None) -> ExternalPoolChoice:
    """Apply the external-pool rule of this module's docstring.

    Parameters
    ----------
    preprocessed_dataset_folder : path or None
        ``$nnUNet_preprocessed/DatasetXXX_Name``.
    spatial_dims : int
        2 or 3.
    num_channels : int, optional
        Input channels of the dataset; one-channel built-in images are repeated to match.
    environ : mapping, optional
        Environment to read (default ``os.environ``).

    Returns
    -------
    ExternalPoolChoice
        ``pool`` is None when ``inter_blend`` must be dropped.
    """
    environ = os.environ if environ is None else environ
    configured = environ.get(POOL_ENV_VAR)
    if configured:
        folder = Path(configured)
        if not (folder / "images").is_dir():
            raise FileNotFoundError(f"{POOL_ENV_VAR}={configured}: expected a folder with an 'images/' subfolder "
                                    "(FolderPool layout)")
        from nnunet_anomaly.pools import FolderPool
        return ExternalPoolChoice(FolderPool(folder), f"external pool from ${POOL_ENV_VAR}: {folder}",
                                  "environment", folder)
    if preprocessed_dataset_folder is not None:
        folder = Path(preprocessed_dataset_folder) / POOL_FOLDER_NAME
        if folder.is_dir():
            if not (folder / "images").is_dir():
                raise FileNotFoundError(f"{folder}: expected an 'images/' subfolder (FolderPool layout)")
            from nnunet_anomaly.pools import FolderPool
            return ExternalPoolChoice(FolderPool(folder), f"external pool from {folder}", "dataset_folder", folder)
    if spatial_dims == 2:
        from nnunet_anomaly.offline_data import natural_images
        from nnunet_anomaly.pools import ArrayPool
        images = [image[None].astype(np.float32) for image in natural_images()]
        pool = _ChannelTiledPool(ArrayPool(images), num_channels)
        return ExternalPoolChoice(pool, f"no external pool configured (${POOL_ENV_VAR} or "
                                        f"<nnUNet_preprocessed>/DatasetXXX/{POOL_FOLDER_NAME}/): inter_blend draws "
                                        f"from the {len(images)} built-in natural images of scikit-image",
                                  "builtin_natural_images")
    return ExternalPoolChoice(None, f"no external pool configured (${POOL_ENV_VAR} or "
                                    f"<nnUNet_preprocessed>/DatasetXXX/{POOL_FOLDER_NAME}/) and no built-in 3D "
                                    "pool exists: inter_blend is DROPPED from this run's tasks")


def pool_instructions(preprocessed_dataset_folder, spatial_dims: int = 3) -> str:
    """How to give the trainers an external pool (one sentence; the reference's pool for `spatial_dims`)."""
    where = os.path.join(os.fspath(preprocessed_dataset_folder), POOL_FOLDER_NAME) if preprocessed_dataset_folder \
        else f"$nnUNet_preprocessed/DatasetXXX_Name/{POOL_FOLDER_NAME}"
    converter = ("DatasetPool_ImageNet -i IMAGENET/train -o FOLDER --num-images 10000" if spatial_dims == 2
                 else "DatasetPool_MOODAbdomen")
    return (f"export {POOL_ENV_VAR}=FOLDER (a folder with images/ and optional masks/, e.g. written by "
            f"python -m nnunet_anomaly.dataset_conversion.{converter}) or put the pool at {where}/; see "
            "documentation/training.md, 'Source pools'")


def builtin_pool_warning(trainer: str, fold, num_images: int, preprocessed_dataset_folder=None) -> str:
    """The banner a 2D run prints when ``inter_blend`` falls back to the built-in natural images.

    Examples
    --------
    >>> text = builtin_pool_warning("AnomalyTaskTrainer", 1, 12)
    >>> print(text.splitlines()[1])
    WARNING: AnomalyTaskTrainer fold 1: inter_blend draws from 12 built-in natural images (no external pool configured)
    >>> "DatasetPool_ImageNet" in text
    True
    """
    line = "!" * 100
    return "\n".join([
        line,
        f"WARNING: {trainer} fold {fold}: inter_blend draws from {num_images} built-in natural images (no external "
        "pool configured)",
        "  The reference draws its patches from 10,000 ImageNet images; a dozen photographs give the network few",
        "  textures to learn from, so this fold is not the paper's inter-dataset blending task.",
        f"  To give the real pool: {pool_instructions(preprocessed_dataset_folder, spatial_dims=2)}.",
        line,
    ])


def dropped_inter_blend_warning(trainer: str, fold, planned_train: Sequence[str], planned_val: Sequence[str],
                                preprocessed_dataset_folder=None) -> str:
    """The banner a run prints when ``inter_blend`` is dropped (3D, no external pool): what the fold now means.

    Examples
    --------
    >>> text = dropped_inter_blend_warning("AnomalyTaskTrainer_T2", 3, ["inter_blend", "sink"], ["intra_blend"])
    >>> print(text.splitlines()[1])
    WARNING: inter_blend is DROPPED from AnomalyTaskTrainer_T2 fold 3 (3D, and no external pool is configured)
    >>> "trains on ['sink'] instead of ['inter_blend', 'sink']" in text
    True
    """
    train = [t for t in planned_train if t != "inter_blend"]
    val = [t for t in planned_val if t != "inter_blend"]
    changes = []
    if len(train) != len(planned_train):
        changes.append(f"trains on {train} instead of {list(planned_train)}")
    if len(val) != len(planned_val):
        changes.append(f"validates {val} instead of {list(planned_val)}")
    line = "!" * 100
    return "\n".join([
        line,
        f"WARNING: inter_blend is DROPPED from {trainer} fold {fold} (3D, and no external pool is configured)",
        f"  This fold now {' and '.join(changes)}: it is not the fold the paper's cross-validation defines, and",
        "  an ensemble or a cross-validation summary of such folds is not either.",
        f"  To keep inter_blend: {pool_instructions(preprocessed_dataset_folder)}; then train the fold again.",
        line,
    ])
