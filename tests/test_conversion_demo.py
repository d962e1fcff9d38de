"""The offline demo set Dataset990_MNIDemo: layout, geometry, intensities, masks, determinism, nnU-Net."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from nnunet_anomaly.dataset_conversion import Dataset990_MNIDemo as demo

SMALL = dict(num_training=2, num_test_healthy=1, num_test_per_anomaly=1)


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    return demo.build_demo_dataset(root, seed=3, **SMALL)


def test_layout_and_dataset_json(small_demo):
    names = {p.relative_to(small_demo).as_posix() for p in small_demo.rglob("*.nii.gz")}
    assert {"imagesTr/train_000_0000.nii.gz", "labelsTr/train_001.nii.gz", "imagesTs/test_healthy_000_0000.nii.gz",
            "labelsTs/test_tumour_000.nii.gz", "labelsTs/test_cyst_000.nii.gz",
            "brainmasksTs/test_cyst_000.nii.gz"} <= names
    pool = sorted(p.name for p in (small_demo / "external_pool" / "images").iterdir())
    assert pool == sorted(p.name for p in (small_demo / "external_pool" / "masks").iterdir()) and len(pool) == 4
    meta = json.loads((small_demo / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["labels"] == {"background": 0, "brain": 1}
    assert "SYNTHETIC" in meta["label_meaning"] and "healthy brains of several people" in meta["description"]


def test_training_cases_geometry_intensity_and_label(small_demo):
    image = nib.load(str(small_demo / "imagesTr" / "train_000_0000.nii.gz"))
    data = np.asarray(image.dataobj)
    label = _load(small_demo / "labelsTr" / "train_000.nii.gz")
    # MNI152 brain ~ 150 x 180 x 150 mm at 4 mm: about 40 x 48 x 40 voxels
    assert np.allclose(np.diag(image.affine)[:3], 4.0)
    assert all(30 <= s <= 50 for s in (data.shape[0], data.shape[2])) and 40 <= data.shape[1] <= 58
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}
    assert np.array_equal(label.astype(bool), ndimage.binary_fill_holes(data != 0))
    inside = data[label > 0]
    assert abs(inside.mean()) < 0.1 and 0.7 < inside.std() < 1.1
    # two training subjects differ (augmentation), yet look alike (the same template)
    other = _load(small_demo / "imagesTr" / "train_001_0000.nii.gz")
    assert data.shape != other.shape or not np.allclose(data, other)


def test_test_cases_masks(small_demo):
    healthy = _load(small_demo / "labelsTs" / "test_healthy_000.nii.gz")
    assert healthy.shape == _load(small_demo / "imagesTs" / "test_healthy_000_0000.nii.gz").shape
    assert not healthy.any()
    for kind in ("tumour", "cyst"):
        image = _load(small_demo / "imagesTs" / f"test_{kind}_000_0000.nii.gz")
        lesion = _load(small_demo / "labelsTs" / f"test_{kind}_000.nii.gz").astype(bool)
        brain = _load(small_demo / "brainmasksTs" / f"test_{kind}_000.nii.gz").astype(bool)
        assert lesion.shape == image.shape == brain.shape
        assert 10 <= lesion.sum() <= 0.1 * brain.sum() and np.all(lesion <= brain)
        core = ndimage.binary_erosion(lesion)
        if kind == "tumour":  # hyperintense
            assert image[core].mean() > image[brain & ~lesion].mean() + 1.5
        else:  # dark core
            assert image[core].min() < np.percentile(image[brain & ~lesion], 5)


def test_deterministic_and_resumable(small_demo, tmp_path):
    again = demo.build_demo_dataset(tmp_path, seed=3, **SMALL)
    for path in small_demo.rglob("*.nii.gz"):
        assert np.array_equal(_load(path), _load(again / path.relative_to(small_demo))), path
    stamps = {p: p.stat().st_mtime_ns for p in again.rglob("*.nii.gz")}
    demo.build_demo_dataset(tmp_path, seed=3, **SMALL)
    assert {p: p.stat().st_mtime_ns for p in again.rglob("*.nii.gz")} == stamps
    with pytest.raises(ValueError, match="seed 3"):
        demo.build_demo_dataset(tmp_path, seed=4, **SMALL)
    with pytest.raises(ValueError, match="num_training"):
        demo.build_demo_dataset(tmp_path / "x", num_training=0)


def test_pool_loads_with_folder_pool(small_demo):
    from nnunet_anomaly.pools import FolderPool

    image, mask = FolderPool(small_demo / "external_pool").sample(np.random.default_rng(0))
    assert image.ndim == 4 and mask is not None and mask.shape == image.shape[1:]
    assert abs(image[0][mask].mean()) < 1e-3


def test_cli_requires_output(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    assert demo.main([]) == 1


@pytest.mark.slow
def test_full_build_verifies_and_plans_with_nnunet(tmp_path):
    """The default build (20 training cases) passes nnU-Net's integrity check and 3d_fullres planning."""
    import time

    raw = tmp_path / "raw"
    start = time.perf_counter()
    dataset = demo.build_demo_dataset(raw)
    build_seconds = time.perf_counter() - start
    assert len(list((dataset / "imagesTr").iterdir())) == 24
    assert build_seconds < 60, build_seconds
    env = dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(tmp_path / "pre"),
               nnUNet_results=str(tmp_path / "res"), nnUNet_def_n_proc="2")
    env.pop("nnUNet_n_proc_DA", None)
    command = shutil.which("nnUNetv2_plan_and_preprocess", path=str(Path(os.sys.executable).parent)) or \
        "nnUNetv2_plan_and_preprocess"
    result = subprocess.run([command, "-d", "990", "--verify_dataset_integrity", "-c", "3d_fullres", "-np", "1",
                             "-npfp", "1"], env=env, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    plans = json.loads((tmp_path / "pre" / "Dataset990_MNIDemo" / "nnUNetPlans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    assert config["spacing"] == [4.0, 4.0, 4.0]
    assert len(list((tmp_path / "pre" / "Dataset990_MNIDemo" / "nnUNetPlans_3d_fullres").glob("*.b2nd"))) >= 20


@pytest.mark.parametrize("name", ["Dataset501_HCP", "Dataset502_BraTS2017", "Dataset503_ISLES2015",
                                  "Dataset504_VinDrCXR", "DatasetPool_MOODAbdomen", "DatasetPool_ImageNet",
                                  "Dataset990_MNIDemo"])
def test_script_doctests_and_help(name, capsys):
    """dataset_conversion/ is outside pytest's doctest paths, so its Examples run here."""
    import doctest
    import importlib

    module = importlib.import_module(f"nnunet_anomaly.dataset_conversion.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0 and "--output" in capsys.readouterr().out
