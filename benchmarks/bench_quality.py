"""Model quality at a fixed budget: train the fold models on the offline demo data, then score what they find.

One run, in a working folder:

1. data (always built by *this* checkout, so every run is scored on the same images): the demo set
   ``Dataset990_MNIDemo`` (24 training subjects of the demo's training anatomies, or of
   ``--train-anatomies``; 8 healthy, 8 tumour and 8 cyst test cases, half of them in the held-out
   anatomy ``neurosynth_t1``), nnU-Net planning with the small ``3d_demo`` configuration, and the five
   synthetic tasks applied to the healthy test images (8 per task);
2. ``nnUNetv2_train`` of every fold of ``--trainer``, all at the same time (``--jobs``), each
   single-threaded on a CPU;
3. ``nnUNetv2_predict`` of each fold alone on the test set and on the synthetic set;
4. the scores (:mod:`nnunet_anomaly.demo.quality`), computed from the per-fold probability maps:
   each fold's own synthetic validation (``fold_X/validation/summary.json``), pixel AP inside the
   brain per lesion type (alone and with the healthy cases), the scores that 1 % / 0.1 % of healthy
   brain voxels exceed, healthy vs lesion case scores, pooled AP on the synthetic set, for each fold,
   the mean of the folds, and these ensembles: the probability mean with equal weights, weighted by
   the folds' validation AP (power 1, 2 and 4; power 2 is ``nnunet_anomaly predict --fold-weights validation``), and
   the logit mean (what ``nnUNetv2_predict -f 0 1 2 3 4`` does); and the intensity baseline;
5. the evidence that chooses the ensemble (synthetic data only): each task scored as an unseen anomaly by
   the folds that did not train on it, combined in each of those ways.

Training and prediction can run another checkout's code (``--code-path``, e.g. a ``git worktree`` of an
older commit): its package is put first on the tools' ``PYTHONPATH`` (with its top-level ``trainers/``
and ``dataset_conversion/`` mapped to subpackages, as the install does), while the data and the
scores stay this checkout's. That is how a "before" row is measured.

Commands (from the repository root; CPU scale, about 10 minutes on 2 cores)::

    .venv/bin/python benchmarks/bench_quality.py --workdir /tmp/quality --label "this checkout"
    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/bench_quality.py --workdir /tmp/quality_before --code-path /tmp/before \\
        --label before

GPU scale (a longer trainer; the device is the GPU)::

    .venv/bin/python benchmarks/bench_quality.py --workdir /tmp/quality_gpu --device cuda \\
        --trainer AnomalyTaskTrainer_demoLong --label "GPU, 25k iterations per fold"
    BENCH_TRAIN_SECONDS=240 python benchmarks/bench_quality.py --workdir /tmp/quality_gpu --device cuda \\
        --trainer Bench_TimeBudget --label "GPU, 4 minutes per fold"   # a lease of minutes

The README rows' trainer variants (``Bench_*``) live in ``benchmarks/trainer_variants/``.

The working folder keeps everything: a re-run with the same folder reuses the data, trained folds and
predictions (delete ``results/`` or ``predictions/`` to redo them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nnunet_anomaly._io import write_json
from nnunet_anomaly.nnunet.crossval import fold_validation_ap

DATASET = "Dataset990_MNIDemo"
CONFIGURATION = "3d_demo"
FOLDS = (0, 1, 2, 3, 4)
POWERS = (1, 2, 4)
FINAL = "checkpoint_final.pth"


def _outputs(workdir: Path, checkpoint: str) -> tuple[Path, Path]:
    """Where the predictions and the results of `checkpoint` go (the final checkpoint's: the plain names)."""
    if checkpoint == FINAL:
        return workdir / "predictions", workdir / "bench_quality.json"
    stem = Path(checkpoint).stem
    return workdir / f"predictions_{stem}", workdir / f"bench_quality_{stem}.json"


# ------------------------------------------------------------------------------------------ running tools
def _overlay(code_path: Path) -> Path:
    """A folder whose ``nnunet_anomaly`` package is `code_path`'s, with ``trainers`` and ``dataset_conversion``."""
    overlay = Path(tempfile.mkdtemp(prefix="bench_quality_code_"))
    package = overlay / "nnunet_anomaly"
    package.mkdir()
    for entry in (code_path / "nnunet_anomaly").iterdir():
        (package / entry.name).symlink_to(entry)
    for sub in ("trainers", "dataset_conversion"):
        if not (package / sub).exists():
            (package / sub).symlink_to(code_path / sub)
    return overlay


def _environment(workdir: Path, code: Path | None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("nnUNet_n_proc_DA", "nnunet_anomaly_pool")}
    env.update(nnUNet_raw=str(workdir / "raw"), nnUNet_preprocessed=str(workdir / "preprocessed"),
               nnUNet_results=str(workdir / "results"), nnUNet_compile="false", MPLBACKEND="Agg",
               PYTHONUNBUFFERED="1")
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        # the checkout's own trainer folder: older checkouts are not found through this one's start-up hook
        plugin = code / "nnunet_anomaly" / "plugin" / "ext_trainers"
        if plugin.is_dir():
            env["nnUNet_extTrainer"] = os.pathsep.join(filter(None, [env.get("nnUNet_extTrainer"), str(plugin)]))
    variants = str(Path(__file__).resolve().parent / "trainer_variants")  # the README rows' trainers
    env["nnUNet_extTrainer"] = os.pathsep.join(filter(None, [env.get("nnUNet_extTrainer"), variants]))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _run(argv, env, log: Path) -> float:
    """Run a command, its output to `log`; returns its CPU seconds (children included). Raises on failure."""
    started = time.monotonic()
    with open(log, "w") as handle:
        process = subprocess.Popen([str(a) for a in argv], env=env, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-20:])
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({process.returncode}); end of {log}:\n{tail}")
    print(f"  {time.monotonic() - started:6.0f} s  {Path(str(argv[0])).name} {' '.join(map(str, argv[1:5]))} ...",
          flush=True)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------------------ the run
def prepare_data(workdir: Path, train_anatomies=None) -> None:
    """The demo set, its planning and the synthetic held-out set, with this checkout's code (once).

    `train_anatomies` (default: the demo's) only changes the training cases: the test cases, the
    same for every choice, put lesions into a held-out anatomy and into two of the demo's training
    anatomies."""
    from nnunet_anomaly.dataset_conversion.Dataset990_MNIDemo import TRAIN_ANATOMIES, build_demo_dataset
    from nnunet_anomaly.demo import build_synthetic_test_set

    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    raw = workdir / "raw" / DATASET
    if not (raw / "dataset.json").is_file():
        build_demo_dataset(workdir / "raw", num_processes=2, num_training=24, num_test_healthy=8,
                           num_test_per_anomaly=8, train_anatomies=train_anatomies or TRAIN_ANATOMIES)
    if not (workdir / "preprocessed" / DATASET / "nnUNetPlans.json").is_file():
        env = _environment(workdir, None)
        _run([_tool("nnUNetv2_plan_and_preprocess"), "-d", 990, "-c", "3d_fullres", "-np", 2, "-npfp", 2], env,
             logs / "plan.log")
        _run([sys.executable, "-m", "nnunet_anomaly.nnunet.planning", "add-config", "-d", 990, "--name",
              CONFIGURATION, "--patch", 40, 48, 40, "--batch", 2, "--features", 8, "--convs-per-stage", 1, "--base",
              "3d_fullres"], env, logs / "add_config.log")
    if not (workdir / "synthetic" / "cases.json").is_file():
        records = build_synthetic_test_set(raw, workdir / "synthetic", cases_per_task=8)
        write_json(workdir / "synthetic" / "cases.json", records)


def train_and_predict(workdir: Path, trainer: str, device: str, jobs: int, code: Path | None,
                      checkpoint: str = FINAL) -> dict:
    """Train every fold (concurrently), then predict each fold alone on both test sets; CPU and wall seconds."""
    logs = workdir / "logs"
    raw = workdir / "raw" / DATASET
    model = workdir / "results" / DATASET / f"{trainer}__nnUNetPlans__{CONFIGURATION}"
    # on a CPU the data loads in the training process; on a GPU the cores are shared among the folds' workers
    workers = 0 if device == "cpu" else max(1, (os.cpu_count() or 2) // jobs - 1)
    train_env = _environment(workdir, code, nnunet_anomaly_pool=raw / "external_pool", nnUNet_n_proc_DA=workers)

    def train(fold):
        if (model / f"fold_{fold}" / "checkpoint_final.pth").is_file():
            return 0.0
        return _run([_tool("nnUNetv2_train"), 990, CONFIGURATION, fold, "-tr", trainer, "-device", device],
                    train_env, logs / f"train_{fold}.log")

    def predict(job):
        fold, inputs, output = job
        if output.is_dir() and any(output.glob("*.npz")):
            return 0.0
        return _run([_tool("nnUNetv2_predict"), "-i", inputs, "-o", output, "-d", 990, "-c", CONFIGURATION,
                     "-tr", trainer, "-f", fold, "-chk", checkpoint, "--save_probabilities", "-npp", 0, "-nps", 0,
                     "-device", device, "--disable_tta"], _environment(workdir, code, nnUNet_def_n_proc=1),
                    logs / f"predict_{output.name}.log")

    timing = {}
    started = time.monotonic()
    with ThreadPoolExecutor(jobs) as pool:
        timing["train_cpu_s"] = sum(pool.map(train, FOLDS))
    timing["train_wall_s"] = time.monotonic() - started
    predictions = _outputs(workdir, checkpoint)[0]
    jobs_list = [(f, raw / "imagesTs", predictions / f"fold_{f}") for f in FOLDS] + \
                [(f, workdir / "synthetic" / "imagesTs", predictions / f"synthetic_fold_{f}") for f in FOLDS]
    started = time.monotonic()
    with ThreadPoolExecutor(jobs) as pool:
        timing["predict_cpu_s"] = sum(pool.map(predict, jobs_list))
    timing["predict_wall_s"] = time.monotonic() - started
    timing["model"] = model
    return timing


# ------------------------------------------------------------------------------------------ the scores
def _combine(fold_maps, weights, rule):
    weights = np.asarray(weights, float) / np.sum(weights)
    out = {}
    for case in fold_maps[0]:
        if rule == "probability":
            out[case] = sum(w * m[case] for w, m in zip(weights, fold_maps))
        else:  # nnU-Net's: the mean of the logits, then the sigmoid
            logits = sum(w * np.log(np.clip(m[case], 1e-7, 1 - 1e-7) / np.clip(1 - m[case], 1e-7, 1))
                         for w, m in zip(weights, fold_maps))
            out[case] = 1 / (1 + np.exp(-logits))
    return out


def unseen_task_quality(fold_maps, cases, summaries) -> dict:
    """Each synthetic task scored as an unseen anomaly: only the folds that did not train on it, combined.

    The weights come from each fold's validation AP on its *other* held-out tasks, so no weight has seen
    the task it is scored on. Returns ``{combiner: {task: AP, ..., "mean": mean over tasks}}``."""
    from nnunet_anomaly.demo import quality

    tasks = sorted({quality.case_kind(c) for c in cases})
    combiners = {f"probability mean, validation AP^{p}" if p else "probability mean, equal weights": (p, "probability")
                 for p in (0,) + POWERS}
    combiners["logit mean (nnUNetv2_predict -f)"] = (0, "logit")
    out = {}
    for name, (power, rule) in combiners.items():
        row = {}
        for task in tasks:
            use = [i for i, f in enumerate(FOLDS) if task not in (summaries[f].get("train_tasks") or [])]
            other_ap = [np.nanmean([v["ap"] for t, v in summaries[FOLDS[i]]["per_task"].items()
                                    if t != task and v.get("ap") is not None]) for i in use]
            subset = {c: cases[c] for c in cases if quality.case_kind(c) == task}
            maps = _combine([{c: fold_maps[i][c] for c in subset} for i in use],
                            np.maximum(other_ap, 1e-6) ** power, rule)
            row[task] = quality.synthetic_quality({name: maps}, subset)[name][task]
        row["mean"] = float(np.mean([row[t] for t in tasks]))
        out[name] = row
    return out


def score(workdir: Path, model: Path, checkpoint: str = FINAL) -> dict:
    from nnunet_anomaly.demo import quality

    raw = workdir / "raw" / DATASET
    test = quality.load_test_set(raw / "imagesTs", raw / "labelsTs", raw / "brainmasksTs")
    synthetic = quality.load_test_set(workdir / "synthetic" / "imagesTs", workdir / "synthetic" / "labelsTs")
    summaries = {f: json.loads((model / f"fold_{f}" / "validation" / "summary.json").read_text()) for f in FOLDS}
    validation = [fold_validation_ap(summaries[f]) for f in FOLDS]
    validation = [float("nan") if v is None else v for v in validation]
    predictions = _outputs(workdir, checkpoint)[0]
    fold_maps = [quality.load_maps(predictions / f"fold_{f}", test) for f in FOLDS]
    fold_synthetic = [quality.load_maps(predictions / f"synthetic_fold_{f}", synthetic) for f in FOLDS]
    variants = {"probability mean, equal weights": (np.ones(len(FOLDS)), "probability")}
    for power in POWERS:
        variants[f"probability mean, validation AP^{power}"] = (np.asarray(validation) ** power, "probability")
    variants["logit mean (nnUNetv2_predict -f)"] = (np.ones(len(FOLDS)), "logit")
    maps = {f"fold {f}": m for f, m in zip(FOLDS, fold_maps)}
    synthetic_maps = {f"fold {f}": m for f, m in zip(FOLDS, fold_synthetic)}
    for name, (weights, rule) in variants.items():
        maps[name] = _combine(fold_maps, weights, rule)
        synthetic_maps[name] = _combine(fold_synthetic, weights, rule)
    maps["intensity baseline"] = quality.intensity_maps(test)
    synthetic_maps["intensity baseline"] = quality.intensity_maps(synthetic)
    lesions = quality.lesion_quality(maps, test)
    tasks = quality.synthetic_quality(synthetic_maps, synthetic)
    folds = [f"fold {f}" for f in FOLDS]
    lesions["mean of the folds"] = quality.mean_of_folds([lesions[n] for n in folds])
    tasks["mean of the folds"] = quality.mean_of_folds([tasks[n] for n in folds])
    for row in lesions.values():
        row.pop("case_scores", None)
    # per anatomy of the test cases (the held-out one first), and each task as an unseen anomaly there
    test_records = json.loads((raw / "test_cases.json").read_text())
    trained_on = json.loads((raw / "build_info.json").read_text()).get("train_anatomies", [])
    synthetic_records = {r["case"]: r for r in json.loads((workdir / "synthetic" / "cases.json").read_text())
                         if "anatomy" in r}
    by_anatomy = {}
    test_groups = quality.split_by_anatomy(test, test_records, key="anatomy")
    synthetic_groups = quality.split_by_anatomy(synthetic, synthetic_records, key="anatomy")
    lesion_rows = quality.quality_of_groups(maps, test_groups, folds)
    synthetic_rows = quality.quality_of_groups(synthetic_maps, synthetic_groups, folds, quality.synthetic_quality)
    for anatomy in sorted(test_groups, key=lambda a: (a in trained_on, a)):
        rows = lesion_rows[anatomy]
        for row in rows.values():
            row.pop("case_scores", None)
        entry = {"trained_on": anatomy in trained_on, "lesions": rows}
        if anatomy in synthetic_groups:
            sub = synthetic_groups[anatomy]
            entry["synthetic"] = synthetic_rows[anatomy]
            entry["unseen_tasks"] = unseen_task_quality([{c: m[c] for c in sub} for m in fold_synthetic], sub, summaries)
        by_anatomy[anatomy] = entry
    return {"validation": {f"fold {f}": {"train_tasks": summaries[f].get("train_tasks"),
                                         "pooled_ap": (summaries[f].get("pooled") or {}).get("ap"),
                                         "pooled_ap_with_healthy": (summaries[f].get("pooled_with_healthy") or {}).get("ap"),
                                         "healthy": summaries[f].get("healthy"),
                                         "per_task_ap": {t: v.get("ap") for t, v in summaries[f].get("per_task", {}).items()}}
                           for f in FOLDS},
            "lesions": lesions, "synthetic": tasks, "by_anatomy": by_anatomy,
            "unseen_tasks": unseen_task_quality(fold_synthetic, synthetic, summaries)}


def markdown(results: dict) -> str:
    f = lambda v: "n/a" if v is None or v != v else f"{v:.3f}"  # noqa: E731
    lines = [f"#### {results['label']} (`{results['trainer']}`, `{results.get('checkpoint', FINAL)}`, "
             f"{results['device']})", "",
             "| model | tumour AP | cyst AP | tumour AP +healthy | cyst AP +healthy | healthy 1% / 0.1% exceed | "
             "highest healthy case | lowest lesion case | synthetic AP (pooled) |", "|---|" + "---:|" * 8]
    for name, row in results["scores"]["lesions"].items():
        synthetic = results["scores"]["synthetic"].get(name, {}).get("pooled")
        healthy = row.get("healthy", {})
        lines.append(f"| {name} | {f(row['ap']['tumour'])} | {f(row['ap']['cyst'])} | "
                     f"{f(row['ap_with_healthy']['tumour'])} | {f(row['ap_with_healthy']['cyst'])} | "
                     f"{f(healthy.get('score_exceeded_by_1%'))} / {f(healthy.get('score_exceeded_by_0.1%'))} | "
                     f"{f(row['highest_healthy_case'])} | {f(row['lowest_lesion_case'])} | {f(synthetic)} |")
    for anatomy, entry in results["scores"].get("by_anatomy", {}).items():
        state = "trained on" if entry["trained_on"] else "**never trained on**"
        lines += ["", f"Anatomy `{anatomy}` ({state}):", "",
                  "| model | tumour AP | cyst AP | healthy 1% / 0.1% exceed | highest healthy case | "
                  "lowest lesion case | synthetic AP (pooled) | unseen tasks (mean) |", "|---|" + "---:|" * 7]
        unseen_rows = entry.get("unseen_tasks", {})
        for name, row in entry["lesions"].items():
            healthy = row.get("healthy", {})
            synthetic = entry.get("synthetic", {}).get(name, {}).get("pooled")
            lines.append(f"| {name} | {f(row['ap']['tumour'])} | {f(row['ap']['cyst'])} | "
                         f"{f(healthy.get('score_exceeded_by_1%'))} / {f(healthy.get('score_exceeded_by_0.1%'))} | "
                         f"{f(row['highest_healthy_case'])} | {f(row['lowest_lesion_case'])} | {f(synthetic)} | "
                         f"{f(unseen_rows.get(name, {}).get('mean'))} |")
    lines += ["", "| fold | trained on | validation AP | with healthy | healthy 1% exceed | per task |", "|---|---|---:|---:|---:|---|"]
    for name, row in results["scores"]["validation"].items():
        lines.append(f"| {name} | {', '.join(row['train_tasks'] or [])} | {f(row['pooled_ap'])} | "
                     f"{f(row['pooled_ap_with_healthy'])} | {f((row['healthy'] or {}).get('score_exceeded_by_1%'))} | "
                     + ", ".join(f"{t} {f(v)}" for t, v in row["per_task_ap"].items()) + " |")
    unseen = results["scores"]["unseen_tasks"]
    tasks = [t for t in next(iter(unseen.values())) if t != "mean"]
    lines += ["", "Each synthetic task as an unseen anomaly (the folds that did not train on it, combined):", "",
              "| ensemble | " + " | ".join(tasks) + " | mean |", "|---|" + "---:|" * (len(tasks) + 1)]
    for name, row in unseen.items():
        lines.append(f"| {name} | " + " | ".join(f(row[t]) for t in tasks) + f" | {f(row['mean'])} |")
    t = results["timing"]
    lines += ["", f"Training: {t['train_wall_s']:.0f} s wall, {t['train_cpu_s']:.0f} CPU-s for {len(FOLDS)} folds "
                  f"({results['jobs']} at a time); prediction: {t['predict_wall_s']:.0f} s wall, "
                  f"{t['predict_cpu_s']:.0f} CPU-s."]
    return "\n".join(lines)


def _save(workdir: Path, results: dict) -> None:
    write_json(_outputs(workdir, results.get("checkpoint", FINAL))[1], json.loads(json.dumps(results, default=float)),
               indent=1)


def rescore(workdir: Path, checkpoint: str = FINAL) -> dict:
    """Recompute the scores of a finished run (``bench_quality.json``) from its folds and predictions."""
    results = json.loads(_outputs(workdir, checkpoint)[1].read_text())
    model = workdir / "results" / DATASET / f"{results['trainer']}__nnUNetPlans__{CONFIGURATION}"
    results["scores"] = score(workdir, model, results.get("checkpoint", FINAL))
    _save(workdir, results)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--trainer", default="AnomalyTaskTrainer_demo")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--jobs", type=int, default=None, help="folds trained (and predicted) at once (default: all)")
    parser.add_argument("--code-path", type=Path, default=None, help="another checkout whose code trains and predicts")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--train-anatomies", nargs="+", default=None, metavar="NAME",
                        help="anatomies of the training cases (default: the demo's); the test set stays the same")
    parser.add_argument("--checkpoint", default=FINAL,
                        help="the checkpoint each fold predicts with (default checkpoint_final.pth); another one's "
                             "predictions and results get its name (predictions_checkpoint_best/, ...), so both "
                             "checkpoints of one run can be scored side by side")
    parser.add_argument("--rescore", action="store_true", help="only recompute the scores of a finished --workdir")
    args = parser.parse_args(argv)
    if args.rescore:
        print(markdown(rescore(args.workdir.absolute(), args.checkpoint)))
        return 0
    jobs = args.jobs or len(FOLDS)
    workdir = args.workdir.absolute()
    code = _overlay(args.code_path.absolute()) if args.code_path else None
    print(f"bench_quality: {args.label}: {args.trainer} on {args.device}, {jobs} job(s), in {workdir}", flush=True)
    prepare_data(workdir, args.train_anatomies)
    timing = train_and_predict(workdir, args.trainer, args.device, jobs, code, args.checkpoint)
    results = {"label": args.label, "trainer": args.trainer, "checkpoint": args.checkpoint, "device": args.device,
               "jobs": jobs,
               "code_path": str(args.code_path) if args.code_path else None,
               "timing": {k: v for k, v in timing.items() if k != "model"},
               "scores": score(workdir, timing["model"], args.checkpoint)}
    _save(workdir, results)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
