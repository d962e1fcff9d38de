"""Convert ImageNet (or any folder of natural images) to an external patch pool for chest X-rays.

Input: an image folder laid out like ImageNet's ``train/`` (one sub-folder per class) or a flat folder
of images; the extensions torchvision's ``ImageFolder`` reads count (``.jpg .jpeg .png .ppm .bmp .pgm
.tif .tiff .webp``, any case).

Selection, as the reference (``imagenet_preproc.py``): the images are listed in torchvision
``ImageFolder`` order (class folders sorted, files sorted within each), and
``np.random.seed(123456789); np.random.choice(n, min(10000, n), replace=False)`` picks the subset
(legacy ``RandomState``). For ImageNet's training folder this is the reference's own selection, the
same files; for another layout it is the same rule on that folder's listing. ``--num-images`` sets the
subset size (the paper: 10000); without it every image is converted.

Per image, the reference's preprocessing (:func:`nnunet_anomaly.conversion.natural_image_to_unit_range`):
RGB, torchvision's grey (ITU-R 601-2 luma), bilinear anti-aliased resize to 512^2, histogram
equalisation (256 bins), ``2 x - 1``, skimage's anti-aliased linear resize to 256^2.

Output, in the ``FolderPool`` layout: ``<output>/images/<name>.npy`` (float32, the values above, no
rounding) and ``<output>/pool.json`` saying ``"normalise": "none"``, so ``FolderPool`` hands the
patches to the blending task as stored, as the reference does. No ``masks/``: patches may come from
anywhere in a natural image.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from nnunet_anomaly._io import atomic_path, write_json
from nnunet_anomaly.conversion import (Case, check_conversion_options, natural_image_to_unit_range, resolve_output_root,
                                       run_cases, run_conversion)

#: torchvision's IMG_EXTENSIONS, which the reference's ImageFolder-based ImageNet dataset reads
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DEFAULT_SEED = 123456789
PAPER_NUM_IMAGES = 10000

DEFAULT_FOLDER_NAME = "ExternalPool_ImageNet"  # under $nnUNet_raw when --output is not given

__all__ = ["find_images", "choose_images", "convert_image", "convert", "main"]


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def find_images(root: str | Path) -> list[Path]:
    """Every image under `root` in torchvision ``ImageFolder`` order (the order the reference indexes).

    With class sub-folders: the sub-folders sorted by name, and within each, ``sorted(os.walk(...))``
    with files sorted (``torchvision.datasets.folder.make_dataset``); files directly in `root` are then
    not images of any class and are skipped, as ``ImageFolder`` skips them. Without sub-folders: the
    sorted files of `root`.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image input folder does not exist: {root}")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    images: list[Path] = []
    if classes:
        for name in classes:
            for folder, _, files in sorted(os.walk(root / name, followlinks=True)):
                images += [Path(folder) / f for f in sorted(files) if _is_image(f)]
    else:
        images = [root / f for f in sorted(os.listdir(root)) if _is_image(f) and (root / f).is_file()]
    if not images:
        raise FileNotFoundError(f"no images ({' '.join(IMAGE_SUFFIXES)}) under {root}")
    return images


def choose_images(images: list[Path], num_images: int | None, seed: int) -> list[Path]:
    """The reference's choice: ``RandomState(seed).choice(n, min(num_images, n), replace=False)``, in that order.

    ``np.random.seed(s); np.random.choice(...)`` draws from the same legacy generator, so the same
    listing gives the reference's images. None converts every image (in listing order).

    Examples
    --------
    >>> paths = [Path(f"{i}.png") for i in range(10)]
    >>> [p.name for p in choose_images(paths, 3, seed=123456789)] == [
    ...     paths[i].name for i in np.random.RandomState(123456789).choice(10, 3, replace=False)]
    True
    """
    if num_images is None:
        return list(images)
    if num_images < 1:
        raise ValueError(f"--num-images must be >= 1, got {num_images}")
    chosen = np.random.RandomState(seed).choice(len(images), min(num_images, len(images)), replace=False)
    return [images[i] for i in chosen]


def convert_image(*, input_path: str, output_path: str, size: int = 256) -> None:
    """Preprocess one image as the reference does; write it as a float32 ``.npy`` (values in [-1, 1])."""
    from PIL import Image

    from nnunet_anomaly._io import check_complete

    path = Path(input_path)
    if not path.is_file():
        raise FileNotFoundError(f"missing image file: {path}")
    check_complete(path)
    try:
        with Image.open(path) as handle:
            array = np.asarray(handle.convert("RGB"))  # torchvision's pil_loader
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for cut or foreign files
        raise ValueError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
    try:
        unit = natural_image_to_unit_range(array, size=size)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    with atomic_path(output_path) as tmp:
        np.save(tmp, unit.astype(np.float32))


def convert(input_root, output_folder, *, num_images: int | None = None, seed: int = DEFAULT_SEED,
            size: int = 256, num_processes: int = 1, overwrite: bool = False):
    """Convert the chosen images; return ``(RunSummary, output folder)``. Resumable; see ``--overwrite``."""
    root = Path(input_root)
    output_folder = Path(output_folder)
    cases, used = [], set()
    for path in choose_images(find_images(root), num_images, seed):
        # the file stem is unique in ImageNet; elsewhere fall back to the relative path
        name = path.stem if path.stem not in used else "__".join(path.relative_to(root).with_suffix("").parts)
        used.add(name)
        out = output_folder / "images" / f"{name}.npy"
        cases.append(Case(name, (out,), convert_image, dict(input_path=str(path), output_path=str(out), size=size)))
    check_conversion_options(output_folder, "DatasetPool_ImageNet", {"num_images": num_images, "seed": seed,
                                                                      "size": size}, overwrite=overwrite)
    write_json(output_folder / "pool.json", {"normalise": "none", "description": (
        "natural images preprocessed as the reference's imagenet_preproc.py (grey, 512 bilinear, equalised, "
        "2x-1, 256): values used as stored")})
    summary = run_cases(cases, num_processes, desc="image pool", overwrite=overwrite, remove_orphans=overwrite)
    return summary, output_folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="DatasetPool_ImageNet", description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--input", required=True, help="folder of natural images (e.g. ImageNet train/)")
    parser.add_argument("-o", "--output", default=None,
                        help="pool folder to write (images/); default: $nnUNet_raw/ExternalPool_ImageNet")
    parser.add_argument("-np", "--num-processes", type=int, default=1, dest="num_processes")
    parser.add_argument("--num-images", type=int, default=None, help="size of the seeded random subset (default: "
                        f"all; the paper: {PAPER_NUM_IMAGES})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the subset (the paper: {DEFAULT_SEED})")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--overwrite", action="store_true", help="convert every image again and delete files no "
                        "image produces any more (needed to re-run with other options)")
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(args.input, args.output or resolve_output_root(None) / DEFAULT_FOLDER_NAME,
                                          num_images=args.num_images, seed=args.seed, size=args.size,
                                          num_processes=args.num_processes, overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
