"""``nnunet_anomaly export``: nnU-Net probability outputs -> anomaly-map files in the input's geometry.

``nnUNetv2_predict ... --save_probabilities`` writes, per case, ``{case}.npz`` whose ``probabilities``
array is the one-channel sigmoid anomaly map of an ``AnomalyTaskTrainer`` model, already resampled
back to the original image grid (nnU-Net reverts its cropping, resampling and transposition), plus a
thresholded segmentation we do not use. This module turns those arrays into files a challenge or a
viewer expects: one file per case, named like the input image without nnU-Net's ``_0000`` channel
suffix (``case_0000.nii.gz`` -> ``case.nii.gz``: the MOOD convention, where a prediction has the same
file name as the image it belongs to), values in [0, 1], with spacing, origin and direction copied
from the input image.

Formats: float32 NIfTI (or the input's own SimpleITK format) for 3D and 2D volumes, and 16-bit
grey PNG (``round(65535 * p)``) for PNG inputs or on request for any 2D map. nnU-Net's ``.pkl``
properties files are not read: geometry comes from the input image itself, so nothing is unpickled.
The maps are in the array order of the model's nnU-Net image reader (``image_reader_writer`` in the
``plans.json`` that ``nnUNetv2_predict`` writes next to them); :mod:`nnunet_anomaly.readers` undoes it,
so a ``NibabelIOWithReorient`` model's maps land in the file's own voxel order.
"""
from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from nnunet_anomaly._io import atomic_path

SITK_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")
PNG_ENDINGS = (".png",)
IMAGE_ENDINGS = SITK_ENDINGS + PNG_ENDINGS
FORMATS = ("auto", "nifti", "png")
PNG_MAX = 65535
_CHANNEL_SUFFIX = re.compile(r"_(\d{4})$")
_MAX_LISTED = 20


class ExportCase(NamedTuple):
    """One case to export: its id, the probability file, the geometry reference and the output name."""

    case: str
    probabilities: Path
    reference_image: Path
    output_name: str


def split_image_name(file_name: str) -> tuple[str, int | None, str] | None:
    """Split an image file name into (case id, channel or None, ending); None if the ending is unsupported.

    Examples
    --------
    >>> split_image_name("brain_012_0000.nii.gz")
    ('brain_012', 0, '.nii.gz')
    >>> split_image_name("00042.nii.gz")
    ('00042', None, '.nii.gz')
    >>> split_image_name("cxr_1_0001.png")
    ('cxr_1', 1, '.png')
    >>> split_image_name("notes.txt") is None
    True
    """
    lower = file_name.lower()
    for ending in IMAGE_ENDINGS:
        if lower.endswith(ending):
            stem = file_name[: -len(ending)]
            match = _CHANNEL_SUFFIX.search(stem)
            if match:
                return stem[: match.start()], int(match.group(1)), ending
            return stem, None, ending
    return None


def output_file_name(case: str, input_ending: str, file_format: str = "auto") -> str:
    """Output file name for a case: the input's name without the channel suffix, in the chosen format.

    Examples
    --------
    >>> output_file_name("case", ".nii.gz")
    'case.nii.gz'
    >>> output_file_name("cxr_7", ".png")
    'cxr_7.png'
    >>> output_file_name("cxr_7", ".png", "nifti")
    'cxr_7.nii.gz'
    >>> output_file_name("slice", ".nii.gz", "png")
    'slice.png'
    """
    if file_format not in FORMATS:
        raise ValueError(f"file_format must be one of {FORMATS}, got {file_format!r}")
    if file_format == "auto":
        return case + input_ending
    if file_format == "png":
        return case + ".png"
    return case + (input_ending if input_ending in (".nii.gz", ".nii") else ".nii.gz")


def to_png16(anomaly_map: np.ndarray) -> np.ndarray:
    """Map scores in [0, 1] to uint16 grey levels (0 -> 0, 1 -> 65535); values outside are clipped.

    Examples
    --------
    >>> to_png16(np.array([[0.0, 0.5, 1.0, 1.7]])).tolist()
    [[0, 32768, 65535, 65535]]
    """
    # float64: a float32 product can land on the wrong side of .5 and shift a grey level by one
    return np.round(np.clip(np.asarray(anomaly_map, dtype=np.float64), 0.0, 1.0) * PNG_MAX).astype(np.uint16)


def _list_problems(title: str, problems: Sequence[str]) -> str:
    shown = [f"  - {p}" for p in problems[:_MAX_LISTED]]
    if len(problems) > _MAX_LISTED:
        shown.append(f"  ... and {len(problems) - _MAX_LISTED} more")
    return "\n".join([f"{title} ({len(problems)}):", *shown])


def find_cases(predictions_dir, images_dir, *, file_format: str = "auto", allow_missing: bool = False) -> list[ExportCase]:
    """Pair every ``{case}.npz`` of `predictions_dir` with its input image in `images_dir`.

    The geometry reference is the case's channel ``_0000`` (or, for folders without nnU-Net's channel
    suffix, ``{case}{ending}``).

    Parameters
    ----------
    predictions_dir, images_dir : path
        ``nnUNetv2_predict -o`` folder (run with ``--save_probabilities``) and its ``-i`` folder.
    file_format : {"auto", "nifti", "png"}
        Decides the output names (see :func:`output_file_name`).
    allow_missing : bool
        If False (default) an input image without a prediction is an error (a challenge submission
        needs every case); if True such images are skipped.

    Raises
    ------
    FileNotFoundError
        A folder is missing, or holds no ``.npz`` / no images.
    ValueError
        Listing every prediction without an input image and (unless `allow_missing`) every input image
        without a prediction.
    """
    predictions_dir, images_dir = Path(predictions_dir), Path(images_dir)
    for name, folder in (("predictions", predictions_dir), ("images", images_dir)):
        if not folder.is_dir():
            raise FileNotFoundError(f"{name} folder {folder} does not exist or is not a folder")
    npz_files = {p.name[: -len(".npz")]: p for p in sorted(predictions_dir.glob("*.npz"))}
    if not npz_files:
        raise FileNotFoundError(
            f"no .npz probability files in {predictions_dir}; run nnUNetv2_predict with --save_probabilities")

    references: dict[str, tuple[int, Path, str]] = {}
    for path in sorted(images_dir.iterdir()):
        parts = split_image_name(path.name) if path.is_file() else None
        if parts is None:
            continue
        case, channel, ending = parts
        rank = -1 if channel is None else channel  # channel 0 wins; a bare name only when it has none
        if case not in references or rank < references[case][0]:
            references[case] = (rank, path, ending)
    if not references:
        raise FileNotFoundError(f"no input images ({', '.join(IMAGE_ENDINGS)}) in {images_dir}")

    without_image = sorted(set(npz_files) - set(references))
    without_prediction = sorted(set(references) - set(npz_files))
    problems = []
    if without_image:
        problems.append(_list_problems(f"predictions in {predictions_dir} without an input image in {images_dir}",
                                       without_image))
    if without_prediction and not allow_missing:
        problems.append(_list_problems(
            f"input images in {images_dir} without a prediction (.npz) in {predictions_dir}; "
            "use --allow-missing to export the others", without_prediction))
    if problems:
        raise ValueError("cannot export anomaly maps:\n" + "\n".join(problems))
    return [
        ExportCase(case, npz_files[case], references[case][1],
                   output_file_name(case, references[case][2], file_format))
        for case in sorted(npz_files)
    ]


def _npz_array_shape(path: Path, key: str = "probabilities") -> tuple[int, ...]:
    """Shape of one array in an ``.npz`` from its header only (no decompression of the data)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                return tuple(np.lib.format.read_array_header_1_0(stream)[0])
            if version == (2, 0):
                return tuple(np.lib.format.read_array_header_2_0(stream)[0])
    except KeyError:
        raise ValueError(f"{path} has no {key!r} array; is it an nnUNetv2_predict --save_probabilities output?") from None
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error})") from None
    with np.load(path) as data:  # unusual header version: read the array itself
        return tuple(data[key].shape)


def _reference_shape(path: Path, reader: str = "SimpleITKIO") -> tuple[int, ...]:
    """Array shape of the reference image as the model's nnU-Net `reader` reads it (numpy order; no channel axis).

    A SimpleITK vector image (what ``sitk.GetImageFromArray`` makes of a 4D array) keeps its
    components as the last axis, as ``sitk.GetArrayFromImage`` and nnU-Net's reader return it, so
    a 4D image is reported with its full shape.
    """
    from nnunet_anomaly.readers import array_shape

    try:
        shape = tuple(array_shape(path, reader))
        return shape + _vector_components(path, reader)
    except Exception as error:  # noqa: BLE001 -- any reader failure is a bad input file
        raise ValueError(f"cannot read image {path} ({type(error).__name__}: {error})") from None


def _vector_components(path: Path, reader: str) -> tuple[int, ...]:
    """``(n,)`` for a SimpleITK-read image with n > 1 components per voxel, else ``()`` (header only)."""
    if reader.startswith("Nibabel") or reader == "NaturalImage2DIO" or path.name.lower().endswith(".png"):
        return ()
    import SimpleITK as sitk

    info = sitk.ImageFileReader()
    info.SetFileName(str(path))
    info.ReadImageInformation()
    components = int(info.GetNumberOfComponents())
    return (components,) if components > 1 else ()


def _shape_text(shape: tuple[int, ...]) -> str:
    """A shape for a message, saying what a 4D (or higher) image is.

    Examples
    --------
    >>> _shape_text((5, 7, 6)), _shape_text((2, 38, 46, 38))
    ('(5, 7, 6)', '(2, 38, 46, 38) (a 4D image: several channels or volumes in one file)')
    """
    if len(shape) > 3:
        return f"{shape} (a {len(shape)}D image: several channels or volumes in one file)"
    return str(shape)


def _map_shape_for(probability_shape: tuple[int, ...], image_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The map's spatial shape if it fits the image (nnU-Net adds a leading 1 to 2D images), else None."""
    spatial = probability_shape[1:]
    if spatial == image_shape:
        return spatial
    if len(spatial) == len(image_shape) + 1 and spatial[0] == 1 and spatial[1:] == image_shape:
        return image_shape
    return None


def check_cases(cases: Sequence[ExportCase], reader: str = "SimpleITKIO") -> None:
    """Check every case's probability array against its input image before anything is written.

    Raises
    ------
    ValueError
        Listing every case whose array is not one channel, does not match the input's shape, or
        cannot become a PNG (``png`` format needs a 2D map).
    """
    from nnunet_anomaly._io import check_complete

    problems = []
    for case in cases:
        try:
            check_complete(case.probabilities)  # truncated files read as short data otherwise
            check_complete(case.reference_image)
            probability_shape = _npz_array_shape(case.probabilities)
            image_shape = _reference_shape(case.reference_image, reader)
        except ValueError as error:
            problems.append(f"{case.case}: {error}")
            continue
        if len(probability_shape) < 3 or probability_shape[0] != 1:
            problems.append(
                f"{case.case}: {case.probabilities.name} has shape {probability_shape}; expected one anomaly "
                "channel (1, *spatial) from an AnomalyTaskTrainer model")
            continue
        map_shape = _map_shape_for(probability_shape, image_shape)
        if map_shape is None:
            problems.append(
                f"{case.case}: map shape {probability_shape[1:]} does not match input image "
                f"{case.reference_image.name} shape {_shape_text(image_shape)}")
        elif case.output_name.endswith(".png") and sum(s > 1 for s in map_shape) > 2:
            problems.append(f"{case.case}: a {len(map_shape)}D map of shape {map_shape} cannot be a PNG; "
                            "use --format nifti")
    if problems:
        raise ValueError(_list_problems("cannot export anomaly maps; mismatched cases", problems))


def load_anomaly_map(npz_path, image_shape: Sequence[int]) -> np.ndarray:
    """Load ``probabilities`` from an nnU-Net ``.npz`` as a float32 map of `image_shape`, clipped to [0, 1].

    Raises
    ------
    ValueError
        If the array is not one channel of the image's shape or holds NaN/inf.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.npz"
    >>> np.savez_compressed(path, probabilities=np.array([[[[0.25, 1.0000001]]]], dtype=np.float32))
    >>> load_anomaly_map(path, (1, 2)).tolist()
    [[0.25, 1.0]]
    """
    from nnunet_anomaly._io import read_array

    npz_path = Path(npz_path)
    with np.load(npz_path) as data:
        if "probabilities" not in data:
            raise ValueError(f"{npz_path} has no 'probabilities' array")
    probabilities = read_array(npz_path, npz_key="probabilities")  # checked in full: a cut file is an error
    map_shape = _map_shape_for(tuple(probabilities.shape), tuple(image_shape))
    if probabilities.ndim < 3 or probabilities.shape[0] != 1 or map_shape is None:
        raise ValueError(f"{npz_path}: shape {probabilities.shape} is not one anomaly channel of shape {tuple(image_shape)}")
    anomaly_map = probabilities.reshape(map_shape).astype(np.float32)
    if not np.all(np.isfinite(anomaly_map)):
        raise ValueError(f"{npz_path} holds NaN or infinite scores")
    return np.clip(anomaly_map, 0.0, 1.0)


def write_anomaly_map(anomaly_map: np.ndarray, reference_image, output_path, reader: str = "SimpleITKIO") -> Path:
    """Write one map atomically, with the reference image's geometry; the format follows the file name.

    ``.png``: 16-bit grey (the map must be 2D after dropping size-1 axes); anything else: float32
    through SimpleITK with spacing, origin and direction copied from `reference_image` (a PNG reference
    has none, so the volume gets unit spacing).
    """
    reference_image, output_path = Path(reference_image), Path(output_path)
    if output_path.name.lower().endswith(".png"):
        from PIL import Image

        plane = np.squeeze(anomaly_map)
        if plane.ndim != 2:
            raise ValueError(f"{output_path}: a map of shape {anomaly_map.shape} cannot be a PNG")
        with atomic_path(output_path) as tmp:
            Image.fromarray(to_png16(plane)).save(tmp, format="PNG")
        return output_path

    from nnunet_anomaly.readers import write_like_reference

    # back from the model reader's array order to the reference's file order and geometry
    return write_like_reference(anomaly_map, reference_image, output_path, reader, dtype=np.float32)


#: how a map becomes one sample score (MOOD's sample-level task): the evaluation's aggregates, or the maximum
SAMPLE_AGGREGATES = ("mean", "percentile_75", "top_25_mean", "max")


def sample_score(anomaly_map: np.ndarray, aggregate: str = "mean") -> float:
    """One anomaly score for a whole case: an aggregate of its (clipped) map.

    ``mean`` is the paper's sample-wise score; ``percentile_75`` and ``top_25_mean`` are the
    reference's other two (see :func:`nnunet_anomaly.evaluation.aggregate_scores`); ``max`` is the
    highest voxel score.

    Examples
    --------
    >>> m = np.array([[0.0, 0.2], [0.4, 1.0]])
    >>> sample_score(m), sample_score(m, "max"), sample_score(m, "top_25_mean")
    (0.4, 1.0, 1.0)
    """
    if aggregate not in SAMPLE_AGGREGATES:
        raise ValueError(f"unknown sample aggregate {aggregate!r}; choose one of {', '.join(SAMPLE_AGGREGATES)}")
    if aggregate == "max":
        return float(np.max(anomaly_map))
    from nnunet_anomaly.evaluation import aggregate_scores

    return float(aggregate_scores(anomaly_map, aggregate))


def write_sample_score(value: float, output_path) -> Path:
    """Write one sample score as MOOD's sample-level task reads it: a text file holding one number."""
    from nnunet_anomaly._io import write_text

    return write_text(output_path, f"{float(value):.9g}\n")


def write_binary_mask(mask: np.ndarray, reference_image, output_path, reader: str = "SimpleITKIO") -> Path:
    """Write a 0/1 uint8 mask atomically with the reference image's geometry (PNG: 8-bit 0/1, like nnU-Net labels)."""
    reference_image, output_path = Path(reference_image), Path(output_path)
    mask = np.asarray(mask).astype(np.uint8)
    if output_path.name.lower().endswith(".png"):
        from PIL import Image

        plane = np.squeeze(mask)
        if plane.ndim != 2:
            raise ValueError(f"{output_path}: a mask of shape {mask.shape} cannot be a PNG")
        with atomic_path(output_path) as tmp:
            Image.fromarray(plane).save(tmp, format="PNG")
        return output_path
    from nnunet_anomaly.readers import write_like_reference

    return write_like_reference(mask, reference_image, output_path, reader, dtype=np.uint8)


def export_anomaly_maps(predictions_dir, images_dir, output_dir, *, file_format: str = "auto",
                        allow_missing: bool = False, progress: bool = True, sample_scores_dir=None,
                        sample_aggregate: str = "mean", masks_dir=None, threshold=None, plans_file=None,
                        reader: str | None = None) -> list[Path]:
    """Export every case of an ``nnUNetv2_predict --save_probabilities`` folder as an anomaly-map file.

    All cases are checked before the first file is written (missing images or predictions, channel
    count, shapes, files cut short), so a bad input never leaves a half-exported folder; each file is
    written atomically.

    Parameters
    ----------
    predictions_dir : path
        Folder with ``{case}.npz`` (and nnU-Net's ``{case}.pkl``, not needed here).
    images_dir : path
        The folder given to ``nnUNetv2_predict -i``: geometry and output names come from it.
    output_dir : path
        Created if needed; must differ from `images_dir` (inputs are never overwritten).
    file_format : {"auto", "nifti", "png"}
        ``auto``: the input's own format (float32 NIfTI for ``.nii.gz``, 16-bit PNG for ``.png``).
    allow_missing : bool
        Skip input images without a prediction instead of failing.
    progress : bool
        Show a progress bar.
    sample_scores_dir : path, optional
        Also write one sample score per case, ``<output name>.txt`` holding one number (MOOD's
        sample-level format: ``00042.nii.gz`` -> ``00042.nii.gz.txt``).
    sample_aggregate : {'mean', 'percentile_75', 'top_25_mean', 'max'}
        How a map becomes its sample score (:func:`sample_score`).
    masks_dir : path, optional
        Also write a binary mask per case (uint8, 1 where the score > `threshold`), named like the map.
    threshold : float or nnunet_anomaly.calibration.Threshold, optional
        The decision threshold for `masks_dir` (e.g. calibrated on healthy validation data).
    plans_file, reader : optional
        The maps are in the array order of the model's nnU-Net image reader (``image_reader_writer`` of
        its plans), which export undoes (see :mod:`nnunet_anomaly.readers`). By default it is read from the
        ``plans.json`` that ``nnUNetv2_predict`` writes into `predictions_dir`; give the model's
        ``plans.json`` (``plans_file``) or the reader's name (``reader``) for folders without one.

    Returns
    -------
    list of pathlib.Path
        The written map files, sorted by case.
    """
    from tqdm import tqdm

    output_dir = Path(output_dir)
    for folder in (output_dir, sample_scores_dir, masks_dir):
        if folder is not None and Path(folder).resolve() == Path(images_dir).resolve():
            raise ValueError(f"output folder {folder} is the input images folder; choose another folder "
                             "so the input images are never overwritten")
    if masks_dir is not None and threshold is None:
        raise ValueError("binary masks need a threshold: give --threshold T or --threshold-from MODEL_DIR")
    if sample_aggregate not in SAMPLE_AGGREGATES:
        raise ValueError(f"unknown sample aggregate {sample_aggregate!r}; choose one of {', '.join(SAMPLE_AGGREGATES)}")
    threshold_value = None if threshold is None else float(getattr(threshold, "value", threshold))
    cases = find_cases(predictions_dir, images_dir, file_format=file_format, allow_missing=allow_missing)
    from nnunet_anomaly.readers import reader_of_predictions

    reader = reader_of_predictions(predictions_dir, plans_file=plans_file, reader=reader,
                                   references=[c.reference_image for c in cases])
    check_cases(cases, reader)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for case in tqdm(cases, desc="export anomaly maps", unit="case", disable=not progress):
        anomaly_map = load_anomaly_map(case.probabilities, _reference_shape(case.reference_image, reader))
        written.append(write_anomaly_map(anomaly_map, case.reference_image, output_dir / case.output_name, reader))
        if sample_scores_dir is not None:
            write_sample_score(sample_score(anomaly_map, sample_aggregate),
                               Path(sample_scores_dir) / f"{case.output_name}.txt")
        if masks_dir is not None:
            write_binary_mask(anomaly_map > threshold_value, case.reference_image, Path(masks_dir) / case.output_name,
                              reader)
    return written


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Export nnUNetv2_predict --save_probabilities outputs ({case}.npz) as anomaly maps in [0, 1], one "
        "file per case named like its input image without the _0000 channel suffix (the MOOD convention), "
        "with the input image's spacing, origin and direction.")
    parser.add_argument("-p", "--predictions", required=True, type=Path,
                        help="nnUNetv2_predict -o folder, predicted with --save_probabilities")
    parser.add_argument("-i", "--images", required=True, type=Path,
                        help="the folder given to nnUNetv2_predict -i (geometry and names come from it)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if needed)")
    parser.add_argument("--format", choices=FORMATS, default="auto", dest="file_format",
                        help="auto (default): float32 NIfTI for NIfTI inputs, 16-bit PNG for PNG inputs; "
                             "nifti: always float32 NIfTI; png: 16-bit PNG (2D maps only)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="skip input images that have no prediction instead of failing")
    parser.add_argument("--sample-scores", type=Path, metavar="DIR",
                        help="also write one score per case as DIR/<map name>.txt (MOOD's sample-level format)")
    parser.add_argument("--sample-aggregate", choices=SAMPLE_AGGREGATES, default="mean",
                        help="how a map becomes its sample score (default: mean, the paper's sample-wise score)")
    parser.add_argument("--masks", type=Path, metavar="DIR",
                        help="also write a binary mask per case (score > threshold) to DIR; needs --threshold or "
                             "--threshold-from")
    from nnunet_anomaly.calibration import add_threshold_arguments

    add_threshold_arguments(parser, purpose="for --masks")
    from nnunet_anomaly.readers import SUPPORTED_READERS

    parser.add_argument("--plans", type=Path, metavar="PLANS_JSON", dest="plans_file",
                        help="the model's plans.json, when -p has none (nnUNetv2_ensemble outputs): its "
                             "image_reader_writer says the maps' array order")
    parser.add_argument("--reader", choices=list(SUPPORTED_READERS),
                        help="the model's nnU-Net image reader, instead of reading it from plans.json")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from nnunet_anomaly.calibration import threshold_from_args

    threshold = threshold_from_args(args)
    written = export_anomaly_maps(args.predictions, args.images, args.output, file_format=args.file_format,
                                  allow_missing=args.allow_missing, progress=not args.no_progress,
                                  sample_scores_dir=args.sample_scores, sample_aggregate=args.sample_aggregate,
                                  masks_dir=args.masks, threshold=threshold, plans_file=args.plans_file,
                                  reader=args.reader)
    print(f"wrote {len(written)} anomaly map(s) to {args.output}")
    if args.sample_scores is not None:
        print(f"wrote {len(written)} sample score(s) ({args.sample_aggregate}) to {args.sample_scores}")
    if args.masks is not None:
        print(f"wrote {len(written)} binary mask(s) (score > {threshold.value:.6g}, {threshold.rule}"
              f"{'' if threshold.rate is None else f' at {threshold.rate * 100:g}% of healthy validation voxels'}) "
              f"to {args.masks}")
    return 0
