"""The five synthetic tasks applied to the demo's held-out healthy test images."""
from __future__ import annotations

from pathlib import Path

from nnunet_anomaly._io import atomic_path, read_image

def build_synthetic_test_set(dataset_folder, output_folder, *, cases_per_task: int = 2, seed: int = 0,
                             images_folder: str = "imagesTs") -> list[dict]:
    """Apply each synthetic task to the held-out healthy test images of the demo set (3D or 2D).

    The healthy test images (``imagesTs/test_healthy_*``) were never seen in training, so this is the
    paper's structured validation on held-out images, for every task, usable with any model (the
    fold models and their ensemble). Intra-dataset blending draws from the *other* held-out healthy
    images; inter-dataset blending from the demo set's external pool.

    Writes ``output_folder/imagesTs/{task}_{nnn}_0000.nii.gz`` and ``output_folder/labelsTs/{task}_{nnn}.nii.gz``
    (the anomaly mask; nnU-Net naming, the geometry of the source image) and returns one record per case.

    2D images (the chest X-ray demo, whose healthy test images are in ``images_folder="imagesTs_imagelevel"``) get
    the chest X-ray recipe (``TaskOptions.cxr()``), the whole image as foreground (as the reference) and,
    without an ``external_pool/``, the trainers' built-in 2D pool (scikit-image's natural images).

    Raises
    ------
    FileNotFoundError
        If the dataset has no healthy test images.
    """
    import numpy as np
    import SimpleITK as sitk

    from nnunet_anomaly.pools import ArrayPool, FolderPool
    from nnunet_anomaly.tasks import TASK_NAMES, PlacementError, TaskOptions, apply_tasks

    dataset_folder, output_folder = Path(dataset_folder), Path(output_folder)
    healthy = sorted((dataset_folder / images_folder).glob("test_healthy_*_0000.nii.gz"))
    if not healthy:
        raise FileNotFoundError(f"{dataset_folder / images_folder}: no test_healthy_*_0000.nii.gz images")
    images, brains, references = [], [], []
    for path in healthy:
        reference = read_image(path)
        case = path.name[: -len("_0000.nii.gz")]
        brain_path = dataset_folder / "brainmasksTs" / f"{case}.nii.gz"
        image = sitk.GetArrayFromImage(reference).astype(np.float32)
        if brain_path.is_file():
            brain = sitk.GetArrayFromImage(read_image(brain_path)) > 0
        else:  # the demo's skull-stripped brains: non-zero; a radiograph: all of it
            brain = image != 0 if image.ndim == 3 else np.ones(image.shape, bool)
        images.append(image)
        brains.append(brain)
        references.append(reference)
    if (dataset_folder / "external_pool").is_dir() or images[0].ndim == 3:
        inter_pool = FolderPool(dataset_folder / "external_pool")
    else:  # what the trainers draw from in 2D without a configured pool (nnunet_anomaly.nnunet.sources)
        from nnunet_anomaly.offline_data import natural_images

        inter_pool = ArrayPool([image[None].astype(np.float32) for image in natural_images()])
    anatomy = _test_anatomies(dataset_folder)
    options = TaskOptions.brain() if images[0].ndim == 3 else TaskOptions.cxr()
    records = []
    for task_index, task in enumerate(TASK_NAMES):
        for k in range(cases_per_task):
            source = k % len(images)
            others = [images[i][None] for i in range(len(images)) if i != source] or [images[source][None]]
            rng = np.random.default_rng([seed, task_index, k])
            try:
                result = apply_tasks(images[source][None], [task], rng, foreground=brains[source],
                                     intra_pool=ArrayPool(others), inter_pool=inter_pool, options=options)
            except PlacementError as error:
                records.append({"case": f"{task}_{k:03d}", "task": task, "skipped": str(error)})
                continue
            name = f"{task}_{k:03d}"
            for array, path in ((result.mask.astype(np.uint8), output_folder / "labelsTs" / f"{name}.nii.gz"),
                                (result.image[0].astype(np.float32), output_folder / "imagesTs" / f"{name}_0000.nii.gz")):
                written = sitk.GetImageFromArray(array)
                written.CopyInformation(references[source])
                with atomic_path(path) as tmp:
                    sitk.WriteImage(written, str(tmp), True)
            records.append({"case": name, "task": task, "source_image": healthy[source].name,
                            **anatomy.get(healthy[source].name[: -len("_0000.nii.gz")], {}),
                            "n_anomalies": int(result.n_anomalies), "anomalous_voxels": int(result.mask.sum())})
    return records


def _test_anatomies(dataset_folder: Path) -> dict:
    """``{case: {"anatomy", "seen"}}`` from the dataset's ``test_cases.json`` (empty without it)."""
    from nnunet_anomaly._io import read_json

    path = Path(dataset_folder) / "test_cases.json"
    if not path.is_file():
        return {}
    return {case: {k: v for k, v in record.items() if k in ("anatomy", "seen")} for case, record in read_json(path).items()}
