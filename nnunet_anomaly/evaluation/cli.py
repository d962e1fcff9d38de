"""``nnunet_anomaly evaluate``: score anomaly maps against ground-truth masks; JSON, table, CSV, figures.

Example::

    nnunet_anomaly evaluate -p pred_fold0 pred_fold1 -g labelsTs -o eval --images imagesTs --baselines
"""
from __future__ import annotations

import argparse

from nnunet_anomaly.calibration import add_threshold_arguments

from ._evaluate import PRECISIONS
from ._scales import AGGREGATES


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--predictions", nargs="+", required=True, metavar="PRED_DIR",
                        help="folder(s) of anomaly maps (nnU-Net .npz probabilities, .npy, NIfTI or PNG); "
                             "several folders are scored each and their probabilities averaged into an ensemble "
                             "(nnUNetv2_predict -f 0 1 2 ... averages logits instead: a different model)")
    parser.add_argument("-g", "--ground-truth", required=True, metavar="GT_DIR",
                        help="folder of ground-truth masks named like the predictions (non-zero = anomalous)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                        help="output folder: results.json, table.md, per_case.csv, figures/*.png")
    parser.add_argument("--images", metavar="IMG_DIR", help="test images (case_0000.*) for overlays and --baselines")
    parser.add_argument("--setting", choices=("brain", "cxr"), default="brain",
                        help="brain: slice-wise + pixel-wise (3D); cxr: sample-wise + pixel-wise (default: brain)")
    parser.add_argument("--names", nargs="+", metavar="NAME", help="one display name per prediction folder")
    parser.add_argument("--baselines", action="store_true",
                        help="also score seeded random maps and the image intensity (needs --images)")
    parser.add_argument("--foreground", default="auto", metavar="MASK_DIR",
                        help="masks for a second set of pixel- and slice-wise numbers inside them, reported beside "
                             "the paper's (which score every voxel); 'auto' (default): brainmasksTs beside labelsTs "
                             "if present; 'none': no masked numbers")
    parser.add_argument("--canvas", nargs="+", default=["auto"], metavar="SIZE",
                        help="pad every case to a canvas before scoring, as the reference pads brains to 80 112 80: "
                             "'auto' (default: the paper's canvas for converted brain test sets, which have "
                             "crop_info/ beside labelsTs), 'paper', 'none', or the sizes (Z Y X)")
    parser.add_argument("--precision", choices=PRECISIONS, default="exact",
                        help="exact (default): rank the scores as they are; float16: round them first, as the "
                             "MOOD challenge reads maps (for the MOOD protocol only)")
    add_threshold_arguments(parser, purpose="the report then gives the voxel-level false-positive rate on the "
                                            "healthy cases and the sensitivity at it")
    parser.add_argument("--aggregate", choices=AGGREGATES, default="mean",
                        help="slice/sample score shown in the table (all three are in the JSON; default: mean)")
    parser.add_argument("--chunk-size", type=int, default=20, help="cases per chunk of the paper's pixel AP (20)")
    parser.add_argument("--repeats", type=int, default=10, help="orderings of the paper's pixel AP (10)")
    parser.add_argument("--cases", nargs="+", metavar="CASE", help="cases to draw in the overlays (default: random)")
    parser.add_argument("--n-figure-cases", type=int, default=4, help="random cases to draw when --cases is not given")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline and the drawn cases")
    parser.add_argument("--test-set", help="test-set name in the table (default: DatasetXXX_Name for .../labelsTs, else the folder's name)")
    parser.add_argument("--subset", action="store_true",
                        help="score only the ground-truth cases that every prediction folder has (part of a test set, "
                             "like nnU-Net's --chill); the skipped cases are counted in the table and results.json")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no table on stdout")


def _canvas(values):
    """--canvas: 'auto', 'paper', 'none' or the canvas sizes."""
    if len(values) == 1 and values[0] in ("auto", "paper", "none"):
        return None if values[0] == "none" else values[0]
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise ValueError(f"--canvas takes auto, paper, none or integer sizes; got {' '.join(values)}") from None


def run(args: argparse.Namespace) -> int:
    from nnunet_anomaly.calibration import threshold_from_args

    from . import evaluate_folder, format_table

    for option in ("chunk_size", "repeats"):
        if getattr(args, option) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be >= 1; got {getattr(args, option)}")
    if args.n_figure_cases < 0:
        raise ValueError(f"--n-figure-cases must be >= 0; got {args.n_figure_cases}")
    results = evaluate_folder(
        args.predictions, args.ground_truth, args.output, images=args.images, setting=args.setting,
        names=args.names, baselines=args.baselines, foreground=args.foreground, canvas=_canvas(args.canvas),
        precision=args.precision, threshold=threshold_from_args(args), aggregate=args.aggregate,
        chunk_size=args.chunk_size, repeats=args.repeats, figure_cases=args.cases,
        n_figure_cases=args.n_figure_cases, seed=args.seed, test_set=args.test_set,
        figures=not args.no_figures, progress=not args.quiet, subset=args.subset,
    )
    if not args.quiet:
        print(format_table(results))
        print(f"wrote {args.output}/results.json, table.md, per_case.csv"
              + ("" if args.no_figures else ", figures/"))
    return 0
