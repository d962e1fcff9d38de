"""Shared building blocks of the dataset-conversion scripts in ``dataset_conversion/``.

Small pure functions for the preprocessing steps of the reference implementation (Baugh et al.,
MICCAI 2023; ``preprocessing/brain_preproc.py``, ``vindr_cxr_preproc.py``, ``mood_preproc.py``,
``imagenet_preproc.py``) plus the plumbing every script shares: reading inputs with a clear error,
writing nnU-Net cases atomically, and a resumable, parallel case runner with a progress bar and an
end-of-run summary.

Geometry conventions: 3D volumes are numpy arrays in the voxel order of the source file (nibabel's
``(i, j, k)``); every geometric step also updates a 4x4 voxel-to-world ``affine`` so the outputs stay
in the source's world space and the crop/pad bookkeeping (``crop_info``) can undo them exactly.
"""
from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Tuple

import numpy as np
from scipy import ndimage

from nnunet_anomaly._io import atomic_path, remove_stale_temporaries, write_json

__all__ = [
    "RAW_ENV",
    "resolve_output_root",
    "dataset_folder_name",
    "edge_preserving_rescale",
    "zscore_in_mask",
    "nonzero_bbox",
    "pad_to_even",
    "downsample_by_two",
    "BrainCase",
    "preprocess_brain",
    "undo_brain_crop",
    "brain_foreground",
    "read_nifti",
    "write_nifti",
    "write_image_2d",
    "read_dicom",
    "preprocess_radiograph",
    "boxes_to_mask",
    "RADIOGRAPH_SUFFIXES",
    "is_dicom_file",
    "radiograph_to_grey",
    "read_radiograph",
    "preprocess_radiograph_pixels",
    "resize_mask",
    "equalise_to_unit_range",
    "natural_image_to_unit_range",
    "body_mask_from_corner",
    "Case",
    "RunSummary",
    "run_cases",
    "check_conversion_options",
    "write_dataset_json",
    "add_common_arguments",
]

RAW_ENV = "nnUNet_raw"


# ----------------------------------------------------------------------------------------------
# command-line plumbing
# ----------------------------------------------------------------------------------------------
def resolve_output_root(output: str | os.PathLike | None) -> Path:
    """The raw-data root: ``--output`` if given, else ``$nnUNet_raw`` (read now, not at import).

    Raises
    ------
    ValueError
        When neither is given.

    Examples
    --------
    >>> resolve_output_root("/tmp/raw").as_posix()
    '/tmp/raw'
    """
    if output is None or str(output) == "":
        output = os.environ.get(RAW_ENV)
    if not output:
        raise ValueError(
            f"no output folder: pass --output PATH or set the environment variable {RAW_ENV} "
            "to your nnU-Net raw-data folder"
        )
    return Path(output).expanduser()


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name ``DatasetNNN_Name``.

    Examples
    --------
    >>> dataset_folder_name(990, "MNIDemo")
    'Dataset990_MNIDemo'
    """
    if not 0 < int(dataset_id) < 1000:
        raise ValueError(f"dataset id must be in 1..999 (nnU-Net's three digits), got {dataset_id}")
    return f"Dataset{int(dataset_id):03d}_{name}"


def add_common_arguments(parser, *, input_help: str | None = None) -> None:
    """Add ``--output``, ``-np`` and ``--overwrite`` (and ``--input`` if `input_help` is given) to a parser."""
    if input_help is not None:
        parser.add_argument("-i", "--input", required=True, help=input_help)
    parser.add_argument(
        "-o", "--output", default=None,
        help=f"nnU-Net raw-data root (default: the environment variable {RAW_ENV})",
    )
    parser.add_argument("-np", "--num-processes", type=int, default=1, dest="num_processes",
                        help="number of worker processes (default 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="convert every case again, also finished ones, and delete files no case produces "
                             "any more (needed to re-run with other options)")


# ----------------------------------------------------------------------------------------------
# brain MRI preprocessing (reference section 10.1)
# ----------------------------------------------------------------------------------------------
def _rescale_affine(affine: np.ndarray, in_shape: Sequence[int], out_shape: Sequence[int]) -> np.ndarray:
    """Affine of a volume resized from `in_shape` to `out_shape` by skimage (pixel centres aligned)."""
    factor = np.asarray(in_shape, float) / np.asarray(out_shape, float)
    step = np.eye(4)
    step[:3, :3] = np.diag(factor)
    step[:3, 3] = 0.5 * factor - 0.5  # skimage maps output index o to input (o + 0.5) * f - 0.5
    return affine @ step


def edge_preserving_rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """Linear rescale that does not darken the edge of a zero-background (skull-stripped) image.

    The reference's trick: rescale the image and its ``> 0`` mask with the same linear filter, zero
    the voxels whose rescaled mask is below 0.5 and divide the rest by the rescaled mask. Blurred
    edge voxels are thus renormalised (a normalised convolution), so the z-score afterwards is not
    biased by half-background voxels. Both go through ``skimage.transform.resize`` exactly as the
    reference calls it: linear, with skimage's Gaussian anti-aliasing when shrinking and its default
    ``reflect`` boundary.

    Parameters
    ----------
    image : ndarray
        N-D image with background exactly 0.
    scale : float
        Zoom factor (0.7 takes 0.7 mm to 1 mm).

    Returns
    -------
    ndarray (float32)

    Examples
    --------
    >>> img = np.zeros((10, 10)); img[2:8, 2:8] = 5.0
    >>> out = edge_preserving_rescale(img, 0.5)
    >>> out.shape, float(out.max()), float(out[out > 0].min())   # edges keep the value 5
    ((5, 5), 5.0, 5.0)
    """
    from skimage.transform import rescale

    image = np.asarray(image, dtype=np.float32)
    mask = (image > 0).astype(np.float32)
    # the reference's skimage.transform.resize(x, shape * scale, order=1, preserve_range=True): its defaults
    # anti-alias when shrinking and use the 'reflect' boundary
    kwargs = dict(order=1, mode="reflect", anti_aliasing=scale < 1, preserve_range=True)
    small = rescale(image, scale, **kwargs).astype(np.float32)
    small_mask = rescale(mask, scale, **kwargs).astype(np.float32)
    keep = small_mask >= 0.5
    out = np.zeros_like(small)
    out[keep] = small[keep] / small_mask[keep]
    return out


def zscore_in_mask(image: np.ndarray, mask: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Z-score `image` with the mean and std of the voxels in `mask`; 0 outside the mask.

    Examples
    --------
    >>> out = zscore_in_mask(np.array([0.0, 1.0, 3.0]), np.array([False, True, True]))
    >>> out.round(6).tolist()
    [0.0, -1.0, 1.0]
    """
    image = np.asarray(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    if not mask.any():
        raise ValueError("cannot z-score: the mask is empty")
    values = image[mask].astype(np.float64)
    out = np.zeros(image.shape, dtype=np.float32)
    out[mask] = (values - values.mean()) / (values.std() + eps)
    return out


def nonzero_bbox(mask: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Per-axis ``(start, stop)`` of the bounding box of the True/nonzero voxels.

    Examples
    --------
    >>> m = np.zeros((4, 5), bool); m[1:3, 2] = True
    >>> nonzero_bbox(m)
    ((1, 3), (2, 3))
    """
    mask = np.asarray(mask) != 0
    if not mask.any():
        raise ValueError("cannot crop: the image is empty (all zero)")
    bounds = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        bounds.append((int(hits[0]), int(hits[-1]) + 1))
    return tuple(bounds)


def pad_to_even(image: np.ndarray, cval: float = 0) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """Pad every odd-sized axis by one voxel at its end (the reference's rule).

    Examples
    --------
    >>> out, pads = pad_to_even(np.ones((3, 4)))
    >>> out.shape, pads
    ((4, 4), ((0, 1), (0, 0)))
    """
    pads = tuple((0, int(s % 2)) for s in np.shape(image))
    return np.pad(image, pads, mode="constant", constant_values=cval), pads


def downsample_by_two(image: np.ndarray, *, is_label: bool = False) -> np.ndarray:
    """Halve every axis of an even-sized array: linear with anti-aliasing, or nearest for labels.

    This is the reference's ``skimage.transform.resize(x, shape / 2, order=1, preserve_range=True)``:
    linear with skimage's default Gaussian anti-aliasing and its default ``reflect`` boundary for
    images, order 0 without anti-aliasing for segmentations.

    Examples
    --------
    >>> downsample_by_two(np.ones((4, 6))).shape
    (2, 3)
    >>> downsample_by_two(np.eye(4, dtype=np.uint8), is_label=True).dtype
    dtype('uint8')
    """
    from skimage.transform import rescale

    if any(s % 2 for s in np.shape(image)):
        raise ValueError(f"downsample_by_two needs even sizes, got {np.shape(image)}; call pad_to_even first")
    if is_label:
        out = rescale(image, 0.5, order=0, anti_aliasing=False, preserve_range=True, mode="reflect")
        return out.astype(np.asarray(image).dtype)
    return rescale(np.asarray(image, np.float32), 0.5, order=1, anti_aliasing=True,
                   preserve_range=True, mode="reflect").astype(np.float32)


def brain_foreground(channels: np.ndarray) -> np.ndarray:
    """The reference's brain mask: any channel nonzero, holes filled (``(C, *spatial)`` input).

    Examples
    --------
    >>> img = np.zeros((1, 5, 5)); img[0, 1:4, 1:4] = 1; img[0, 2, 2] = 0
    >>> int(brain_foreground(img).sum())
    9
    """
    return ndimage.binary_fill_holes(np.any(np.asarray(channels) != 0, axis=0))


@dataclass
class BrainCase:
    """A preprocessed brain: low-res channels, brain mask, optional lesion mask, bookkeeping."""

    channels: np.ndarray          # (C, X, Y, Z) float32, z-scored in the brain, 0 outside
    brain_mask: np.ndarray        # (X, Y, Z) uint8
    lesion: np.ndarray | None     # (X, Y, Z) uint8 (all lesion classes = 1) or None
    affine: np.ndarray            # 4x4 voxel-to-world of the low-res grid
    crop_info: dict = field(default_factory=dict)


def preprocess_brain(
    channels: Sequence[np.ndarray],
    affine: np.ndarray | None = None,
    *,
    segmentation: np.ndarray | None = None,
    resample_scale: float | None = None,
    flip_axis: int | None = None,
    max_crop_shape: Sequence[int] | None = (160, 224, 160),
    channel_names: Sequence[str] | None = None,
    box_channels: Sequence[np.ndarray] = (),
) -> BrainCase:
    """The reference's brain pipeline (``brain_preproc.py``) for one subject.

    1. optional edge-preserving rescale (HCP: 0.7 mm -> 1 mm, ``resample_scale=0.7``); the
       segmentation is resized nearest-neighbour;
    2. z-score each channel over its ``> 0`` voxels (background stays 0);
    3. crop to the union bounding box of the ``> 0`` voxels of the channels and of `box_channels`
       (the reference always crops to the union of the T1 and T2 boxes, also when only T2 is used);
    4. optional flip (BraTS: axis 1, to HCP's orientation);
    5. pad to even sizes (at the end of each axis) and downsample by 2.

    Parameters
    ----------
    channels : sequence of ndarray
        Skull-stripped volumes of one subject, same shape, background 0.
    affine : (4, 4) ndarray, optional
        Voxel-to-world affine of the inputs (identity if omitted); updated through every step.
    segmentation : ndarray, optional
        Lesion labels; every nonzero class becomes 1.
    resample_scale, flip_axis : optional
        See above.
    max_crop_shape : sequence of int, optional
        The reference asserts that the brain box fits 160x224x160 (so the output fits 80x112x80).
    channel_names : sequence of str, optional
        Only used in error messages.
    box_channels : sequence of ndarray, optional
        Volumes of the same subject (and shape) that only widen the crop box, e.g. T1 when only T2 is
        converted; they are rescaled like the channels and not returned.

    Returns
    -------
    BrainCase
        ``crop_info`` records every shape, the crop box, the flip and the padding, which is what
        the CRADL comparison needs to map a low-res prediction back to the input grid.

    Examples
    --------
    >>> vol = np.zeros((12, 14, 10), np.float32); vol[2:9, 3:12, 1:8] = np.arange(1, 442).reshape(7, 9, 7)
    >>> case = preprocess_brain([vol])
    >>> case.channels.shape, case.crop_info["bbox"]
    ((1, 4, 5, 4), [[2, 9], [3, 12], [1, 8]])
    """
    names = list(channel_names) if channel_names is not None else [f"channel {i}" for i in range(len(channels))]
    vols = [np.asarray(c, dtype=np.float32) for c in channels]
    if not vols:
        raise ValueError("preprocess_brain needs at least one channel")
    if any(v.ndim != 3 for v in vols):
        raise ValueError(f"expected 3D volumes, got shapes {[v.shape for v in vols]} for {names}")
    if any(v.shape != vols[0].shape for v in vols):
        raise ValueError(f"channel shapes differ: {dict(zip(names, [v.shape for v in vols]))}")
    for name, v in zip(names, vols):
        if not np.isfinite(v).all():
            raise ValueError(f"{name} has NaN/inf values")
        if not (v > 0).any():
            raise ValueError(f"{name} has no positive voxels (is it a skull-stripped brain?)")
        if np.ptp(v[v > 0]) == 0:
            raise ValueError(f"{name} is constant inside the brain; it cannot be z-scored")
    boxes = [np.asarray(b, dtype=np.float32) for b in box_channels]
    if any(b.shape != vols[0].shape for b in boxes):
        raise ValueError(f"box channel shapes {[b.shape for b in boxes]} differ from the image shape {vols[0].shape}")
    seg = None if segmentation is None else np.asarray(segmentation)
    if seg is not None and seg.shape != vols[0].shape:
        raise ValueError(f"segmentation shape {seg.shape} differs from image shape {vols[0].shape}")
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    info: dict[str, Any] = {"input_shape": list(vols[0].shape)}

    if resample_scale is not None:
        in_shape = vols[0].shape
        vols = [edge_preserving_rescale(v, resample_scale) for v in vols]
        boxes = [edge_preserving_rescale(b, resample_scale) for b in boxes]
        if seg is not None:
            from skimage.transform import resize

            seg = resize(seg, vols[0].shape, order=0, anti_aliasing=False, preserve_range=True,
                         mode="constant").astype(seg.dtype)
        affine = _rescale_affine(affine, in_shape, vols[0].shape)
        info["resample_scale"] = float(resample_scale)
    info["resampled_shape"] = list(vols[0].shape)

    vols = [zscore_in_mask(v, v > 0) for v in vols]

    union = np.zeros(vols[0].shape, bool)
    for v in vols:
        union |= v != 0
    for b in boxes:
        union |= b > 0
    bbox = nonzero_bbox(union)
    info["crop_box_channels"] = len(vols) + len(boxes)
    size = tuple(b - a for a, b in bbox)
    if max_crop_shape is not None and any(s > m for s, m in zip(size, max_crop_shape)):
        raise ValueError(f"brain bounding box {size} exceeds {tuple(max_crop_shape)} (wrong resolution?)")
    crop = tuple(slice(a, b) for a, b in bbox)
    vols = [v[crop] for v in vols]
    seg = None if seg is None else seg[crop]
    shift = np.eye(4)
    shift[:3, 3] = [a for a, _ in bbox]
    affine = affine @ shift
    info["bbox"] = [[a, b] for a, b in bbox]
    info["cropped_shape"] = list(size)

    if flip_axis is not None:
        vols = [np.flip(v, axis=flip_axis) for v in vols]
        seg = None if seg is None else np.flip(seg, axis=flip_axis)
        flip = np.eye(4)
        flip[flip_axis, flip_axis] = -1
        flip[flip_axis, 3] = size[flip_axis] - 1
        affine = affine @ flip
    info["flip_axis"] = flip_axis

    padded = [pad_to_even(v)[0] for v in vols]
    pads = pad_to_even(vols[0])[1]
    info["padding"] = [list(p) for p in pads]
    info["padded_shape"] = list(padded[0].shape)
    low = np.stack([downsample_by_two(v) for v in padded])
    half = np.eye(4)
    half[:3, :3] *= 2.0
    half[:3, 3] = 0.5
    affine = affine @ half
    lesion = None
    if seg is not None:
        seg_even = pad_to_even((seg != 0).astype(np.uint8))[0]
        lesion = downsample_by_two(seg_even, is_label=True)
    info["output_shape"] = list(low.shape[1:])
    return BrainCase(low, brain_foreground(low).astype(np.uint8), lesion, affine, info)


def undo_brain_crop(volume: np.ndarray, crop_info: Mapping[str, Any], *, order: int = 1) -> np.ndarray:
    """Map a low-res output volume (prediction, mask) back onto the resampled full-resolution grid.

    The inverse of :func:`preprocess_brain`'s geometry, from its ``crop_info``: upsample x2 to the
    padded shape, drop the padding, undo the flip, and place the result at the crop box inside a zero
    volume of ``resampled_shape`` (the 1 mm grid for HCP, the input grid otherwise). This is what the
    CRADL comparison needs to compare maps on the full-resolution grid.

    Parameters
    ----------
    volume : ndarray, shape ``crop_info["output_shape"]``
    crop_info : mapping
        As written to ``crop_info/<case>.json``.
    order : int
        Interpolation order of the x2 upsampling (0 for label maps).

    Examples
    --------
    >>> vol = np.zeros((12, 14, 10), np.float32); vol[2:9, 3:12, 1:8] = np.arange(1, 442).reshape(7, 9, 7)
    >>> case = preprocess_brain([vol], flip_axis=1)
    >>> back = undo_brain_crop(case.brain_mask, case.crop_info, order=0)
    >>> back.shape, bool(back[vol > 0].mean() > 0.9), int(back[vol == 0].sum()) <= 80
    ((12, 14, 10), True, True)
    """
    from skimage.transform import resize

    expected = tuple(crop_info["output_shape"])
    volume = np.asarray(volume)
    if volume.shape != expected:
        raise ValueError(f"volume shape {volume.shape} differs from crop_info's output_shape {expected}")
    padded = resize(volume, tuple(crop_info["padded_shape"]), order=order, mode="edge", anti_aliasing=False,
                    preserve_range=True).astype(volume.dtype)
    cropped = padded[tuple(slice(0, s) for s in crop_info["cropped_shape"])]
    if crop_info.get("flip_axis") is not None:
        cropped = np.flip(cropped, axis=int(crop_info["flip_axis"]))
    out = np.zeros(tuple(crop_info["resampled_shape"]), dtype=volume.dtype)
    out[tuple(slice(a, b) for a, b in crop_info["bbox"])] = cropped
    return out


# ----------------------------------------------------------------------------------------------
# file I/O with clear errors
# ----------------------------------------------------------------------------------------------
def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI volume as ``(float32 array, affine)``; a clear error names a bad file."""
    import nibabel as nib

    from nnunet_anomaly._io import check_complete

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing input file: {path}")
    check_complete(path)  # nibabel reads a gzip stream cut after its data without complaint
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj).astype(np.float32)
    except Exception as exc:  # nibabel raises many types for truncated or foreign files
        raise ValueError(f"cannot read NIfTI file {path}: {exc}") from exc
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {data.shape}")
    return data, np.asarray(img.affine, dtype=float)


def write_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write a 3D array atomically as NIfTI (float32 images, uint8 masks keep their dtype)."""
    import nibabel as nib

    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
    img = nib.Nifti1Image(np.ascontiguousarray(array), np.eye(4) if affine is None else affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def write_image_2d(path: str | os.PathLike, array: np.ndarray, spacing: Sequence[float] = (1.0, 1.0)) -> Path:
    """Write a 2D ``(rows, cols)`` array atomically as a 2D NIfTI that nnU-Net's SimpleITKIO reads
    back as ``(1, 1, rows, cols)`` (float32 intensities survive, unlike in a PNG)."""
    import SimpleITK as sitk

    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"write_image_2d expects a 2D array, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), True)
    return Path(path)


# ----------------------------------------------------------------------------------------------
# chest X-ray preprocessing (reference section 10.3)
# ----------------------------------------------------------------------------------------------
def read_dicom(path: str | os.PathLike):
    """Read a DICOM file with pixel data; a clear error names a missing, unreadable or pixel-less file."""
    import pydicom

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing DICOM file: {path}")
    try:
        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array
    except Exception as exc:
        raise ValueError(f"cannot read DICOM pixel data from {path}: {exc}") from exc
    if pixels.ndim != 2:
        raise ValueError(f"{path}: expected a single-frame greyscale radiograph, got pixel shape {pixels.shape}")
    return ds


def _first_value(value) -> float:
    """WindowCenter/WindowWidth may be multi-valued; the first is the default window."""
    try:
        return float(value[0])
    except (TypeError, IndexError):
        return float(value)


def _aa_resize(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(image, tuple(shape), order=3, anti_aliasing=True, preserve_range=True,
                  mode="reflect").astype(np.float32)


def equalise_to_unit_range(image: np.ndarray, nbins: int = 256) -> np.ndarray:
    """Histogram-equalise (`nbins` bins) and rescale min-max to [-1, 1] (float32).

    Examples
    --------
    >>> out = equalise_to_unit_range(np.arange(16.0).reshape(4, 4))
    >>> float(out.min()), float(out.max())
    (-1.0, 1.0)
    """
    from skimage import exposure

    image = np.asarray(image, dtype=np.float64)
    if np.ptp(image) == 0:
        raise ValueError("the image is constant; it cannot be histogram-equalised")
    eq = exposure.equalize_hist(image, nbins=nbins)
    lo, hi = eq.min(), eq.max()
    return (2.0 * (eq - lo) / (hi - lo) - 1.0).astype(np.float32)


def preprocess_radiograph(ds, size: int = 256, intermediate_size: int = 512) -> tuple[np.ndarray, dict]:
    """The reference's VinDr preprocessing of one DICOM dataset, to ``(size, size)`` in [-1, 1].

    Steps: modality LUT (rescale slope/intercept, a no-op when absent) -> bicubic anti-aliased
    resize to `intermediate_size` -> clip to WindowCenter +- WindowWidth/2 when both tags exist ->
    histogram equalisation (256 bins) -> inversion for MONOCHROME1 (so bone is bright) -> [-1, 1]
    -> bicubic anti-aliased resize to `size`, clipped to [-1, 1].

    Returns
    -------
    image : (size, size) float32 in [-1, 1]
    info : dict with the original shape, the window used and the photometric interpretation.
    """
    from pydicom.pixels import apply_modality_lut

    raw = np.asarray(ds.pixel_array)
    pixels = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    info: dict[str, Any] = {"original_shape": list(pixels.shape)}
    image = _aa_resize(pixels, (intermediate_size, intermediate_size))
    center, width = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if center is not None and width is not None:
        c, w = _first_value(center), _first_value(width)
        image = np.clip(image, c - w / 2, c + w / 2)
        info["window"] = [c, w]
    else:
        info["window"] = None
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip()
    info["photometric_interpretation"] = photometric
    image = equalise_to_unit_range(image)
    if photometric == "MONOCHROME1":
        image = -image
    image = np.clip(_aa_resize(image, (size, size)), -1.0, 1.0)
    return image, info


def boxes_to_mask(boxes: Iterable[Sequence[float]], original_shape: Sequence[int], size: int = 256) -> np.ndarray:
    """Union of ``(x_min, y_min, x_max, y_max)`` boxes (original pixel units) on a `size` grid.

    Coordinates are scaled by ``size / original`` per axis and rounded, as the reference does;
    x runs along columns, y along rows.

    Examples
    --------
    >>> m = boxes_to_mask([(10, 20, 30, 60)], (100, 200), size=10)
    >>> np.argwhere(m).min(0).tolist(), np.argwhere(m).max(0).tolist()
    ([2, 0], [5, 1])
    """
    rows, cols = original_shape
    mask = np.zeros((size, size), dtype=np.uint8)
    for x_min, y_min, x_max, y_max in boxes:
        r0, r1 = int(round(y_min * size / rows)), int(round(y_max * size / rows))
        c0, c1 = int(round(x_min * size / cols)), int(round(x_max * size / cols))
        r0, c0 = max(r0, 0), max(c0, 0)
        # a box thinner than one output pixel still marks one pixel
        mask[r0:max(r1, r0 + 1), c0:max(c1, c0 + 1)] = 1
    return mask


# ----------------------------------------------------------------------------------------------
# a user's own radiographs: DICOM, PNG or JPEG (used by Dataset505_Radiographs)
# ----------------------------------------------------------------------------------------------
#: file suffixes read as radiographs (lower case); files without a suffix count when they are DICOM
RADIOGRAPH_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")
#: ITU-R 601-2 luma weights, as Pillow's ``convert("L")`` (without its rounding to 8 bits)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True for a ``.dcm``/``.dicom`` file, or any file with DICOM's ``DICM`` marker at byte 128.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "IM0001").write_bytes(b"\\0" * 128 + b"DICM" + b"\\0" * 8)
    >>> _ = (folder / "notes").write_text("not an image")
    >>> is_dicom_file(folder / "IM0001"), is_dicom_file(folder / "notes"), is_dicom_file("x.DCM")
    (True, False, True)
    """
    path = Path(path)
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def radiograph_to_grey(array: np.ndarray) -> tuple[np.ndarray, str | None]:
    """One grey channel from a grey, grey+alpha, RGB or RGBA image array; returns ``(grey, note)``.

    Radiographs saved as colour files almost always repeat one grey value in R, G and B: then the
    first channel is returned exactly (no rounding, no weighting). Otherwise (a tinted export,
    coloured annotations burnt in) grey is the ITU-R 601-2 luma 0.299 R + 0.587 G + 0.114 B
    (:data:`LUMA_WEIGHTS`, Pillow's ``convert("L")``, computed in float32 without rounding), and the
    note says so. An alpha channel is dropped; the note says so when it was not fully opaque.

    Parameters
    ----------
    array : ndarray, shape (H, W), (H, W, 2), (H, W, 3) or (H, W, 4)

    Returns
    -------
    grey : ndarray of float32, shape (H, W)
    note : str or None
        What was done to a colour image (None for a grey one, or identical channels with an opaque
        or absent alpha).

    Examples
    --------
    >>> rgb = np.stack([np.arange(6.0).reshape(2, 3)] * 3, axis=-1)
    >>> grey, note = radiograph_to_grey(rgb)
    >>> grey.tolist(), note
    ([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], None)
    >>> grey, note = radiograph_to_grey(np.array([[[255, 0, 0, 255]]], np.uint8))
    >>> round(float(grey[0, 0]), 3), note
    (76.245, 'colour channels differ: grey = 0.299 R + 0.587 G + 0.114 B')
    """
    array = np.asarray(array)
    if array.ndim == 2:
        return array.astype(np.float32), None
    if array.ndim != 3 or array.shape[-1] not in (2, 3, 4):
        raise ValueError(f"expected a 2D grey or colour image (rows, cols[, 2|3|4 channels]), got shape {array.shape}")
    notes = []
    colour = array[..., :3] if array.shape[-1] >= 3 else array[..., :1]
    alpha = array[..., -1] if array.shape[-1] in (2, 4) else None
    if alpha is not None and np.any(alpha != alpha.max()):
        notes.append("alpha channel not fully opaque: dropped (pixels used as stored)")
    if colour.shape[-1] == 1 or (np.array_equal(colour[..., 0], colour[..., 1])
                                 and np.array_equal(colour[..., 0], colour[..., 2])):
        grey = colour[..., 0].astype(np.float32)
    else:
        weights = np.asarray(LUMA_WEIGHTS, np.float32)
        grey = (colour.astype(np.float32) * weights).sum(axis=-1, dtype=np.float32)
        notes.insert(0, "colour channels differ: grey = 0.299 R + 0.587 G + 0.114 B")
    return grey, "; ".join(notes) or None


def _read_natural_radiograph(path: Path) -> tuple[np.ndarray, dict]:
    """A PNG or JPEG as stored (EXIF orientation applied), one grey channel."""
    from PIL import Image, ImageOps

    from nnunet_anomaly._io import check_complete

    check_complete(path)  # a PNG cut short fails here (PIL may decode its first rows without complaint)
    try:
        with Image.open(path) as handle:
            frames = getattr(handle, "n_frames", 1)
            if frames != 1:
                raise ValueError(f"{path}: {frames} frames; expected one 2D radiograph")
            handle = ImageOps.exif_transpose(handle)  # as viewers show a phone or scanner JPEG
            mode = handle.mode
            if mode == "P":
                handle = handle.convert("RGBA" if "transparency" in handle.info else "RGB")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                handle = handle.convert("RGB")
            array = np.asarray(handle)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for cut or foreign files
        raise ValueError(f"cannot read image file {path}: {type(exc).__name__}: {exc}") from None
    try:
        grey, note = radiograph_to_grey(array)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    info = {"format": path.suffix.lower().lstrip(".").replace("jpg", "jpeg"), "reader": "PIL",
            "mode": mode, "original_shape": list(grey.shape), "window": None,
            "photometric_interpretation": "MONOCHROME2", "colour": note}
    return grey, info


def _read_dicom_with_simpleitk(path: Path, ds) -> np.ndarray:
    """Pixels of a DICOM that pydicom cannot decode (e.g. JPEG lossless without pylibjpeg), through GDCM.

    GDCM applies the rescale slope and intercept (pydicom's modality LUT) and turns MONOCHROME1 into
    MONOCHROME2 (``2**BitsStored - 1 - value``); the latter is undone, so the window and the inversion
    of :func:`preprocess_radiograph_pixels` apply as for a file pydicom reads.
    """
    import SimpleITK as sitk

    try:
        pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    except Exception as exc:  # noqa: BLE001 - SimpleITK raises RuntimeError with GDCM's message
        raise ValueError(f"cannot decode the DICOM pixel data of {path} with pydicom or SimpleITK: "
                         f"{' '.join(str(exc).split())[:200]}") from None
    if pixels.ndim == 3 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim != 2:
        raise ValueError(f"{path}: expected a single-frame greyscale radiograph, got pixel shape {pixels.shape}")
    if str(getattr(ds, "PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        if getattr(ds, "RescaleSlope", None) is not None or getattr(ds, "RescaleIntercept", None) is not None:
            raise ValueError(f"{path}: MONOCHROME1 with rescale tags that only SimpleITK can decode; install "
                             "pylibjpeg (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg) so pydicom reads it")
        pixels = np.float32(2 ** int(ds.BitsStored) - 1) - pixels
    return pixels


def read_radiograph(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read one radiograph file as 2D float32 intensities, ready for :func:`preprocess_radiograph_pixels`.

    * **DICOM** (``.dcm``, ``.dicom`` or the ``DICM`` marker, :func:`is_dicom_file`): pydicom's pixels
      through the modality LUT, as :func:`preprocess_radiograph` reads them; the info carries the
      window (WindowCenter/WindowWidth, when both exist) and the photometric interpretation. Pixel
      data that pydicom cannot decode (JPEG lossless without pylibjpeg, for instance) are decoded by
      SimpleITK (GDCM), with the same values. Multi-frame and colour DICOMs are refused.
    * **PNG, JPEG** (Pillow, 8 or 16 bit, EXIF orientation applied): the stored values, shown as
      MONOCHROME2 (bright = dense) without a window; colour files become one grey channel
      (:func:`radiograph_to_grey`, which the info's ``colour`` note describes).

    Returns
    -------
    pixels : ndarray of float32, shape (rows, cols)
    info : dict
        ``format``, ``reader``, ``original_shape``, ``window`` (``[centre, width]`` or None),
        ``photometric_interpretation``, and ``colour`` (a note or None).

    Raises
    ------
    FileNotFoundError
        `path` does not exist.
    ValueError
        One line naming the file: unreadable, cut short, not 2D, or of an unknown type.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing image file: {path}")
    if not is_dicom_file(path):
        if path.suffix.lower() not in RADIOGRAPH_SUFFIXES:
            raise ValueError(f"{path}: not a DICOM, PNG or JPEG file (suffixes {', '.join(RADIOGRAPH_SUFFIXES)})")
        return _read_natural_radiograph(path)
    import pydicom

    reader = "pydicom"
    try:
        ds = read_dicom(path)
        from pydicom.pixels import apply_modality_lut

        pixels = np.asarray(apply_modality_lut(np.asarray(ds.pixel_array), ds), dtype=np.float32)
    except ValueError as exc:
        if "cannot read DICOM pixel data" not in str(exc):
            raise  # read, but not one 2D greyscale frame
        try:
            ds = pydicom.dcmread(str(path))
        except Exception as header_error:  # noqa: BLE001 - not DICOM at all, or cut inside its header
            raise ValueError(f"cannot read DICOM file {path}: {type(header_error).__name__}: {header_error}") from None
        if "PixelData" not in ds:
            raise ValueError(f"{path}: DICOM file without pixel data") from None
        pixels, reader = _read_dicom_with_simpleitk(path, ds), "SimpleITK"
    center, width = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    window = [_first_value(center), _first_value(width)] if center is not None and width is not None else None
    info = {"format": "dicom", "reader": reader, "original_shape": list(pixels.shape), "window": window,
            "photometric_interpretation": str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip(),
            "colour": None}
    return pixels, info


def preprocess_radiograph_pixels(pixels: np.ndarray, *, window: Sequence[float] | None = None,
                                 photometric: str = "MONOCHROME2", size: int = 256,
                                 intermediate_size: int = 512) -> np.ndarray:
    """:func:`preprocess_radiograph`'s steps on an array: the same values for the same pixels.

    Bicubic anti-aliased resize to `intermediate_size` -> clip to ``centre +- width / 2`` when a
    `window` ``(centre, width)`` is given -> histogram equalisation (256 bins) -> inversion for
    MONOCHROME1 -> [-1, 1] -> bicubic anti-aliased resize to `size`, clipped to [-1, 1]. For a DICOM,
    `pixels` are after the modality LUT (what :func:`read_radiograph` returns); for a PNG or JPEG,
    the stored values with no window (MONOCHROME2).

    Returns
    -------
    ndarray of float32, shape (size, size), in [-1, 1]

    Examples
    --------
    >>> rows, cols = np.mgrid[0:60, 0:40]
    >>> out = preprocess_radiograph_pixels((rows * 3 + cols).astype(np.float32), size=16, intermediate_size=32)
    >>> out.shape, out.dtype, float(out.min()) >= -1, float(out.max()) <= 1, bool(out[-1].mean() > out[0].mean())
    ((16, 16), dtype('float32'), True, True, True)
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2D radiograph, got shape {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise ValueError("the image has NaN or infinite values")
    image = _aa_resize(pixels, (intermediate_size, intermediate_size))
    if window is not None:
        c, w = float(window[0]), float(window[1])
        image = np.clip(image, c - w / 2, c + w / 2)
    image = equalise_to_unit_range(image)
    if str(photometric).strip() == "MONOCHROME1":
        image = -image
    return np.clip(_aa_resize(image, (size, size)), -1.0, 1.0)


def resize_mask(mask: np.ndarray, size: int = 256) -> np.ndarray:
    """A pixel mask (non-zero = anomaly) on a `size` x `size` grid, as the images are resized.

    An output pixel is anomalous when at least half of it is covered (anti-aliased linear resize of
    the 0/1 mask, >= 0.5), so a region keeps its area. A region too small for that (a lesion that
    shrinks below half a pixel) still marks its best-covered output pixel, as :func:`boxes_to_mask`
    keeps a box thinner than one pixel: no lesion disappears from the ground truth.

    Examples
    --------
    >>> mask = np.zeros((100, 60), np.uint8); mask[10:50, 20:50] = 1; mask[90, 5] = 255
    >>> small = resize_mask(mask, size=10)
    >>> small.dtype, int(small.sum()), bool(small[9, 0])
    (dtype('uint8'), 21, True)
    """
    from skimage.transform import resize

    binary = np.asarray(mask) != 0
    if binary.ndim != 2:
        raise ValueError(f"expected a 2D mask, got shape {binary.shape}")
    coverage = resize(binary.astype(np.float32), (size, size), order=1, anti_aliasing=True, preserve_range=True,
                      mode="constant")
    out = coverage >= 0.5
    regions, n_regions = ndimage.label(binary)
    if n_regions:
        rows, cols = np.nonzero(binary)
        out_rows = np.minimum((rows * size) // binary.shape[0], size - 1)
        out_cols = np.minimum((cols * size) // binary.shape[1], size - 1)
        region_of = regions[rows, cols]
        kept = np.bincount(region_of, weights=out[out_rows, out_cols], minlength=n_regions + 1)
        for region in np.flatnonzero(kept[1:] == 0) + 1:
            members = np.flatnonzero(region_of == region)
            best = members[np.argmax(coverage[out_rows[members], out_cols[members]])]
            out[out_rows[best], out_cols[best]] = True
    return out.astype(np.uint8)


def natural_image_to_unit_range(image: np.ndarray, size: int = 256, intermediate_size: int = 512) -> np.ndarray:
    """The reference's ImageNet preprocessing (``imagenet_preproc.py``), step for step.

    1. RGB in [0, 1] (torchvision's ``pil_loader`` + ``ToTensor``: a grey image is copied to three
       channels, an alpha channel dropped);
    2. grey = 0.2989 R + 0.587 G + 0.114 B (torchvision's ``Grayscale``, ITU-R 601-2 luma);
    3. bilinear resize to `intermediate_size`\ :sup:`2` with anti-aliasing (``Resize(..., antialias=True)`` on
       a tensor, i.e. ``torch.nn.functional.interpolate(mode="bilinear", antialias=True)``);
    4. ``skimage.exposure.equalize_hist(x, nbins=256)``, then ``2 x - 1`` (so the darkest value is
       slightly above -1, as in the reference);
    5. ``skimage.transform.resize`` to `size`\ :sup:`2` (linear, anti-aliased, the reference's
       low-resolution copy).

    Parameters
    ----------
    image : ndarray
        ``(H, W, 3)`` or ``(H, W, 4)`` RGB(A), or ``(H, W)`` grey; uint8 (or uint16), or floats in [0, 1].

    Returns
    -------
    ndarray of float32, shape (size, size)

    Examples
    --------
    >>> rgb = np.random.default_rng(0).integers(0, 255, (40, 30, 3)).astype(np.uint8)
    >>> out = natural_image_to_unit_range(rgb, size=16, intermediate_size=32)
    >>> out.shape, out.dtype, bool(-1 <= out.min() and out.max() <= 1)
    ((16, 16), dtype('float32'), True)
    """
    import torch
    from skimage import exposure
    from skimage.transform import resize

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)  # PIL's convert("RGB") of a grey image
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"expected a grey or RGB(A) image, got shape {image.shape}")
    rgb = image[..., :3]
    if np.issubdtype(rgb.dtype, np.integer):
        rgb = rgb.astype(np.float32) / np.float32(np.iinfo(rgb.dtype).max)
    tensor = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)
    red, green, blue = tensor.unbind(dim=0)
    grey = (0.2989 * red + 0.587 * green + 0.114 * blue).to(torch.float32)
    with torch.no_grad():
        large = torch.nn.functional.interpolate(grey[None, None], size=(intermediate_size, intermediate_size),
                                                mode="bilinear", align_corners=False, antialias=True)
    large = large[0, 0].numpy()
    if np.ptp(large) == 0:
        raise ValueError("the image is constant; it cannot be histogram-equalised")
    unit = exposure.equalize_hist(large, nbins=256) * 2 - 1
    return resize(unit, (size, size), anti_aliasing=True, preserve_range=True).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# abdominal CT (reference section 10.2)
# ----------------------------------------------------------------------------------------------
def body_mask_from_corner(image: np.ndarray, upper: float = 0.03, lower: float = 0.0) -> np.ndarray:
    """Body mask = NOT(the region connected to voxel (0, ..., 0) with intensity in [lower, upper]).

    Face connectivity, like SimpleITK's ``ConnectedThreshold`` the reference uses.

    Examples
    --------
    >>> img = np.zeros((5, 5)); img[1:4, 1:4] = 1.0; img[2, 2] = 0.0   # an enclosed dark voxel stays body
    >>> body_mask_from_corner(img).sum()
    np.int64(9)
    """
    image = np.asarray(image)
    background = (image >= lower) & (image <= upper)
    origin = (0,) * image.ndim
    if not background[origin]:
        # the corner itself is not background-like: nothing is connected to it
        return np.ones(image.shape, dtype=bool)
    labels, _ = ndimage.label(background)
    return labels != labels[origin]


# ----------------------------------------------------------------------------------------------
# the resumable, parallel case runner
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One unit of work: `function(**kwargs)` must write exactly `outputs`."""

    name: str
    outputs: tuple[Path, ...]
    function: Callable[..., Any]
    kwargs: Mapping[str, Any]

    def done(self) -> bool:
        return all(Path(p).is_file() for p in self.outputs)


@dataclass
class RunSummary:
    """What a conversion run did."""

    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)}, skipped {len(self.skipped)} (already done), "
                 f"failed {len(self.failed)}" + (f", removed {len(self.removed)} stale file(s)" if self.removed else "")]
        lines += [f"  FAILED {name}: {msg}" for name, msg in sorted(self.failed.items())]
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        return not self.failed


def _call(function: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    return function(**kwargs)


def _tqdm(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="case", file=sys.stderr, disable=None)


def _failure_message(exc: BaseException) -> str:
    """One line for a failed case: our errors as they are, anything else with its type (never a traceback)."""
    text = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, (ValueError, FileNotFoundError)):
        return text
    return f"{type(exc).__name__}: {text}"


def _remove_outputs(case: Case) -> None:
    """Delete what a failed case wrote, so no half-converted case (a label without its image) remains."""
    for path in case.outputs:
        Path(path).unlink(missing_ok=True)


def run_cases(cases: Sequence[Case], num_processes: int = 1, *, desc: str = "converting",
              overwrite: bool = False, remove_orphans: bool = False) -> RunSummary:
    """Run every unfinished case (resumable: cases whose outputs all exist are skipped).

    A case that raises any exception is recorded as failed with a one-line message and the others go
    on (only Ctrl-C stops the run); the failed case's outputs are deleted, so it leaves no file
    behind. Outputs are written through ``atomic_path``; temporary files that a killed earlier run
    left in the output folders are deleted first.

    Parameters
    ----------
    overwrite : bool
        Redo every case, finished or not.
    remove_orphans : bool
        Also delete the files in the cases' output folders that no case produces (the outputs of an
        earlier run with other options, e.g. a second channel no longer converted).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> case = Case("x", (out,), out.write_text, {"data": "hi"})
    >>> run_cases([case]).converted, run_cases([case]).skipped
    (['x'], ['x'])
    """
    if num_processes < 1:
        raise ValueError(f"-np/num_processes must be >= 1, got {num_processes}")
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError("case names must be unique")
    summary = RunSummary()
    folders = sorted({Path(p).parent for case in cases for p in case.outputs})
    for folder in folders:
        remove_stale_temporaries(folder)
    if remove_orphans:
        produced = {Path(p).resolve() for case in cases for p in case.outputs}
        for folder in folders:
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                if path.is_file() and not path.name.startswith(".") and path.resolve() not in produced:
                    path.unlink()
                    summary.removed.append(str(path))
    todo = []
    for case in cases:
        if not overwrite and case.done():
            summary.skipped.append(case.name)
        else:
            todo.append(case)
    with _tqdm(len(todo), desc) as bar:
        if num_processes == 1 or len(todo) <= 1:
            for case in todo:
                try:
                    case.function(**case.kwargs)
                    summary.converted.append(case.name)
                except Exception as exc:  # noqa: BLE001 - one bad case must not abort the others
                    _remove_outputs(case)
                    summary.failed[case.name] = _failure_message(exc)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=num_processes) as pool:
                futures = {pool.submit(_call, c.function, c.kwargs): c for c in todo}
                for future, case in futures.items():
                    try:
                        future.result()
                        summary.converted.append(case.name)
                    except Exception as exc:  # noqa: BLE001 - includes a worker killed by the system
                        _remove_outputs(case)
                        summary.failed[case.name] = _failure_message(exc)
                    bar.update()
    return summary


#: the record of how a folder was converted, checked on every re-run
OPTIONS_FILE = "conversion.json"


def check_conversion_options(folder, script: str, options: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Refuse to mix outputs of different conversion options in one folder; record the options.

    A re-run skips finished cases, so a run with other options (another size, one channel instead
    of two, another seed) would silently keep the old outputs beside the new ones. The options of a
    run are written to ``<folder>/conversion.json``; a later run with different options stops with
    the difference, unless `overwrite` (``--overwrite``: every case is redone and files no case
    produces any more are deleted).

    Raises
    ------
    ValueError
        The folder was converted with other options and `overwrite` is False.
    """
    folder = Path(folder)
    record = folder / OPTIONS_FILE
    wanted = {"script": script, "options": json.loads(json.dumps(dict(options), default=str))}
    if record.is_file() and not overwrite:
        from nnunet_anomaly._io import read_json

        previous = read_json(record)
        if previous != wanted:
            old, new = previous.get("options", {}), wanted["options"]
            changed = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
                       if old.get(key) != new.get(key)]
            if previous.get("script") != script:
                changed.insert(0, f"script: {previous.get('script')!r} -> {script!r}")
            raise ValueError(f"{folder} was converted with other options ({'; '.join(changed)}); its finished cases "
                             "would be kept as they are. Pass --overwrite to convert every case again (and delete "
                             "files that no case produces any more), or choose another output folder")
    write_json(record, wanted)
    return record


def brain_channel_names(with_t1: bool) -> tuple[dict[int, str], dict[str, str]]:
    """nnU-Net ``channel_names`` and our ``modalities`` entry for converted brain data.

    The conversion already z-scores inside the brain with a zero background, as the paper does. Naming the
    channels ``noNorm`` stops nnU-Net from z-scoring a second time (over the background too, when the brain
    fills most of the cropped box), so the network sees the paper's intensities; ``modalities`` records
    which contrast each channel is.

    Examples
    --------
    >>> brain_channel_names(with_t1=True)
    ({0: 'noNorm', 1: 'noNorm'}, {'0': 'T2', '1': 'T1'})
    """
    modalities = ["T2", "T1"][: 2 if with_t1 else 1]
    return {i: "noNorm" for i in range(len(modalities))}, {str(i): m for i, m in enumerate(modalities)}


def write_dataset_json(
    dataset_dir: Path,
    *,
    channel_names: Mapping[int | str, str],
    labels: Mapping[str, int],
    num_training: int,
    file_ending: str,
    description: str,
    **extra: Any,
) -> Path:
    """Write nnU-Net's ``dataset.json`` atomically (same keys as ``generate_dataset_json``)."""
    data = {
        "channel_names": {str(k): v for k, v in channel_names.items()},
        "labels": dict(labels),
        "numTraining": int(num_training),
        "file_ending": file_ending,
        "description": description,
    }
    data.update(extra)
    return write_json(Path(dataset_dir) / "dataset.json", data)


# ----------------------------------------------------------------------------------------------
# one brain subject, end to end (used by Dataset501/502/503)
# ----------------------------------------------------------------------------------------------
def brain_test_case(name: str, dataset_dir: Path, input_paths: Sequence[Path], segmentation_path: Path | None,
                    *, flip_axis: int | None = None, failure: str | None = None,
                    box_paths: Sequence[Path] = ()) -> Case:
    """One BraTS/ISLES-style test case: ``imagesTs`` channels, ``labelsTs`` lesion, ``brainmasksTs``, crop info.

    With `failure` set (a missing or ambiguous input found while listing cases) the case is recorded as
    failed with that message when the run reaches it, instead of stopping the whole run.
    """
    dataset_dir = Path(dataset_dir)
    images = [dataset_dir / "imagesTs" / f"{name}_{c:04d}.nii.gz" for c in range(len(input_paths))]
    label = dataset_dir / "labelsTs" / f"{name}.nii.gz"
    brain = dataset_dir / "brainmasksTs" / f"{name}.nii.gz"
    crop_info = dataset_dir / "crop_info" / f"{name}.json"
    outputs = (*images, label, brain, crop_info)
    if failure is not None:
        return Case(name, outputs, _raise_missing_input, {"message": failure})
    kwargs = dict(image_paths=[str(p) for p in input_paths], channel_names=["T2", "T1"][: len(input_paths)],
                  output_images=[str(p) for p in images], crop_info_path=str(crop_info),
                  label_path=str(label), label_source="lesion", segmentation_path=str(segmentation_path),
                  brain_mask_path=str(brain), flip_axis=flip_axis, box_paths=[str(p) for p in box_paths])
    return Case(name, outputs, convert_brain_subject, kwargs)


def _raise_missing_input(message: str) -> None:
    raise FileNotFoundError(message)


def convert_brain_subject(
    *,
    image_paths: Sequence[str],
    channel_names: Sequence[str],
    output_images: Sequence[str],
    crop_info_path: str,
    label_path: str | None = None,
    label_source: str = "brain",
    segmentation_path: str | None = None,
    brain_mask_path: str | None = None,
    resample_scale: float | None = None,
    flip_axis: int | None = None,
    box_paths: Sequence[str] = (),
) -> None:
    """Read one subject's channels (and lesion segmentation), preprocess, write every output.

    `box_paths` are volumes of the subject that only widen the crop box (T1 when only T2 is written),
    as the reference crops every subject to the union of its T1 and T2 boxes.

    `label_source` is ``"brain"`` (label = brain mask, for healthy training data) or ``"lesion"``
    (label = every nonzero class of `segmentation_path`, for test sets). The image files are
    written last, after the label, brain mask and crop info.
    """
    if len(image_paths) != len(output_images) or len(image_paths) != len(channel_names):
        raise ValueError("image_paths, channel_names and output_images must have the same length")
    if label_source not in ("brain", "lesion"):
        raise ValueError(f"label_source must be 'brain' or 'lesion', got {label_source!r}")
    volumes, affine = [], None
    for path in image_paths:
        data, this_affine = read_nifti(path)
        if volumes and data.shape != volumes[0].shape:
            raise ValueError(f"{path}: shape {data.shape} differs from {image_paths[0]}: {volumes[0].shape}")
        volumes.append(data)
        affine = this_affine if affine is None else affine
    box_volumes = []
    for path in box_paths:
        data, _ = read_nifti(path)
        if data.shape != volumes[0].shape:
            raise ValueError(f"{path}: shape {data.shape} differs from {image_paths[0]}: {volumes[0].shape}")
        box_volumes.append(data)
    segmentation = None
    if segmentation_path is not None:
        segmentation, _ = read_nifti(segmentation_path)
        if segmentation.shape != volumes[0].shape:
            raise ValueError(f"{segmentation_path}: shape {segmentation.shape} differs from the image's "
                             f"{volumes[0].shape} ({image_paths[0]})")
    elif label_source == "lesion":
        raise ValueError("label_source='lesion' needs segmentation_path")
    try:
        case = preprocess_brain(volumes, affine, segmentation=segmentation, resample_scale=resample_scale,
                                flip_axis=flip_axis, channel_names=[str(p) for p in image_paths],
                                box_channels=box_volumes)
    except ValueError as exc:
        raise ValueError(f"{image_paths[0]}: {exc}") from exc
    info = dict(case.crop_info)
    info.update(inputs=[Path(p).name for p in image_paths], channel_names=list(channel_names),
                crop_box_from=[Path(p).name for p in (*image_paths, *box_paths)],
                output_affine=np.round(case.affine, 6).tolist())
    write_json(crop_info_path, info)
    if label_path is not None:
        label = case.brain_mask if label_source == "brain" else case.lesion
        write_nifti(label_path, label.astype(np.uint8), case.affine)
    if brain_mask_path is not None:
        write_nifti(brain_mask_path, case.brain_mask, case.affine)
    for channel, out in zip(case.channels, output_images):
        write_nifti(out, channel, case.affine)


def finish_run(summary: RunSummary, dataset_dir: Path) -> int:
    """Print the run summary and return the process exit code (1 when any case failed)."""
    print(summary)
    print(f"output: {dataset_dir}")
    return 0 if summary.ok else 1


def run_conversion(convert_call: Callable[[], Tuple[RunSummary, Path]]) -> int:
    """Run a script's conversion and return its exit code: the summary, or one clear error line (exit 1)."""
    try:
        summary, output = convert_call()
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return finish_run(summary, output)
