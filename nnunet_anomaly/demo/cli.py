"""``nnunet_anomaly demo``: the command line (options, device choice, signals) around the steps."""
from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Sequence

from nnunet_anomaly.demo.real_lesions import REAL_LESION_FETCH, find_real_lesions
from nnunet_anomaly.demo.runner import StepFailed, Workspace, _duration
from nnunet_anomaly.demo.settings import CXR, CXR_QUICK, DEFAULT_WORKDIR, DEMO, QUICK
from nnunet_anomaly.demo.steps import demo_steps

def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the whole product end to end on the offline demo dataset (Dataset990_MNIDemo, built "
        "from healthy brains of several people cached at set-up by `make brains`): build the data, nnUNetv2_plan_and_preprocess, nnUNetv2_train the "
        "five folds of T=1 (at the same time on a CPU), nnunet_anomaly predict the ensemble, nnUNetv2_predict "
        "every fold, nnunet_anomaly evaluate, and write a Markdown report with figures. Finished steps are "
        "reused on a re-run. --setting cxr: the same on real chest radiographs (8 healthy, 8 pneumonia, cached at "
        "set-up by `make radiographs`), scored sample-wise as the paper scores chest X-rays.")
    parser.add_argument("--setting", choices=("brain", "cxr"), default="brain",
                        help="brain (default): 3D brain MRI (Dataset990_MNIDemo); cxr: 2D chest radiographs "
                             "(Dataset992_CXRDemo, from the cache of --radiographs)")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR,
                        help=f"working folder for the data, models, predictions and report (default: {DEFAULT_WORKDIR})")
    parser.add_argument("--quick", action="store_true",
                        help="tiny setting (two folds, a few epochs, 10 training images): checks the pipeline "
                             "in a few minutes; its numbers mean nothing")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto (default): the GPU when torch sees one, else the CPU")
    parser.add_argument("-np", "--num-processes", type=int, default=2, dest="num_processes",
                        help="worker processes for conversion and preprocessing (default 2)")
    parser.add_argument("-j", "--jobs", default="auto",
                        help="independent steps (the fold models, their predictions) run at the same time, each "
                             "single-threaded; auto (default): all of them on a CPU (about 0.8 GB of memory each), "
                             "one at a time on a GPU")
    parser.add_argument("--verbose", action="store_true", help="also stream every tool's output to the terminal")
    parser.add_argument("--brains", default=None, metavar="DIR",
                        help="the cache of healthy brains the demo's anatomy comes from, filled once at set-up by "
                             "`make brains` (default: $nnunet_anomaly_brains, else .cache/brains)")
    parser.add_argument("--real-lesions", default=".cache/real_lesions", metavar="DIR",
                        help="folder with the cached pyradiomics-bhklab 3.1.4 sdist (or its extracted data/), the "
                             "only real lesions installable offline; fetched once by the set-up step "
                             f"`{REAL_LESION_FETCH}`. Skipped with a message when absent. "
                             "(default: .cache/real_lesions)")
    parser.add_argument("--radiographs", default=None, metavar="DIR",
                        help="--setting cxr: the cache of real chest radiographs, filled once at set-up by "
                             "`make radiographs` (default: $nnunet_anomaly_radiographs, else .cache/radiographs)")


def _check_brains(cache) -> list:
    """The training anatomies found in the brain cache (at least five, for group-aware folds), or a ValueError
    that names what is missing and the set-up command; the test anatomies must all be there."""
    from nnunet_anomaly.dataset_conversion.Dataset990_MNIDemo import TEST_ANATOMIES, TRAIN_ANATOMIES
    from nnunet_anomaly.offline_brains import DEFAULT_CACHE, available_brains, fetch_command

    cache = DEFAULT_CACHE if cache is None else cache
    found = set(available_brains(cache))
    missing_test = [a for a in dict.fromkeys(TEST_ANATOMIES) if a not in found]
    train = [a for a in TRAIN_ANATOMIES if a in found]
    fetch = fetch_command(cache)
    if missing_test or len(train) < 5:
        missing = missing_test + [a for a in TRAIN_ANATOMIES if a not in found]
        raise ValueError(f"the demo's healthy brains are not in {cache} (missing: {', '.join(missing)}); fetch them "
                         f"once, at set-up, with `make brains` or `{fetch}`")
    if len(train) < len(TRAIN_ANATOMIES):
        print(f"brains: {', '.join(a for a in TRAIN_ANATOMIES if a not in found)} not in {cache} (`{fetch}` fetches "
              f"them); training on the other {len(train)} anatomies")
    return train


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_jobs(jobs: str, device: str, settings) -> int:
    """``--jobs``: a positive integer, or auto (every fold at once on a CPU, one at a time on a GPU)."""
    if jobs == "auto":
        return len(settings.folds) if device == "cpu" else 1
    try:
        value = int(jobs)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"--jobs must be a positive integer or auto; got {jobs!r}")
    return value


def run(args: argparse.Namespace) -> int:
    if args.num_processes < 1:
        raise ValueError(f"--num-processes must be >= 1; got {args.num_processes}")
    if getattr(args, "setting", "brain") == "cxr":
        return _run_cxr(args)
    settings = QUICK if args.quick else DEMO
    device = _resolve_device(args.device)
    jobs = _resolve_jobs(args.jobs, device, settings)
    anatomies = _check_brains(args.brains)
    sources = find_real_lesions(args.real_lesions)
    ws = Workspace(args.workdir, settings, device=device, num_processes=args.num_processes, verbose=args.verbose,
                   real_lesion_sources=sources, jobs=jobs)
    ws.brains, ws.train_anatomies = args.brains, anatomies
    ws.workdir.mkdir(parents=True, exist_ok=True)
    print(f"nnunet_anomaly demo ({settings.name}): working folder {ws.workdir}, device {device}, {jobs} job(s) "
          "at a time")
    if sources is None:
        print(f"real lesions: not found in {args.real_lesions} - skipped (they are fetched once, at set-up, "
              f"with `{REAL_LESION_FETCH}`; nothing is downloaded at run time)")
    else:
        print(f"real lesions: pyradiomics {', '.join(sorted(sources))} from {args.real_lesions}")
    return _run_steps(ws)


def _run_cxr(args: argparse.Namespace) -> int:
    """``--setting cxr``: the chest X-ray demo on the cached radiographs (nnunet_anomaly.demo.cxr)."""
    from nnunet_anomaly.demo.cxr import check_radiographs
    from nnunet_anomaly.offline_radiographs import DEFAULT_CACHE, radiograph_info

    settings = CXR_QUICK if args.quick else CXR
    device = _resolve_device(args.device)
    jobs = _resolve_jobs(args.jobs, device, settings)
    cache = DEFAULT_CACHE if args.radiographs is None else args.radiographs
    radiographs = check_radiographs(cache, settings)
    ws = Workspace(args.workdir, settings, device=device, num_processes=args.num_processes, verbose=args.verbose,
                   jobs=jobs)
    ws.radiographs, ws.radiograph_cache, ws.radiograph_source = radiographs, str(cache), radiograph_info(cache)
    ws.workdir.mkdir(parents=True, exist_ok=True)
    print(f"nnunet_anomaly demo ({settings.name}): working folder {ws.workdir}, device {device}, {jobs} job(s) "
          f"at a time; radiographs from {cache} ({len(radiographs['normal'])} healthy, "
          f"{len(radiographs['pneumonia'])} pneumonia)")
    return _run_steps(ws)


def _run_steps(ws: Workspace) -> int:
    """Run the demo's steps in `ws`; 0, or 1 with one line when a step failed."""
    started = time.monotonic()
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)  # `kill` is handled like Ctrl-C
    try:
        ws.run_steps(demo_steps(ws))
    except StepFailed as error:
        print(f"nnunet_anomaly demo: FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    report = ws.workdir / "report" / "report.md"
    print(f"demo finished in {_duration(time.monotonic() - started)}: report at {report}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo verb with `argv` (the command line's arguments after ``demo``)."""
    from nnunet_anomaly.cli import main as cli_main

    return cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])
