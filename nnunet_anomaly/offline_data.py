"""Real anatomy that installs with pip and loads with no network: a brain MRI, a chest radiograph and
a pool of natural images.

These feed the task montage (``nnunet_anomaly show-tasks``), the offline demo dataset and the
integration tests. Nothing here downloads: every image comes from files bundled inside an installed
package (nilearn, pydicom-data, scikit-image). nilearn and pydicom-data are optional dependencies;
``pip install 'nnunet-anomaly[demo]'`` installs them.

Every loader caches its result (``functools.lru_cache``) and returns fresh copies, so a caller may
modify what it gets without changing what the next caller sees.

=========================  ==========================================================================
function                   content
=========================  ==========================================================================
:func:`mni152_brain`       MNI152 2009a symmetric T1 template (population average of 152 healthy
                           adults), skull-stripped, z-scored inside the brain mask; 3D.
:func:`mni152_tissue_maps` the same template's grey- and white-matter probability maps, z-scored
                           inside the brain mask: real brain data in another "contrast".
:func:`chest_radiograph`   one real computed-radiography chest PA (``RG1_UNCR.dcm``), preprocessed
                           like VinDr-CXR in the paper; 2D. Not certified healthy.
:func:`natural_images`     scikit-image's bundled public-domain/CC0 photographs and textures, grey
                           and histogram-equalised: an external pool for inter-dataset blending.
=========================  ==========================================================================
"""
from __future__ import annotations

import functools
import importlib

import numpy as np

__all__ = ["mni152_brain", "mni152_tissue_maps", "chest_radiograph", "natural_images", "NATURAL_IMAGE_NAMES"]

_INSTALL_HINT = "install the optional demo dependencies with: pip install 'nnunet-anomaly[demo]'"

#: The scikit-image images used by :func:`natural_images`, in order. Each one ships inside the
#: scikit-image wheel (no download) and its docstring states public domain, CC0 or "no known copyright
#: restrictions". ``moon`` is left out because its licence is not stated.
NATURAL_IMAGE_NAMES = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "rocket",
)

#: Real computed-radiography chest PA in pydicom-data (NEMA WG04 test set, MIT): MONOCHROME1, 15 bit,
#: 1955 x 1841 pixels.
CHEST_RADIOGRAPH_FILE = "RG1_UNCR.dcm"


def _require(module: str, needed_for: str):
    """Import an optional dependency or raise an ImportError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        raise ImportError(f"{needed_for} needs the optional package {package!r}; {_INSTALL_HINT}") from error


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}")
    return int(value)


def _read_only(array: np.ndarray) -> np.ndarray:
    # Cached arrays are frozen so that a bug that forgets to copy fails loudly instead of silently
    # changing every later result.
    array.setflags(write=False)
    return array


def _zscore_inside(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Z-score `volume` with the mean and standard deviation inside `mask`; 0 outside (float32)."""
    inside = volume[mask]
    out = np.zeros(volume.shape, dtype=np.float32)
    out[mask] = (inside - inside.mean()) / inside.std()
    return out


def _rescale_to_unit_range(image: np.ndarray) -> np.ndarray:
    """Min-max rescale to exactly [-1, 1] (float32)."""
    low, high = float(image.min()), float(image.max())
    return (2.0 * (image - low) / (high - low) - 1.0).astype(np.float32)


def _central_square(image: np.ndarray) -> np.ndarray:
    """Crop the two spatial axes of a 2D image centrally to a square of the shorter side."""
    rows, cols = image.shape[:2]
    side = min(rows, cols)
    top, left = (rows - side) // 2, (cols - side) // 2
    return image[top : top + side, left : left + side]


# --------------------------------------------------------------------------------------------- brain


@functools.lru_cache(maxsize=4)
def _mni152_cached(resolution_mm: int):
    datasets = _require("nilearn.datasets", "the MNI152 brain")
    # load_mni152_* read the template files bundled inside the nilearn package (resolution 1 and 2 mm
    # directly, other resolutions by resampling those); nothing is fetched.
    template = datasets.load_mni152_template(resolution=resolution_mm)
    brain_mask = np.asarray(datasets.load_mni152_brain_mask(resolution=resolution_mm).get_fdata()) > 0
    t1 = np.asarray(template.get_fdata(), dtype=np.float64)
    spacing = tuple(float(z) for z in template.header.get_zooms()[:3])
    return _read_only(_zscore_inside(t1, brain_mask)), _read_only(brain_mask), spacing


@functools.lru_cache(maxsize=4)
def _mni152_tissue_cached(resolution_mm: int):
    datasets = _require("nilearn.datasets", "the MNI152 tissue maps")
    _, brain_mask, _ = _mni152_cached(resolution_mm)
    grey = np.asarray(datasets.load_mni152_gm_template(resolution=resolution_mm).get_fdata(), dtype=np.float64)
    white = np.asarray(datasets.load_mni152_wm_template(resolution=resolution_mm).get_fdata(), dtype=np.float64)
    return _read_only(_zscore_inside(grey, brain_mask)), _read_only(_zscore_inside(white, brain_mask))


def mni152_brain(resolution_mm: int = 2) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """The MNI152 2009a symmetric T1 brain template, z-scored inside the brain.

    Parameters
    ----------
    resolution_mm : int
        Isotropic voxel size in millimetres. 1 and 2 are the files bundled with nilearn
        (197 x 233 x 189 and 99 x 117 x 95 voxels); other values are resampled from them by nilearn
        (no download), e.g. 4 gives a small 50 x 59 x 48 volume for fast tests.

    Returns
    -------
    image : ndarray of float32, shape (X, Y, Z)
        The skull-stripped T1 template, z-scored with the mean and standard deviation inside
        `brain_mask` (0 outside). Axis order is nibabel's array order: axis 0 runs from the subject's
        left to right (x), axis 1 from posterior to anterior (y), axis 2 from inferior to superior (z),
        as the template's RAS+ affine says.
    brain_mask : ndarray of bool, shape (X, Y, Z)
        nilearn's MNI152 brain mask at the same resolution.
    spacing : tuple of 3 float
        Voxel size in millimetres in the same (x, y, z) axis order.

    Raises
    ------
    ImportError
        If nilearn is not installed (the message says how to install it).

    Notes
    -----
    A population average of 152 healthy adults: smooth, symmetric, and one volume only. Enough for
    demonstrations, tests and a synthetic-anomaly training pipeline; not a training cohort.

    Examples
    --------
    >>> image, brain_mask, spacing = mni152_brain(4)
    >>> image.shape, image.dtype, brain_mask.dtype, spacing
    ((50, 59, 48), dtype('float32'), dtype('bool'), (4.0, 4.0, 4.0))
    >>> bool(np.all(image[~brain_mask] == 0)), round(float(image[brain_mask].std()), 3)
    (True, 1.0)
    """
    resolution_mm = _check_positive_int(resolution_mm, "resolution_mm")
    image, brain_mask, spacing = _mni152_cached(resolution_mm)
    return image.copy(), brain_mask.copy(), spacing


def mni152_tissue_maps(resolution_mm: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 template's grey- and white-matter probability maps, z-scored inside the brain.

    Real brain data that looks like another MR contrast (grey matter bright in one, white matter in
    the other), on the same grid as :func:`mni152_brain`: a defensible in-domain-but-different
    external pool for 3D inter-dataset blending when no other real volume installs offline.

    Parameters
    ----------
    resolution_mm : int
        As in :func:`mni152_brain`.

    Returns
    -------
    grey_matter, white_matter : ndarray of float32, shape (X, Y, Z)
        Each z-scored inside the brain mask of :func:`mni152_brain` (0 outside).

    Examples
    --------
    >>> grey, white = mni152_tissue_maps(4)
    >>> grey.shape == white.shape == mni152_brain(4)[0].shape
    True
    """
    resolution_mm = _check_positive_int(resolution_mm, "resolution_mm")
    grey, white = _mni152_tissue_cached(resolution_mm)
    return grey.copy(), white.copy()


# ------------------------------------------------------------------------------------- chest X-ray


def _first_value(value) -> float:
    # WindowCenter/WindowWidth may be multi-valued (several VOI windows); the first is the default.
    try:
        return float(value[0])
    except TypeError:
        return float(value)


@functools.lru_cache(maxsize=4)
def _chest_radiograph_cached(size: int) -> np.ndarray:
    pydicom_data = _require("pydicom.data", "the chest radiograph")
    import pydicom
    from skimage import exposure, transform

    # download=False: pydicom would otherwise fetch a missing test file from the internet.
    path = pydicom_data.get_testdata_file(CHEST_RADIOGRAPH_FILE, download=False)
    if path is None:
        raise ImportError(
            f"the chest radiograph needs {CHEST_RADIOGRAPH_FILE} from the optional package 'pydicom-data'; {_INSTALL_HINT}"
        )
    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array.astype(np.float64)

    # VinDr-CXR preprocessing, as the reference does it: clip to the stored VOI window, invert
    # MONOCHROME1 (so bone is bright and air/lung dark), equalise the histogram, rescale to [-1, 1].
    if "WindowCenter" in dataset and "WindowWidth" in dataset:
        centre, width = _first_value(dataset.WindowCenter), _first_value(dataset.WindowWidth)
        pixels = np.clip(pixels, centre - width / 2, centre + width / 2)
    if dataset.PhotometricInterpretation == "MONOCHROME1":
        pixels = pixels.max() + pixels.min() - pixels
    # Crop centrally to a square instead of padding: a pad would add a flat border the anomaly
    # placement could land on; this radiograph (1955 x 1841) loses 57 rows at the top and bottom.
    pixels = _central_square(pixels)
    equalised = exposure.equalize_hist(pixels, nbins=256)
    resized = transform.resize(equalised, (size, size), order=3, anti_aliasing=True, mode="edge")
    return _read_only(_rescale_to_unit_range(resized))


def chest_radiograph(size: int = 256) -> np.ndarray:
    """A real chest radiograph (PA), preprocessed like VinDr-CXR in the paper.

    The image is pydicom-data's ``RG1_UNCR.dcm`` (computed radiography, MONOCHROME1, 15 bit,
    1955 x 1841). Steps: clip to the DICOM window (centre +- width / 2), invert MONOCHROME1 so that
    bone is bright and lung dark, crop centrally to a square, equalise the histogram (256 bins),
    resize anti-aliased (bicubic) to `size` x `size`, min-max rescale to [-1, 1].

    Parameters
    ----------
    size : int
        Output side length in pixels.

    Returns
    -------
    ndarray of float32, shape (size, size)
        Values in [-1, 1] (both ends reached). Row 0 is the top of the image (the neck).

    Raises
    ------
    ImportError
        If pydicom or pydicom-data is not installed (the message says how to install it).

    Notes
    -----
    A single radiograph, not certified healthy: for demonstrations and tests, not for training.

    Examples
    --------
    >>> cxr = chest_radiograph(64)
    >>> cxr.shape, cxr.dtype, float(cxr.min()), float(cxr.max())
    ((64, 64), dtype('float32'), -1.0, 1.0)
    """
    size = _check_positive_int(size, "size")
    return _chest_radiograph_cached(size).copy()


# ---------------------------------------------------------------------------------- natural images


@functools.lru_cache(maxsize=4)
def _natural_images_cached(size: int) -> tuple[np.ndarray, ...]:
    from skimage import color, data, exposure, transform

    images = []
    for name in NATURAL_IMAGE_NAMES:
        image = np.asarray(getattr(data, name)())
        if image.ndim == 3:
            # RGBA logos and RGB photographs alike become one luminance channel.
            image = color.rgb2gray(image[..., :3])
        image = _central_square(image.astype(np.float64))
        resized = transform.resize(image, (size, size), order=3, anti_aliasing=True, mode="edge")
        # As the reference does for ImageNet: grey, histogram-equalised (256 bins), scaled to [-1, 1].
        equalised = exposure.equalize_hist(resized, nbins=256)
        images.append(_read_only(_rescale_to_unit_range(equalised)))
    return tuple(images)


def natural_images(size: int = 256) -> list[np.ndarray]:
    """scikit-image's bundled public-domain/CC0 images: grey, histogram-equalised, in [-1, 1].

    The reference blends ImageNet patches into medical images for its inter-dataset task; these
    twelve photographs and textures (:data:`NATURAL_IMAGE_NAMES`) play that part offline. Each image
    is converted to grey, cropped centrally to a square, resized anti-aliased (bicubic) to `size` x
    `size`, histogram-equalised with 256 bins and min-max rescaled to [-1, 1].

    Parameters
    ----------
    size : int
        Output side length in pixels.

    Returns
    -------
    list of ndarray of float32, shape (size, size)
        One image per name in :data:`NATURAL_IMAGE_NAMES`, in that order.

    Examples
    --------
    >>> images = natural_images(32)
    >>> len(images) == len(NATURAL_IMAGE_NAMES), images[0].shape, images[0].dtype
    (True, (32, 32), dtype('float32'))
    >>> all(float(image.min()) == -1.0 and float(image.max()) == 1.0 for image in images)
    True
    """
    size = _check_positive_int(size, "size")
    return [image.copy() for image in _natural_images_cached(size)]
