"""Convert MOOD abdominal CT to an external patch pool (inter-dataset blending for brain MRI).

Input: a folder of MOOD volumes (``abdom_train/00000.nii.gz`` ..., 512^3, intensities in [0, 1]); every
``*.nii.gz``/``*.nii`` directly in ``--input`` is one volume.

Per volume, the reference's ``mood_preproc.py``: resample to 128^3 with SimpleITK's linear
interpolation (no anti-aliasing), body mask = NOT(the region connected to voxel (0, 0, 0) with
intensity in [0, ``--threshold``]) (0.03 for abdomen), z-score inside the body mask (0 outside).

Output, in the ``FolderPool`` layout the inter-dataset task loads (not an nnU-Net dataset):
``<output>/images/<name>.nii.gz`` (float32) and ``<output>/masks/<name>.nii.gz`` (uint8 body mask).
Point the trainers at ``<output>`` (see documentation/datasets.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from nnunet_anomaly._io import atomic_path
from nnunet_anomaly.conversion import (Case, body_mask_from_corner, check_conversion_options, resolve_output_root,
                                       run_cases, run_conversion, zscore_in_mask)

DEFAULT_SIZE = 128
DEFAULT_THRESHOLD = 0.03

DEFAULT_FOLDER_NAME = "ExternalPool_MOODAbdomen"  # under $nnUNet_raw when --output is not given

__all__ = ["find_volumes", "convert_volume", "convert", "main"]


def find_volumes(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MOOD input folder does not exist: {root}")
    volumes = sorted(p for p in root.iterdir() if p.is_file() and (p.name.endswith(".nii.gz") or p.suffix == ".nii"))
    if not volumes:
        raise FileNotFoundError(f"no .nii.gz volumes in {root}")
    return volumes


def _stem(path: Path) -> str:
    return path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem


def convert_volume(*, input_path: str, image_path: str, mask_path: str, size: int = DEFAULT_SIZE,
                   threshold: float = DEFAULT_THRESHOLD) -> None:
    """Resample one CT volume to `size`^3, mask the body, z-score inside it, write image and mask."""
    import SimpleITK as sitk

    from nnunet_anomaly._io import read_image

    if not Path(input_path).is_file():
        raise FileNotFoundError(f"missing input file: {input_path}")
    image = sitk.Cast(read_image(input_path), sitk.sitkFloat32)  # read in full: a cut file is an error naming it
    if image.GetDimension() != 3:
        raise ValueError(f"{input_path}: expected a 3D volume, got {image.GetDimension()}D")
    in_size = np.array(image.GetSize(), float)
    out_spacing = np.array(image.GetSpacing()) * in_size / size
    resampled = sitk.Resample(image, [size] * 3, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                              tuple(out_spacing), image.GetDirection(), 0.0, sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(resampled)
    if not np.isfinite(array).all():
        raise ValueError(f"{input_path}: NaN/inf intensities")
    body = body_mask_from_corner(array, upper=threshold)
    if not body.any():
        raise ValueError(f"{input_path}: the body mask is empty (is the background above {threshold}?)")
    normalised = zscore_in_mask(array, body)
    for out, data in ((mask_path, body.astype(np.uint8)), (image_path, normalised)):
        out_image = sitk.GetImageFromArray(data)
        out_image.CopyInformation(resampled)
        with atomic_path(out) as tmp:
            sitk.WriteImage(out_image, str(tmp), True)


def convert(input_root, output_folder, *, size: int = DEFAULT_SIZE, threshold: float = DEFAULT_THRESHOLD,
            num_processes: int = 1, overwrite: bool = False):
    """Convert every volume; return ``(RunSummary, output folder)``. Resumable; see ``--overwrite``."""
    output_folder = Path(output_folder)
    cases = []
    for path in find_volumes(input_root):
        name = _stem(path)
        image = output_folder / "images" / f"{name}.nii.gz"
        mask = output_folder / "masks" / f"{name}.nii.gz"
        kwargs = dict(input_path=str(path), image_path=str(image), mask_path=str(mask), size=size, threshold=threshold)
        cases.append(Case(name, (image, mask), convert_volume, kwargs))
    check_conversion_options(output_folder, "DatasetPool_MOODAbdomen", {"size": size, "threshold": threshold},
                             overwrite=overwrite)
    return run_cases(cases, num_processes, desc="MOOD pool", overwrite=overwrite, remove_orphans=overwrite), output_folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="DatasetPool_MOODAbdomen", description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--input", required=True, help="folder of MOOD abdominal CT volumes (*.nii.gz)")
    parser.add_argument("-o", "--output", default=None,
                        help="pool folder to write (images/ and masks/); default: $nnUNet_raw/ExternalPool_MOODAbdomen")
    parser.add_argument("-np", "--num-processes", type=int, default=1, dest="num_processes")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="output edge length (default 128)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="upper background intensity of the corner region (0.03 abdomen; 0 for MOOD brain)")
    parser.add_argument("--overwrite", action="store_true", help="convert every volume again and delete files no "
                        "volume produces any more (needed to re-run with other options)")
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(args.input, args.output or resolve_output_root(None) / DEFAULT_FOLDER_NAME,
                                          size=args.size, threshold=args.threshold,
                                          num_processes=args.num_processes, overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
