"""End to end with the literal nnU-Net commands, on tiny datasets written as real files.

raw NIfTI (3D) / PNG (2D) -> ``nnUNetv2_plan_and_preprocess`` -> tiny configuration (``inherits_from``)
-> ``nnUNetv2_train ... -tr AnomalyTaskTrainer_ci -device cpu`` -> ``nnUNetv2_predict ...
--save_probabilities`` -> checks of the one-channel maps -> ``nnunet_anomaly export``.

The 3D run finds the trainers through our start-up hook (no variable set by the test; the hook
appends our folder to ``nnUNet_extTrainer``) and ensembles two folds; the 2D run switches the hook
off, shows that nnU-Net then cannot find the trainer, and sets ``nnUNet_extTrainer`` by hand, so both
ways a user can have are exercised by the real CLI.

``AnomalyTaskTrainer_ci`` trains 5 iterations: enough to prove the plumbing, not to learn anything,
so its 2D maps rank anomalies no better than chance (measured: inside > outside in 6 of 11 runs).
The check that the maps are higher inside inserted anomalies therefore uses a test-local variant of
it with :data:`QUALITY_ITERATIONS` iterations (found through a second ``nnUNet_extTrainer`` folder,
the way users add their own variants): after 100-150 iterations the mean inside was 1.5-2.9x the
mean outside in all 5 runs measured.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from scipy import ndimage
from skimage import io as skio

from nnunet_anomaly.plugin import ext_trainer_dir

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TRAINER = "AnomalyTaskTrainer_ci"
QUALITY_TRAINER = "AnomalyTaskTrainer_e2eQuality"
QUALITY_ITERATIONS = 200
QUALITY_TRAINER_SOURCE = f"""
from nnunet_anomaly.trainers import {TRAINER}


class {QUALITY_TRAINER}({TRAINER}):
    iterations_per_epoch = {QUALITY_ITERATIONS}
"""
NUM_TRAIN = 10  # two cases per task-fold block
SPACING_3D = (1.2, 1.0, 1.0)  # SimpleITK (x, y, z) order


# ------------------------------------------------------------------------------------------ data
def _texture(rng, shape, sigma):
    """Smooth random 'tissue' texture with unit standard deviation."""
    noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (noise - noise.mean()) / noise.std()


def _ellipsoid(shape, centre, radii):
    grid = np.indices(shape, dtype=np.float32)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def _organ(rng, shape):
    """A head/chest-like image: an ellipsoidal organ with texture and two darker inner structures."""
    centre = np.array(shape) / 2 + rng.uniform(-1.5, 1.5, len(shape))
    radii = np.array(shape) * rng.uniform(0.36, 0.42, len(shape))
    organ = _ellipsoid(shape, centre, radii)
    image = np.where(organ, 1.0 + 0.25 * _texture(rng, shape, 1.5), 0.0)
    for side in (-1, 1):
        inner_centre = centre.copy()
        inner_centre[-1] += side * radii[-1] * 0.45
        image[_ellipsoid(shape, inner_centre, radii * 0.3) & organ] -= 0.4
    return image.astype(np.float32), organ


def _add_anomalies(rng, image, organ, count=2, contrast=1.5):
    """Insert clearly visible bright blobs inside the organ; returns (image, anomaly mask)."""
    anomalous, mask = image.copy(), np.zeros(image.shape, bool)
    inside = np.argwhere(ndimage.binary_erosion(organ, iterations=5))
    for _ in range(count):
        centre = inside[rng.integers(len(inside))]
        blob = _ellipsoid(image.shape, centre, [rng.uniform(3.0, 4.5)] * image.ndim) & organ
        anomalous[blob] += contrast
        mask |= blob
    return anomalous, mask


def _dataset_json(folder, channel, ending, num_training):
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": channel}, "labels": {"background": 0, "organ": 1},
        "numTraining": num_training, "file_ending": ending}, indent=2))


def _write_3d_dataset(raw, dataset, shape=(36, 44, 36), num_test=3, seed=0):
    rng = np.random.default_rng(seed)
    folder = raw / dataset
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)

    def write(array, path, dtype):
        image = sitk.GetImageFromArray(array.astype(dtype))
        image.SetSpacing(SPACING_3D)
        image.SetOrigin((10.0, -20.0, 5.0))
        sitk.WriteImage(image, str(path))

    for i in range(NUM_TRAIN):
        image, organ = _organ(rng, shape)
        write(image, folder / "imagesTr" / f"brain_{i:03d}_0000.nii.gz", np.float32)
        write(organ, folder / "labelsTr" / f"brain_{i:03d}.nii.gz", np.uint8)
    for i in range(num_test):
        image, anomaly = _add_anomalies(rng, *_organ(rng, shape))
        write(image, folder / "imagesTs" / f"test_{i:03d}_0000.nii.gz", np.float32)
        write(anomaly, folder / "labelsTs" / f"test_{i:03d}.nii.gz", np.uint8)
    _dataset_json(folder, "T1", ".nii.gz", NUM_TRAIN)
    return folder


def _write_2d_dataset(raw, dataset, shape=(64, 64), num_test=3, seed=1):
    rng = np.random.default_rng(seed)
    folder = raw / dataset
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)

    def grey(image):  # like a radiograph stored as 8-bit PNG; anomalies stay below saturation (texture kept)
        return np.clip(np.round(image * 80 + 60), 0, 255).astype(np.uint8)

    for i in range(NUM_TRAIN):
        image, organ = _organ(rng, shape)
        Image.fromarray(grey(image)).save(folder / "imagesTr" / f"cxr_{i:03d}_0000.png")
        Image.fromarray(organ.astype(np.uint8)).save(folder / "labelsTr" / f"cxr_{i:03d}.png")
    for i in range(num_test):
        image, anomaly = _add_anomalies(rng, *_organ(rng, shape), contrast=1.0)
        Image.fromarray(grey(image)).save(folder / "imagesTs" / f"test_{i:03d}_0000.png")
        Image.fromarray(anomaly.astype(np.uint8)).save(folder / "labelsTs" / f"test_{i:03d}.png")
    _dataset_json(folder, "zscore", ".png", NUM_TRAIN)
    return folder


# ------------------------------------------------------------------------------------------ CLI
def _environment(root, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("nnUNet_n_proc_DA", "nnUNet_extTrainer", "nnunet_anomaly_pool", "PYTHONPATH",
                        "nnunet_anomaly_startup_hook")}
    env.update(nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
               nnUNet_results=str(root / "results"), nnUNet_def_n_proc="2", nnUNet_compile="false",
               MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    env.update(extra)
    return env


def _cli(command, *args, env, timeout=240):
    """Run a console script of this environment; on failure show the end of its output."""
    started = time.perf_counter()
    result = subprocess.run([str(BIN / command), *map(str, args)], env=env, capture_output=True, text=True,
                            timeout=timeout)
    print(f"{time.perf_counter() - started:6.1f} s  {command} {' '.join(map(str, args))}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command} failed ({result.returncode}):\n{output[-4000:]}"
    return output


def _plan_tiny(dataset_id, configuration, preset, env):
    from nnunet_anomaly.nnunet.planning import add_preset

    # planning must not see nnUNet_n_proc_DA=0 (nnU-Net calls torch.set_num_threads with it)
    _cli("nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", configuration, "-np", 1, "-npfp", 1,
         "--no_pbar", env=env)
    plans = next(Path(env["nnUNet_preprocessed"]).glob(f"Dataset{dataset_id}_*/nnUNetPlans.json"))
    add_preset(plans, preset)


def _check_maps(prediction_dir, labels_dir, read_mask, expected_cases):
    """One channel, in [0, 1], not constant; mean score inside the anomalies above the mean outside."""
    inside, outside = [], []
    for case in expected_cases:
        with np.load(prediction_dir / f"{case}.npz") as data:
            probabilities = data["probabilities"]
        assert probabilities.shape[0] == 1, f"{case}: {probabilities.shape[0]} channels"
        assert probabilities.dtype == np.float32
        assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
        assert probabilities.max() - probabilities.min() > 1e-3, f"{case}: constant map"
        scores = probabilities[0].reshape(-1)
        mask = read_mask(labels_dir / case).reshape(-1) > 0
        assert scores.size == mask.size
        inside.append(scores[mask])
        outside.append(scores[~mask])
    mean_inside, mean_outside = np.concatenate(inside).mean(), np.concatenate(outside).mean()
    print(f"mean anomaly score inside {mean_inside:.4f}, outside {mean_outside:.4f}")
    return mean_inside, mean_outside


# ------------------------------------------------------------------------------------------ tests
def test_3d_nifti_startup_hook_two_fold_ensemble_and_export(tmp_path):
    dataset_id, name = 971, "Dataset971_E2EBrain"
    folder = _write_3d_dataset(tmp_path / "raw", name)
    env = _environment(tmp_path)
    _plan_tiny(dataset_id, "3d_fullres", "3d_tiny", env)

    train_env = {**env, "nnUNet_n_proc_DA": "0"}
    folds = (0, 4)  # intra-dataset blending and smooth intensity change (neither needs an external pool)
    for fold in folds:
        log = _cli("nnUNetv2_train", dataset_id, "3d_tiny", fold, "-tr", TRAINER, "-device", "cpu", env=train_env)
        assert f"Using trainer '{TRAINER}' from: {ext_trainer_dir()}" in log  # the hook put our folder there
    model = tmp_path / "results" / name / f"{TRAINER}__nnUNetPlans__3d_tiny"
    for fold in folds:
        assert (model / f"fold_{fold}" / "checkpoint_final.pth").is_file()
    assert json.loads((model / "dataset.json").read_text())["labels"] == {"background": 0, "anomaly": [1, 2]}

    common = ["-d", dataset_id, "-c", "3d_tiny", "-tr", TRAINER, "--save_probabilities", "-npp", 0, "-nps", 0,
              "--disable_tta", "-device", "cpu"]
    _cli("nnUNetv2_predict", "-i", folder / "imagesTs", "-o", tmp_path / "ensemble", "-f", *folds, *common, env=env)
    _cli("nnUNetv2_predict", "-i", folder / "imagesTs", "-o", tmp_path / "fold0", "-f", 0, *common, env=env)

    cases = [f"test_{i:03d}" for i in range(3)]
    read_nifti = lambda stem: sitk.GetArrayFromImage(sitk.ReadImage(f"{stem}.nii.gz"))  # noqa: E731
    _check_maps(tmp_path / "ensemble", folder / "labelsTs", read_nifti, cases)  # 5 iterations: no ranking check
    for case in cases:  # the ensemble averages the folds: it differs from fold 0 alone
        with np.load(tmp_path / "ensemble" / f"{case}.npz") as a, np.load(tmp_path / "fold0" / f"{case}.npz") as b:
            assert a["probabilities"].shape == b["probabilities"].shape
            assert not np.allclose(a["probabilities"], b["probabilities"])

    _cli("nnunet_anomaly", "export", "-p", tmp_path / "ensemble", "-i", folder / "imagesTs", "-o",
         tmp_path / "export", "--no-progress", env=env)
    for case in cases:
        exported = sitk.ReadImage(str(tmp_path / "export" / f"{case}.nii.gz"))
        source = sitk.ReadImage(str(folder / "imagesTs" / f"{case}_0000.nii.gz"))
        assert exported.GetPixelID() == sitk.sitkFloat32
        assert exported.GetSize() == source.GetSize()
        np.testing.assert_allclose(exported.GetSpacing(), source.GetSpacing())
        np.testing.assert_allclose(exported.GetOrigin(), source.GetOrigin())
        with np.load(tmp_path / "ensemble" / f"{case}.npz") as data:
            np.testing.assert_array_equal(sitk.GetArrayFromImage(exported), data["probabilities"][0])


def test_2d_png_nnunet_exttrainer_set_by_hand_and_png_export(tmp_path):
    dataset_id, name = 972, "Dataset972_E2EChest"
    folder = _write_2d_dataset(tmp_path / "raw", name)
    env = _environment(tmp_path, nnunet_anomaly_startup_hook="0")  # as after `pip install --target`
    _plan_tiny(dataset_id, "2d", "2d_tiny", env)

    without_route = subprocess.run(
        [str(BIN / "nnUNetv2_train"), str(dataset_id), "2d_tiny", "0", "-tr", TRAINER, "-device", "cpu"],
        env={**env, "nnUNet_n_proc_DA": "0"}, capture_output=True, text=True, timeout=240)
    assert without_route.returncode != 0  # nothing of ours in nnU-Net's folder: only nnUNet_extTrainer finds it
    assert f"Could not find requested nnunet trainer {TRAINER}" in without_route.stdout + without_route.stderr

    env["nnUNet_extTrainer"] = ext_trainer_dir()
    log = _cli("nnUNetv2_train", dataset_id, "2d_tiny", 0, "-tr", TRAINER, "-device", "cpu",
               env={**env, "nnUNet_n_proc_DA": "0"})
    assert f"Using trainer '{TRAINER}' from: {ext_trainer_dir()}" in log
    _cli("nnUNetv2_predict", "-i", folder / "imagesTs", "-o", tmp_path / "pred", "-d", dataset_id, "-c", "2d_tiny",
         "-f", 0, "-tr", TRAINER, "--save_probabilities", "-npp", 0, "-nps", 0, "--disable_tta", "-device", "cpu",
         env=env)

    cases = [f"test_{i:03d}" for i in range(3)]
    read_png = lambda stem: skio.imread(f"{stem}.png")  # noqa: E731
    _check_maps(tmp_path / "pred", folder / "labelsTs", read_png, cases)

    _cli("nnunet_anomaly", "export", "-p", tmp_path / "pred", "-i", folder / "imagesTs", "-o", tmp_path / "export",
         "--no-progress", env=env)
    for case in cases:
        exported = skio.imread(tmp_path / "export" / f"{case}.png")
        assert exported.dtype == np.uint16 and exported.shape == (64, 64)
        with np.load(tmp_path / "pred" / f"{case}.npz") as data:
            expected = np.round(np.clip(data["probabilities"][0, 0], 0, 1).astype(np.float64) * 65535)
        np.testing.assert_array_equal(exported, expected.astype(np.uint16))

    # Longer training of a test-local variant (fold 4: smooth intensity change, the task closest to the
    # inserted blobs) must score the inserted anomalies higher than the rest of the image.
    variants = tmp_path / "variants"
    variants.mkdir()
    (variants / "e2e_quality_trainers.py").write_text(QUALITY_TRAINER_SOURCE)
    env["nnUNet_extTrainer"] = os.pathsep.join([ext_trainer_dir(), str(variants)])
    _cli("nnUNetv2_train", dataset_id, "2d_tiny", 4, "-tr", QUALITY_TRAINER, "-device", "cpu",
         env={**env, "nnUNet_n_proc_DA": "0"})
    _cli("nnUNetv2_predict", "-i", folder / "imagesTs", "-o", tmp_path / "quality", "-d", dataset_id, "-c",
         "2d_tiny", "-f", 4, "-tr", QUALITY_TRAINER, "--save_probabilities", "-npp", 0, "-nps", 0, "--disable_tta",
         "-device", "cpu", env=env)
    inside, outside = _check_maps(tmp_path / "quality", folder / "labelsTs", read_png, cases)
    assert inside > outside, f"mean score inside the inserted anomalies {inside:.4f} <= outside {outside:.4f}"
