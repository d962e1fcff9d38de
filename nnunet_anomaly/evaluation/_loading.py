"""Finding and reading anomaly maps, ground-truth masks and images, with clear errors.

Case names follow nnU-Net: a prediction ``case.npz`` (or ``case.nii.gz``, ``case.png``, ...) scores
the ground truth ``case.nii.gz`` (any supported format), and the image is ``case_0000.<ext>`` (or
``case.<ext>``). Arrays are in SimpleITK's order, ``(Z, Y, X)`` for volumes, which is also the order
of nnU-Net's probability files.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "find_cases",
    "load_ground_truth",
    "load_image",
    "load_prediction",
    "match_cases",
]

#: formats in order of preference when one folder holds several files of a case (nnU-Net writes a
#: segmentation ``case.nii.gz`` beside the probabilities ``case.npz``: the probabilities win)
PREDICTION_SUFFIXES = (".npz", ".npy", ".nii.gz", ".nii", ".mha", ".nrrd", ".png")
MASK_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd", ".png", ".npy", ".npz")
_SITK_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")


def _split_suffix(path: Path, suffixes: Sequence[str]):
    name = path.name
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], suffix
    return None, None


def find_cases(folder, *, kind: str = "prediction", suffixes: Sequence[str] | None = None) -> dict[str, Path]:
    """Map case name -> file for every supported file in `folder` (one file per case, best format first).

    Parameters
    ----------
    folder : path
        The folder to list (not recursive).
    kind : {'prediction', 'ground truth', 'image', 'mask'}
        What the folder holds; chooses the default suffixes and appears in error messages.

    Raises
    ------
    FileNotFoundError
        If `folder` does not exist or holds no supported file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{kind} folder {str(folder)!r} does not exist or is not a folder")
    if suffixes is None:
        suffixes = PREDICTION_SUFFIXES if kind == "prediction" else MASK_SUFFIXES
    found: dict[str, tuple[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        case, suffix = _split_suffix(path, suffixes)
        if case is None:
            continue
        rank = suffixes.index(suffix)
        if case not in found or rank < found[case][0]:
            found[case] = (rank, path)
    if not found:
        raise FileNotFoundError(
            f"{kind} folder {str(folder)!r} holds no file ending in {', '.join(suffixes)}"
        )
    return {case: path for case, (_, path) in sorted(found.items())}


def _list_names(names: Iterable[str], limit: int = 10) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def match_cases(predictions: dict[str, Path], ground_truth: dict[str, Path], *, label: str = "predictions") -> list[str]:
    """The sorted case names, after checking that predictions and ground truth name the same cases.

    Raises
    ------
    ValueError
        Listing the cases that lack a ground truth or a prediction, e.g.
        ``3 predictions have no ground truth: a, b, c``.

    Examples
    --------
    >>> match_cases({"a": 1, "b": 2}, {"b": 0, "a": 0})
    ['a', 'b']
    >>> match_cases({"a": 1, "x": 2, "y": 3}, {"a": 0})
    Traceback (most recent call last):
    ...
    ValueError: 2 predictions have no ground truth: x, y
    """
    no_truth = set(predictions) - set(ground_truth)
    no_prediction = set(ground_truth) - set(predictions)
    problems = []
    if no_truth:
        problems.append(f"{len(no_truth)} {label} have no ground truth: {_list_names(no_truth)}")
    if no_prediction:
        problems.append(f"{len(no_prediction)} ground-truth masks have no prediction in {label}: {_list_names(no_prediction)}")
    if problems:
        raise ValueError("; ".join(problems))
    return sorted(predictions)


def _read_array(path: Path) -> np.ndarray:
    """Read a whole file as an array (``nnunet_anomaly._io.read_array``): a truncated or unreadable file
    is a one-line ValueError that names it."""
    from nnunet_anomaly._io import read_array

    return read_array(path, npz_key="probabilities")


def load_prediction(path, *, reference_shape: Sequence[int] | None = None, reference=None) -> np.ndarray:
    """Read an anomaly map (not yet clipped) in its own float dtype (float16, float32 or float64).

    The scores keep their precision (nnU-Net writes float32); integer maps become a float dtype
    that holds them exactly (PNG maps are scaled to [0, 1] in float32).

    nnU-Net ``.npz`` probabilities ``(C, *spatial)`` give channel 0 when C == 1 and the last channel
    (class 1 of a two-class softmax) otherwise. PNG maps are scaled from their integer range to
    [0, 1]. Leading singleton axes (nnU-Net's 2D ``(1, H, W)``) are dropped to match `reference_shape`,
    the shape of the ground-truth file `reference` (named in the error when the shapes differ).

    Raises
    ------
    ValueError
        Unreadable file, NaN/inf scores, or a shape that does not match `reference_shape`.
    """
    path = Path(path)
    array = _read_array(path)
    if path.name.endswith(".npz") and array.ndim >= 2 and (reference_shape is None or array.ndim > len(reference_shape)):
        # nnU-Net's probabilities are channel-first: (C, *spatial), 2D natural images (C, 1, H, W)
        array = array[0] if array.shape[0] == 1 else array[-1]
    if path.name.endswith(".png"):
        if array.ndim == 3:  # RGB(A) map: use the first channel
            array = array[..., 0]
        if np.issubdtype(array.dtype, np.integer):
            array = array.astype(np.float32) / np.iinfo(array.dtype).max
    if np.issubdtype(array.dtype, np.integer) and path.name.endswith(_SITK_SUFFIXES):
        values = np.unique(array)
        if values.size <= 2 and set(values.tolist()) <= {0, 1}:
            warnings.warn(f"{path} holds only 0/1 integers: a segmentation, not an anomaly map? "
                          "(nnU-Net writes scores with --save_probabilities as .npz)", stacklevel=2)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{path}: anomaly map must be numeric; got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{path}: anomaly map must be real; got dtype {array.dtype}")
    from ._exact import as_exact_floats

    array = as_exact_floats(array)  # float16/32/64 keep their dtype; integers go to a float that holds them
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: anomaly map has {int((~np.isfinite(array)).sum())} NaN/inf values")
    return _match_shape(array, reference_shape, path, reference)


def _match_shape(array: np.ndarray, reference_shape, path: Path, reference=None) -> np.ndarray:
    if reference_shape is None or array.shape == tuple(reference_shape):
        return array
    squeezed = array.reshape([n for n in array.shape if n != 1])
    if squeezed.shape == tuple(n for n in reference_shape if n != 1):
        return squeezed.reshape(tuple(reference_shape))
    truth = "the ground truth's" if reference is None else f"the ground truth {reference}'s"
    raise ValueError(f"{path}: shape {array.shape} does not match {truth} shape {tuple(reference_shape)}")


def load_ground_truth(path) -> np.ndarray:
    """Read a ground-truth mask as bool (non-zero = anomalous; RGB PNGs: any channel)."""
    path = Path(path)
    array = _read_array(path)
    if path.name.endswith(".png") and array.ndim == 3:
        array = array[..., :3].any(axis=-1) if array.shape[-1] >= 3 else array[..., 0]
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{path}: ground-truth mask must be numeric; got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValueError(f"{path}: ground-truth mask has NaN/inf values")
    return array != 0


def load_image(folder, case: str, reference_shape: Sequence[int], *, reference=None) -> np.ndarray:
    """Read the first channel of `case`'s image from `folder` (``case_0000.*`` or ``case.*``) as float32.

    Its shape must match `reference_shape`, the shape of the ground-truth file `reference` (named in
    the error when they differ).

    Raises
    ------
    FileNotFoundError
        If no image of that case is in `folder`.
    """
    folder = Path(folder)
    for stem in (f"{case}_0000", case):
        for suffix in MASK_SUFFIXES:
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                array = _read_array(path)
                if path.name.endswith(".npz") and array.ndim == len(reference_shape) + 1:
                    array = array[0]
                if path.name.endswith(".png") and array.ndim == 3:
                    array = array[..., :3].mean(axis=-1)
                array = array.astype(np.float32, copy=False)
                if not np.isfinite(array).all():
                    raise ValueError(f"{path}: image has NaN/inf values")
                return _match_shape(array, reference_shape, path, reference)
    raise FileNotFoundError(f"no image for case {case!r} in {str(folder)!r} (looked for {case}_0000.* and {case}.*)")
