"""Source pools for the Poisson blending tasks.

A pool is anything with ``len(pool)`` and ``pool.sample(rng) -> (image, mask)``, where ``image`` is a
channel-first float32 array ``(C, *spatial)`` and ``mask`` a boolean spatial array or None
(:class:`SourcePool`). Two are provided:

- :class:`ArrayPool`: images already in memory (the trainer's own partition for ``intra_blend``);
- :class:`FolderPool`: an external pool on disk for ``inter_blend``, loaded lazily::

      folder/images/<name>.nii.gz | .nii | .png | .npy
      folder/masks/<name>.<same suffix>     (optional, per image; same file name)

  Files are normalised as the reference does: PNG (natural) images are made grey, histogram-equalised
  (256 bins) and scaled to [-1, 1]; volumes (NIfTI and ``.npy``) are z-scored inside their mask, or
  over all voxels when they have none. A ``folder/pool.json`` with ``{"normalise": "none"}`` (what
  ``DatasetPool_ImageNet`` writes: its images are already the reference's) keeps the stored values.
  Each file holds one single-channel image (2-D or 3-D); the pool returns it with a leading channel
  axis.

The pools never modify the arrays or files they are given.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Optional, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = ["SourcePool", "ArrayPool", "FolderPool", "POOL_SUFFIXES"]

POOL_SUFFIXES = (".nii.gz", ".nii", ".png", ".npy")


@runtime_checkable
class SourcePool(Protocol):
    """What the blending tasks need from a pool of source images."""

    def __len__(self) -> int: ...

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, Optional[np.ndarray]]: ...


class ArrayPool:
    """A pool of in-memory images, each ``(C, *spatial)``, with optional boolean masks.

    Parameters
    ----------
    images : sequence of ndarray
        Channel-first images (any float or integer dtype; float32 arrays are used without a copy).
        All must have the same number of dimensions and channels; spatial sizes may differ.
    masks : sequence of (ndarray or None), optional
        One boolean mask per image (its spatial shape), or None for an image without one.

    Examples
    --------
    >>> pool = ArrayPool([np.zeros((1, 4, 4)), np.ones((1, 6, 5))], masks=[None, np.ones((6, 5), bool)])
    >>> len(pool)
    2
    >>> image, mask = pool.sample(np.random.default_rng(0))
    >>> image.dtype, image.ndim
    (dtype('float32'), 3)
    """

    def __init__(self, images: Sequence[np.ndarray], masks: Optional[Sequence[Optional[np.ndarray]]] = None):
        images = list(images)
        if not images:
            raise ValueError("ArrayPool needs at least one image; got an empty sequence")
        if masks is not None:
            masks = list(masks)
            if len(masks) != len(images):
                raise ValueError(f"ArrayPool got {len(images)} images but {len(masks)} masks")
        self._images, self._masks = [], []
        for index, image in enumerate(images):
            image = np.asarray(image)
            if image.ndim < 2:
                raise ValueError(f"pool image {index} must be channel-first (C, *spatial); got shape {image.shape}")
            if image.ndim != np.ndim(images[0]) or image.shape[0] != np.shape(images[0])[0]:
                raise ValueError(
                    f"pool image {index} has shape {image.shape}, but image 0 has shape {np.shape(images[0])}; "
                    "all pool images need the same number of dimensions and channels"
                )
            if not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)):
                raise ValueError(f"pool image {index} must be numeric; got dtype {image.dtype}")
            if not np.isfinite(image).all():
                raise ValueError(f"pool image {index} has NaN/inf values")
            mask = None if masks is None else masks[index]
            if mask is not None:
                mask = np.asarray(mask)
                if mask.shape != image.shape[1:]:
                    raise ValueError(f"pool mask {index} has shape {mask.shape}; its image's spatial shape is {image.shape[1:]}")
                mask = mask.astype(bool, copy=False)
            self._images.append(image.astype(np.float32, copy=False))
            self._masks.append(mask)

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        return self._images[index], self._masks[index]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """A uniformly chosen ``(image, mask)``; the arrays are the pool's own (treat them as read-only)."""
        return self[int(rng.integers(len(self)))]

    def __repr__(self) -> str:
        return f"ArrayPool({len(self)} images)"


class FolderPool:
    """A lazily loaded pool of files in ``folder/images/`` with optional masks in ``folder/masks/``.

    Parameters
    ----------
    folder : str or Path
        The pool folder (it must contain ``images/``).
    cache_size : int, optional
        How many loaded images to keep in memory (least recently used are dropped).
    normalise : bool, optional
        Normalise as described in the module docstring (default). False returns the stored values.

    Raises
    ------
    FileNotFoundError
        If ``folder/images`` does not exist or holds no supported file.
    ValueError
        When a file is unreadable or malformed (the message names the file), at :meth:`sample` time.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     folder = pathlib.Path(tmp)
    ...     (folder / "images").mkdir()
    ...     np.save(folder / "images" / "a.npy", np.arange(64.0).reshape(8, 8))
    ...     image, mask = FolderPool(folder).sample(np.random.default_rng(0))
    >>> image.shape, mask is None, round(float(image.mean()), 6), round(float(image.std()), 6)
    ((1, 8, 8), True, 0.0, 1.0)
    """

    def __init__(self, folder, *, cache_size: int = 16, normalise: bool = True):
        self.folder = Path(folder)
        image_dir = self.folder / "images"
        if not image_dir.is_dir():
            raise FileNotFoundError(f"{self.folder}: a FolderPool needs an 'images/' subfolder ({image_dir} is missing)")
        self.files = sorted(p for p in image_dir.iterdir() if p.is_file() and _suffix(p) in POOL_SUFFIXES)
        if not self.files:
            raise FileNotFoundError(f"{image_dir} holds no {', '.join(POOL_SUFFIXES)} file; the pool is empty")
        self.mask_dir = self.folder / "masks"
        self.cache_size = int(cache_size)
        self.normalise = bool(normalise) and _pool_normalisation(self.folder) != "none"
        self._cache: OrderedDict[int, tuple[np.ndarray, Optional[np.ndarray]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        item = self._load(self.files[index])
        if self.cache_size > 0:
            self._cache[index] = item
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return item

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """A uniformly chosen, normalised ``(image (1, *spatial) float32, mask or None)``."""
        return self[int(rng.integers(len(self)))]

    def _load(self, path: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
        image = _read_array(path, as_grey=True)
        if image.ndim not in (2, 3):
            raise ValueError(f"{path}: expected a 2-D or 3-D single-channel image; got shape {image.shape}")
        if not np.isfinite(image).all():
            raise ValueError(f"{path}: the image has NaN/inf values")
        mask_path = self.mask_dir / path.name
        mask = None
        if mask_path.is_file():
            mask = _read_array(mask_path, as_grey=False) != 0
            if mask.shape != image.shape:
                raise ValueError(f"{mask_path}: mask shape {mask.shape} differs from its image's shape {image.shape}")
        if self.normalise:
            image = _normalise(image, mask, is_png=_suffix(path) == ".png", path=path)
        return image.astype(np.float32, copy=False)[None], mask

    def __repr__(self) -> str:
        return f"FolderPool({str(self.folder)!r}, {len(self)} images)"


def _pool_normalisation(folder: Path) -> str:
    """The ``normalise`` entry of ``folder/pool.json`` ('default' when there is none)."""
    from nnunet_anomaly._io import read_json

    record = folder / "pool.json"
    if not record.is_file():
        return "default"
    value = read_json(record).get("normalise", "default")
    if value not in ("default", "none"):
        raise ValueError(f"{record}: 'normalise' must be 'default' or 'none'; got {value!r}")
    return value


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _read_array(path: Path, *, as_grey: bool) -> np.ndarray:
    from nnunet_anomaly._io import check_complete

    suffix = _suffix(path)
    check_complete(path)  # a file cut short is an error naming it, not a silently short or zero-filled image
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".png":
            from PIL import Image

            with Image.open(path) as picture:
                if as_grey and picture.mode not in ("L", "I", "I;16", "F"):
                    picture = picture.convert("RGB")
                array = np.asarray(picture)
            if as_grey and array.ndim == 3:
                from skimage.color import rgb2gray

                array = rgb2gray(array[..., :3])
        else:
            import SimpleITK as sitk

            # SimpleITK's (z, y, x) axis order, the order nnU-Net's own reader gives the training images.
            array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except Exception as error:  # any reader failure becomes one clear message naming the file
        raise ValueError(f"{path}: cannot read this file as an image ({type(error).__name__}: {error})") from None
    array = np.asarray(array)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{path}: expected a numeric array; got dtype {array.dtype}")
    return array.astype(np.float64)


def _normalise(image: np.ndarray, mask: Optional[np.ndarray], *, is_png: bool, path: Path) -> np.ndarray:
    if is_png:
        from skimage.exposure import equalize_hist

        if np.ptp(image) == 0:
            raise ValueError(f"{path}: the image is constant; it cannot serve as a blending source")
        return equalize_hist(image, nbins=256) * 2 - 1
    values = image[mask] if mask is not None and mask.any() else image
    std = values.std()
    if std == 0:
        raise ValueError(f"{path}: the image is constant{' inside its mask' if mask is not None else ''}; cannot z-score it")
    return (image - values.mean()) / std
