"""Helpers shared by several test modules (imported as ``_helpers``: pytest puts ``tests/`` on the path)."""
import contextlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_tiny_brain_dataset(raw, dataset: str, shape=(30, 36, 30), *, seed: int = 0) -> Path:
    """Ten NIfTI 'brains' (textured ellipsoids, 2 mm) with brain-mask labels: ``raw/dataset``, nnU-Net layout."""
    import SimpleITK as sitk
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    folder = Path(raw) / dataset
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    for i in range(10):
        radius = np.sqrt(((grid / (0.8 + 0.15 * rng.random())) ** 2).sum(0))
        brain = radius < 1
        image = (ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) * 4 + 100 + 25 * (radius < 0.5)) * brain
        for array, path in [(image.astype(np.float32), folder / "imagesTr" / f"brain_{i:03d}_0000.nii.gz"),
                            (brain.astype(np.uint8), folder / "labelsTr" / f"brain_{i:03d}.nii.gz")]:
            itk = sitk.GetImageFromArray(array)
            itk.SetSpacing((2.0, 2.0, 2.0))
            sitk.WriteImage(itk, str(path))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1"}, "labels": {"background": 0, "brain": 1}, "numTraining": 10,
        "file_ending": ".nii.gz"}))
    return folder


def source_copy(destination) -> Path:
    """A copy of what ``pip install`` needs from this checkout (no caches), in `destination`."""
    destination = Path(destination)
    destination.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    for folder in ("nnunet_anomaly", "trainers", "dataset_conversion"):
        shutil.copytree(REPO / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


@contextlib.contextmanager
def nnunet_environment(env: dict):
    """`env` set in ``os.environ`` for the block, ``nnUNet_n_proc_DA`` unset (0 would crash nnU-Net's planning);
    every variable touched, ``nnUNet_extTrainer`` included, is restored afterwards."""
    saved = {k: os.environ.get(k) for k in [*env, "nnUNet_n_proc_DA", "nnUNet_extTrainer"]}
    os.environ.update(env)
    os.environ.pop("nnUNet_n_proc_DA", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def plan_and_preprocess_3d_fullres(dataset_id: int) -> None:
    """nnU-Net's planning and 3d_fullres preprocessing through its Python API (one interpreter start fewer)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=False, clean=True, verbose=False,
                         show_progress_bar=False)
    plan_experiments([dataset_id])
    preprocess([dataset_id], configurations=("3d_fullres",), num_processes=(1,), show_progress_bar=False)


def write_dicom(path: Path, pixels: np.ndarray, *, photometric="MONOCHROME2", window=None, frames=1) -> Path:
    """A 12-bit CR radiograph (one frame, or `frames` stacked) written with pydicom: ``path``."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = "anon"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint16)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path
