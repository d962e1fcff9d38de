"""nnU-Net's image readers: the array order a model's predictions are in, and writing a map back into a file.

``nnUNetv2_predict --save_probabilities`` saves each map in the array order of the reader the model
was planned with (``image_reader_writer`` in its ``plans.json``), not in file order:

====================  ===============================================================================
reader                array axes of a 3D map
====================  ===============================================================================
SimpleITKIO           SimpleITK's ``GetArrayFromImage`` order (file axes reversed)
NibabelIO             nibabel's file axes reversed: the same as SimpleITKIO
NibabelIOWithReorient the image **reoriented to RAS**, axes reversed (differs from file order unless the
                      file is RAS; a flip or an axis swap keeps a cubic volume's shape, so nothing
                      would notice)
SimpleITKIOWithReorient  the image reoriented to RAS by ``DICOMOrient``, SimpleITK order
NaturalImage2DIO      PNG rows and columns, with a leading axis of 1
====================  ===============================================================================

:func:`array_shape` and :func:`write_like_reference` undo exactly what each reader did (the inverse
nnU-Net's own ``write_seg`` applies), for float maps and for masks. Other readers (``Tiff3DIO``, any
custom one) are refused by :func:`check_reader` with a clear message.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_anomaly._io import atomic_path

__all__ = ["SUPPORTED_READERS", "check_reader", "reader_of_predictions", "array_shape", "write_like_reference"]

#: readers whose array order export can invert, and the file endings each reads
SUPPORTED_READERS = {
    "SimpleITKIO": (".nii.gz", ".nii", ".nrrd", ".mha"),
    "SimpleITKIOWithReorient": (".nii.gz", ".nii", ".nrrd", ".mha"),
    "NibabelIO": (".nii.gz", ".nii"),
    "NibabelIOWithReorient": (".nii.gz", ".nii"),
    "NaturalImage2DIO": (".png",),
}


def check_reader(reader: str, references: Sequence = ()) -> str:
    """`reader` if export supports it and it reads every reference image's format; else a ValueError.

    Examples
    --------
    >>> check_reader("NibabelIOWithReorient", ["a_0000.nii.gz"])
    'NibabelIOWithReorient'
    >>> check_reader("Tiff3DIO")
    Traceback (most recent call last):
    ...
    ValueError: the model reads its images with Tiff3DIO; export supports SimpleITKIO, SimpleITKIOWithReorient, NibabelIO, NibabelIOWithReorient, NaturalImage2DIO
    """
    if reader not in SUPPORTED_READERS:
        raise ValueError(f"the model reads its images with {reader}; export supports {', '.join(SUPPORTED_READERS)}")
    wrong = [Path(r).name for r in references if not str(r).lower().endswith(SUPPORTED_READERS[reader])]
    if wrong:
        raise ValueError(f"the model's reader {reader} reads {', '.join(SUPPORTED_READERS[reader])} files, but the "
                         f"input images include {', '.join(wrong[:3])}")
    return reader


def reader_of_predictions(predictions_dir, *, plans_file=None, reader: str | None = None,
                          references: Sequence = ()) -> str:
    """The ``image_reader_writer`` of the model that made the predictions in `predictions_dir`.

    In order: `reader` if given; the ``plans.json`` given as `plans_file`; the ``plans.json`` that
    ``nnUNetv2_predict`` writes into its output folder; ``NaturalImage2DIO`` when every reference is a PNG
    (the only reader nnU-Net has for them). Otherwise the order cannot be known, and a ValueError says
    how to give it.
    """
    references = list(references)
    if reader is None:
        plans_path = Path(plans_file) if plans_file is not None else Path(predictions_dir) / "plans.json"
        if plans_path.is_file():
            try:
                reader = json.loads(plans_path.read_text(encoding="utf-8"))["image_reader_writer"]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{plans_path}: no image_reader_writer in a valid plans.json ({error})") from None
        elif plans_file is not None:
            raise FileNotFoundError(f"plans file {plans_path} does not exist")
        elif references and all(str(r).lower().endswith(".png") for r in references):
            reader = "NaturalImage2DIO"
        else:
            raise ValueError(f"{predictions_dir} has no plans.json (nnUNetv2_predict writes one; nnUNetv2_ensemble "
                             "does not), so the array order of the maps is unknown: pass --plans "
                             "MODEL_FOLDER/plans.json or --reader NAME")
    return check_reader(reader, references)


# ------------------------------------------------------------------------------------------- shapes
def _sitk_information(path):
    import SimpleITK as sitk

    info = sitk.ImageFileReader()
    info.SetFileName(str(path))
    info.ReadImageInformation()
    return info


def _sitk_ras_geometry(info):
    """Size, spacing, origin and direction of the reference after ``DICOMOrient(..., 'RAS')``, and its orientation."""
    import SimpleITK as sitk

    probe = sitk.Image(info.GetSize(), sitk.sitkUInt8)  # geometry only: DICOMOrient needs an image
    probe.SetSpacing(info.GetSpacing())
    probe.SetOrigin(info.GetOrigin())
    probe.SetDirection(info.GetDirection())
    original = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(info.GetDirection())
    return sitk.DICOMOrient(probe, "RAS"), original


def _nibabel_ras(image):
    """(orientation transform file -> RAS, the RAS shape) of a nibabel image, as NibabelIOWithReorient reorients."""
    from nibabel.orientations import io_orientation

    ornt = io_orientation(image.affine)
    shape = [0] * len(image.shape)
    for axis, (target, _) in enumerate(ornt):
        shape[int(target)] = image.shape[axis]
    return ornt, tuple(shape)


def array_shape(path, reader: str) -> tuple:
    """Shape of the reference image as `reader` returns it (numpy order, no channel axis); only headers are read."""
    path = Path(path)
    if reader == "NaturalImage2DIO" or path.name.lower().endswith(".png"):
        from PIL import Image

        with Image.open(path) as image:
            width, height = image.size
        return (height, width)
    if reader in ("NibabelIO", "NibabelIOWithReorient"):
        import nibabel

        image = nibabel.load(str(path))
        shape = image.shape if reader == "NibabelIO" else _nibabel_ras(image)[1]
        return tuple(int(s) for s in shape[::-1])
    info = _sitk_information(path)
    if reader == "SimpleITKIOWithReorient" and info.GetDimension() == 3:
        return tuple(int(s) for s in reversed(_sitk_ras_geometry(info)[0].GetSize()))
    return tuple(int(s) for s in reversed(info.GetSize()))


# ------------------------------------------------------------------------------------------- writing
def write_like_reference(array: np.ndarray, reference_image, output_path, reader: str, dtype=np.float32) -> Path:
    """Write `array` (in `reader`'s order) atomically as a volume in `reference_image`'s file order and geometry.

    NIfTI, NRRD or MHA, chosen by the output's file name. A PNG reference has no geometry, so its map gets
    unit spacing.
    """
    reference_image, output_path = Path(reference_image), Path(output_path)
    array = np.ascontiguousarray(array, dtype=dtype)
    if reader in ("NibabelIO", "NibabelIOWithReorient"):
        if not output_path.name.lower().endswith((".nii", ".nii.gz")):
            raise ValueError(f"{output_path.name}: a {reader} model's maps are written as NIfTI")
        return _write_nibabel(array, reference_image, output_path, reader)
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    if not reference_image.name.lower().endswith(".png"):
        info = _sitk_information(reference_image)
        if info.GetDimension() == image.GetDimension():
            if reader == "SimpleITKIOWithReorient" and image.GetDimension() == 3:
                ras, original = _sitk_ras_geometry(info)
                image.CopyInformation(ras)  # the map is in the RAS grid the reader made
                image = sitk.DICOMOrient(image, original)
            else:
                image.SetSpacing(info.GetSpacing())
                image.SetOrigin(info.GetOrigin())
                image.SetDirection(info.GetDirection())
    with atomic_path(output_path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return output_path


def _nibabel_to_file_order(array: np.ndarray, reference_image: Path, reader: str) -> np.ndarray:
    """The (x, y, z) array in the reference file's voxel order, undoing what `reader` did on reading."""
    import nibabel
    from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform

    xyz = array.transpose(2, 1, 0)
    if reader == "NibabelIOWithReorient":
        ornt, _ = _nibabel_ras(nibabel.load(str(reference_image)))
        xyz = apply_orientation(xyz, ornt_transform(axcodes2ornt("RAS"), ornt))
    return np.ascontiguousarray(xyz)


def _write_nibabel(array: np.ndarray, reference_image: Path, output_path: Path, reader: str) -> Path:
    import nibabel

    reference = nibabel.load(str(reference_image))
    data = _nibabel_to_file_order(array, reference_image, reader)
    if data.shape != reference.shape:
        raise ValueError(f"{output_path.name}: map shape {data.shape} (file order) does not match {reference_image.name} "
                         f"shape {reference.shape}")
    header = reference.header.copy()  # keeps the qform/sform codes and units of the reference
    image = nibabel.Nifti1Image(data, reference.affine, header=header)
    image.set_data_dtype(data.dtype)
    image.header.set_slope_inter(None, None)  # stored values are the scores, unscaled
    image.header["cal_min"], image.header["cal_max"] = 0, 0
    with atomic_path(output_path) as tmp:
        nibabel.save(image, str(tmp))
    return output_path
