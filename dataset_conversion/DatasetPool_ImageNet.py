"""Convert ImageNet (or any folder of natural images) to an external patch pool for chest X-rays.

Input: any folder; every ``.jpg/.jpeg/.png/.bmp/.tif/.tiff/.webp`` below it counts (so the ImageNet
``train/`` tree of class folders works as is). With ``--num-images N`` a seeded random choice of N
images is converted (the reference: 10 000 ImageNet training images, seed 123456789).

Per image, the reference's ``imagenet_preproc.py``: grey, anti-aliased resize to 512^2, histogram
equalisation (256 bins), [-1, 1], anti-aliased resize to 256^2
(:func:`nnunet_anomaly.conversion.natural_image_to_unit_range`).

Output, in the ``FolderPool`` layout: ``<output>/images/<name>.png``, 8-bit grey. The quantisation
to 256 levels loses nothing that matters: the equalised image has 256 levels to begin with, and
``FolderPool`` maps PNGs back to [-1, 1] (grey, equalised) when it loads them. No ``masks/``: patches
may come from anywhere in a natural image.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from nnunet_anomaly._io import atomic_path
from nnunet_anomaly.conversion import Case, run_conversion, resolve_output_root, natural_image_to_unit_range, run_cases

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULT_SEED = 123456789

DEFAULT_FOLDER_NAME = "ExternalPool_ImageNet"  # under $nnUNet_raw when --output is not given

__all__ = ["find_images", "choose_images", "convert_image", "convert", "main"]


def find_images(root: str | Path) -> list[Path]:
    """Every natural-image file under `root`, sorted (so a seeded choice is reproducible)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image input folder does not exist: {root}")
    images = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return images


def choose_images(images: list[Path], num_images: int | None, seed: int) -> list[Path]:
    """A seeded choice of `num_images` without replacement (all of them if None), in file order.

    Examples
    --------
    >>> paths = [Path(f"{i}.png") for i in range(10)]
    >>> [p.name for p in choose_images(paths, 3, seed=0)] == [p.name for p in choose_images(paths, 3, seed=0)]
    True
    """
    if num_images is None or num_images >= len(images):
        return list(images)
    if num_images < 1:
        raise ValueError(f"--num-images must be >= 1, got {num_images}")
    chosen = np.random.default_rng(seed).choice(len(images), size=num_images, replace=False)
    return [images[i] for i in sorted(chosen)]


def convert_image(*, input_path: str, output_path: str, size: int = 256) -> None:
    """Grey, equalise, [-1, 1], resize; written as an 8-bit PNG (0 <-> -1, 255 <-> +1)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(input_path)
    if not path.is_file():
        raise FileNotFoundError(f"missing image file: {path}")
    try:
        with Image.open(path) as handle:
            array = np.asarray(handle.convert("RGB") if handle.mode not in ("L", "I;16", "I", "F") else handle)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    try:
        unit = natural_image_to_unit_range(array, size=size)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    grey8 = np.clip(np.round((unit + 1.0) * 127.5), 0, 255).astype(np.uint8)
    with atomic_path(output_path) as tmp:
        Image.fromarray(grey8, mode="L").save(tmp, format="PNG")


def convert(input_root, output_folder, *, num_images: int | None = None, seed: int = DEFAULT_SEED,
            size: int = 256, num_processes: int = 1):
    """Convert the chosen images; return ``(RunSummary, output folder)``. Resumable."""
    root = Path(input_root)
    output_folder = Path(output_folder)
    cases, used = [], set()
    for path in choose_images(find_images(root), num_images, seed):
        # the file stem is unique in ImageNet; elsewhere fall back to the relative path
        name = path.stem if path.stem not in used else "__".join(path.relative_to(root).with_suffix("").parts)
        used.add(name)
        out = output_folder / "images" / f"{name}.png"
        cases.append(Case(name, (out,), convert_image, dict(input_path=str(path), output_path=str(out), size=size)))
    return run_cases(cases, num_processes, desc="image pool"), output_folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="DatasetPool_ImageNet", description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--input", required=True, help="folder of natural images (e.g. ImageNet train/)")
    parser.add_argument("-o", "--output", default=None,
                        help="pool folder to write (images/); default: $nnUNet_raw/ExternalPool_ImageNet")
    parser.add_argument("-np", "--num-processes", type=int, default=1, dest="num_processes")
    parser.add_argument("--num-images", type=int, default=None, help="seeded random subset size (default: all; "
                        "the paper used 10000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(args.input, args.output or resolve_output_root(None) / DEFAULT_FOLDER_NAME,
                                          num_images=args.num_images, seed=args.seed, size=args.size,
                                          num_processes=args.num_processes))


if __name__ == "__main__":
    sys.exit(main())
