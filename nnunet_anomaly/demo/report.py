"""The demo's Markdown report, from the finished steps' outputs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

from nnunet_anomaly._io import atomic_path, write_json, write_text
from nnunet_anomaly.demo.figures import plot_overlays, plot_validation
from nnunet_anomaly.demo.real_lesions import REAL_LESION_FETCH
from nnunet_anomaly.demo.runner import Workspace, _now
from nnunet_anomaly.demo.settings import DATASET_NAME

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


def synthetic_per_task_metrics(predictions, ground_truth) -> dict[str, dict]:
    """Pixel AP / AUROC per task of the synthetic test set (cases are named ``{task}_{nnn}``)."""
    import numpy as np
    import SimpleITK as sitk

    from nnunet_anomaly.evaluation import auroc, average_precision, load_prediction

    scores, targets = {}, {}
    for truth_path in sorted(Path(ground_truth).glob("*.nii.gz")):
        case = truth_path.name[: -len(".nii.gz")]
        task = case.rsplit("_", 1)[0]
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(truth_path))) > 0
        score = np.clip(load_prediction(Path(predictions) / f"{case}.npz", reference_shape=truth.shape), 0, 1)
        scores.setdefault(task, []).append(score.ravel())
        targets.setdefault(task, []).append(truth.ravel())
    out = {}
    for task in scores:
        s, t = np.concatenate(scores[task]), np.concatenate(targets[task])
        out[task] = {"ap": float(average_precision(s, t)) if t.any() else float("nan"),
                     "auroc": float(auroc(s, t)) if t.any() and not t.all() else float("nan"),
                     "cases": len(scores[task]), "anomalous_voxels": int(t.sum())}
    return out


def _verdicts(ws: Workspace, real_cases) -> list[str]:
    """Plain sentences: does the ensemble beat the intensity baseline and chance on each test set?"""
    s = ws.settings
    lines = [f"Each fold model trained for only a few minutes (`{s.trainer}`); the paper trains for hours on a "
             "GPU. These numbers show that the pipeline works end to end, not how well the method works.", ""]
    sets = [("demo test set (synthetic lesions)", "ensemble"), ("synthetic tasks on held-out images", "synthetic")]
    if real_cases:
        sets.append(("REAL lesions", "real_lesions"))
    for title, folder in sets:
        results = _read_json(ws.workdir / "evaluation" / folder / "results.json")
        if not results:
            continue
        models = results.get("models", {})
        ours = models.get(results.get("primary"), {}).get("pixel", {})
        intensity = models.get("intensity", {}).get("pixel", {})
        random = models.get("random", {}).get("pixel", {})
        if not ours:
            continue
        ap, auroc = ours.get("ap_pooled"), ours.get("auroc")
        verdict = []
        if random.get("ap_pooled") is not None and ap is not None:
            verdict.append("above" if ap > random["ap_pooled"] else "NOT above")
        beats = None
        if intensity.get("ap_pooled") is not None and ap is not None:
            beats = ap > intensity["ap_pooled"]
        lines.append(f"* {title}: ensemble pixel AP {_fmt(ap)} (AUROC {_fmt(auroc)}), "
                     f"{verdict[0] if verdict else 'n/a vs'} chance (AP {_fmt(random.get('ap_pooled'))}); "
                     + ("the intensity baseline (AP " + _fmt(intensity.get("ap_pooled")) + ") is "
                        + ("beaten." if beats else "NOT beaten.") if beats is not None else ""))
    return lines


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


def write_report(ws: Workspace) -> Path:
    """Write ``report/report.md`` and ``report/figures/*.png`` from the finished steps' outputs."""
    from nnunet_anomaly.tasks import TASK_NAMES

    s = ws.settings
    report_dir = ws.workdir / "report"
    figures = report_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    raw = ws.dataset_raw
    summaries = fold_validation_summaries(ws)
    synthetic = synthetic_per_task_metrics(ws.workdir / "predictions" / "synthetic_ensemble",
                                           ws.workdir / "synthetic_test" / "labelsTs")
    write_json(report_dir / "synthetic_per_task.json", synthetic)
    plot_validation(figures / "demo_validation.png", summaries, synthetic, list(TASK_NAMES))

    lesion_cases = sorted(p.name[: -len(".nii.gz")] for p in (raw / "labelsTs").glob("*.nii.gz"))
    picked = [c for c in lesion_cases if "tumour" in c][:1] + [c for c in lesion_cases if "cyst" in c][:1] + \
             [c for c in lesion_cases if "healthy" in c][:1]
    plot_overlays(figures / "demo_overlays_lesions.png",
                   [(c.replace("test_", ""), raw / "imagesTs" / f"{c}_0000.nii.gz",
                     ws.workdir / "predictions" / "ensemble" / f"{c}.npz", raw / "labelsTs" / f"{c}.nii.gz")
                    for c in picked],
                   "demo test set (synthetic lesions, not training tasks): nnU-Net ensemble")
    synthetic_dir = ws.workdir / "synthetic_test"
    synthetic_cases = [p.name[: -len(".nii.gz")] for p in sorted((synthetic_dir / "labelsTs").glob("*_000.nii.gz"))]
    plot_overlays(figures / "demo_overlays_synthetic.png",
                   [(c, synthetic_dir / "imagesTs" / f"{c}_0000.nii.gz",
                     ws.workdir / "predictions" / "synthetic_ensemble" / f"{c}.npz", synthetic_dir / "labelsTs" / f"{c}.nii.gz")
                    for c in synthetic_cases],
                   "synthetic tasks on held-out healthy images: nnU-Net ensemble")
    real_dir = ws.workdir / "real_lesions"
    real_cases = sorted(p.name[: -len(".nii.gz")] for p in (real_dir / "labelsTs").glob("*.nii.gz")) \
        if ws.real_lesion_sources else []
    if real_cases:
        plot_overlays(figures / "demo_overlays_real_lesions.png",
                       [(c, real_dir / "imagesTs" / f"{c}_0000.nii.gz",
                         ws.workdir / "predictions" / "real_lesions_ensemble" / f"{c}.npz", real_dir / "labelsTs" / f"{c}.nii.gz")
                        for c in real_cases],
                       "REAL lesions (pyradiomics brain1/brain2, T1 post-contrast; domain-shifted): ensemble")
    montage = _copy(ws.workdir / "task_montage" / "tasks_3d.png", figures / "demo_tasks_3d.png")
    evaluation_figures = []
    for test_set in ("ensemble", "synthetic"):
        for source in sorted((ws.workdir / "evaluation" / test_set / "figures").glob("*.png")):
            target = figures / f"evaluation_{test_set}_{source.name}"
            _copy(source, target)
            evaluation_figures.append((test_set, target.name))

    def commands(*steps: str) -> str:
        lines = [c for step in steps for c in ws.commands.get(step, [])]
        return "```bash\n" + "\n".join(lines) + "\n```" if lines else "_(no command recorded)_"

    seconds = ws.step_seconds()
    md = ["# nnunet-anomaly demo report" + (" (--quick)" if s.name == "quick" else ""), ""]
    md += [f"Generated {_now()} by `nnunet_anomaly demo{' --quick' if s.name == 'quick' else ''}`. "
           f"Trainer `{s.trainer}`, configuration `{s.configuration}`, folds {list(s.folds)} of T = 1 "
           f"(each fold model trains on ONE synthetic task and is validated on the other four), device `{ws.device}`. "
           "In the commands, `$WORKDIR` is the demo's working folder; every command ran with "
           "`nnUNet_raw=$WORKDIR/nnUNet_raw nnUNet_preprocessed=$WORKDIR/nnUNet_preprocessed "
           "nnUNet_results=$WORKDIR/nnUNet_results`.", ""]
    if s.name == "quick":
        md += ["> **--quick run**: a few training iterations; the numbers below only show that the pipeline "
               "works and mean nothing about the method.", ""]
    md += ["## What is synthetic and what is real", "",
           "* **Images**: every image comes from ONE real image, nilearn's MNI152 2009a T1 template (an average of "
           "152 healthy adults), under random deformation, bias field and noise. The training set is 'healthy' "
           "augmentations of it; it is not a cohort of subjects.",
           "* **Synthetic validation (per fold)**: the five synthetic training tasks; each fold model is scored on "
           "the tasks it did NOT train on, applied to the images of its held-out data fold.",
           "* **Synthetic tasks on held-out images (ensemble)**: each of the five tasks applied to the healthy test "
           "images, which no model saw. With T = 1 every task is a training task of one fold model, so for the "
           "ensemble these are not unseen task types.",
           "* **Demo test set ('tumour', 'cyst')**: SYNTHETIC lesions too, but hand-made and of none of the five "
           "training task types (a bright textured mass with mass effect; a dark cavity with a bright rim). They "
           "stand in for unseen anomalies.",
           ("* **Real lesions**: pyradiomics' `brain1` and `brain2` (T1 post-contrast MRI with enhancing lesions, "
            "0.78x0.78x6.5 mm, from the pyradiomics-bhklab 3.1.4 source distribution cached at set-up), the only "
            "real lesions that install without a run-time download. Resampled to 4 mm, crude brain mask (head "
            "peeled by 12 mm), z-scored: a **domain-shifted smoke test** (other contrast, scanner, resolution and "
            "skull stripping than the training images), two cases, not a benchmark. See section 5."
            if real_cases else
            "* **Real lesions**: NONE in this run. The only real lesions that install offline (pyradiomics' "
            f"`brain1`/`brain2`) were not found; fetch them once, at set-up, with `{REAL_LESION_FETCH}` "
            "and re-run the demo: only the new steps run."), ""]

    md += ["## 1. Data", "", commands("dataset"), "",
           f"{len(lesion_cases)} test cases in `nnUNet_raw/{DATASET_NAME}/imagesTs` (ground truth in `labelsTs`).", "",
           "## 2. Planning and preprocessing", "", commands("plan_and_preprocess"), ""]

    md += ["## 3. Training and per-task synthetic validation", "",
           commands(*(f"train_fold_{f}" for f in s.folds)), "",
           "Pixel AP / AUROC of each fold model on its held-out synthetic tasks (from "
           "`nnUNet_results/.../fold_X/validation/summary.json`, written by the trainer), and of the ensemble on "
           "the synthetic tasks applied to held-out healthy test images (`synthetic_test/`):", ""]
    header = ["model", "trained on", *TASK_NAMES, "pooled"]
    rows = []
    for fold, summary in summaries.items():
        per_task = summary.get("per_task", {})
        cells = [f"{_fmt(per_task[t]['ap'])} / {_fmt(per_task[t]['auroc'])}" if t in per_task else "(trained)"
                 for t in TASK_NAMES]
        pooled = summary.get("pooled", {})
        rows.append([f"fold {fold}", ", ".join(summary.get("train_tasks", [])), *cells,
                     f"{_fmt(pooled.get('ap'))} / {_fmt(pooled.get('auroc'))}"])
    if synthetic:
        rows.append(["ensemble (held-out images)", "all five (one per fold)",
                     *(f"{_fmt(synthetic[t]['ap'])} / {_fmt(synthetic[t]['auroc'])}" if t in synthetic else "n/a"
                       for t in TASK_NAMES), ""])
    md += [_table(header, rows), "", "Cells: AP / AUROC.", "", "![per-task synthetic validation](figures/demo_validation.png)", ""]

    md += ["## 4. Prediction and ensembling", "",
           commands("synthetic_test", "predict_ensemble", "predict_synthetic_ensemble",
                    *(f"predict_fold_{f}" for f in s.folds)), ""]

    md += ["## 5. Evaluation", "", commands("evaluate"), ""]
    for title, folder in (("Demo test set (synthetic lesions of unseen types): ensemble and baselines", "ensemble"),
                          ("Demo test set: every fold model (and their mean)", "folds"),
                          ("Synthetic tasks on held-out healthy images: ensemble and baselines", "synthetic")):
        table_path = ws.workdir / "evaluation" / folder / "table.md"
        if table_path.is_file():
            md += [f"### {title}", "", table_path.read_text().strip(), ""]
    if real_cases:
        table_path = ws.workdir / "evaluation" / "real_lesions" / "table.md"
        md += ["### REAL lesions (domain-shifted smoke test, 2 cases)", "", commands("real_lesions", "predict_real_lesions",
                                                                              "evaluate_real_lesions"), ""]
        if table_path.is_file():
            md += [table_path.read_text().strip(), ""]
        md += ["![overlays, real lesions](figures/demo_overlays_real_lesions.png)", ""]
    md += ["### Reading the numbers", "", *_verdicts(ws, real_cases), ""]
    md += ["### Overlays", "", "Axial slice through the largest ground-truth area; green contour: ground truth. "
           "The colour scale runs from 0 to the largest score in the figure.", "",
           "![overlays, demo test set](figures/demo_overlays_lesions.png)", "",
           "![overlays, synthetic tasks](figures/demo_overlays_synthetic.png)", ""]
    for test_set, name in evaluation_figures:
        md += [f"![{name}](figures/{name})", ""]

    md += ["## 6. The synthetic tasks", "", commands("show_tasks"), ""]
    if montage:
        md += ["![task montage](figures/demo_tasks_3d.png)", ""]

    from nnunet_anomaly.demo.steps import demo_steps  # the steps write the report: imported late

    order = [step.name for step in demo_steps(ws)]
    rows = [[name, f"{seconds[name][0]:.0f}", f"{seconds[name][1]:.0f}"] for name in order if name in seconds]
    total_wall = sum(v[0] for v in seconds.values())
    total_cpu = sum(v[1] for v in seconds.values())
    md += ["## Time per step", "",
           "Wall-clock seconds of this run, and CPU seconds (user + system) used by the step's commands "
           "(a machine-independent measure of the work; a shared machine inflates wall-clock time).", "",
           _table(["step", "wall s", "CPU s"], [*rows, ["**total** (before the report)", f"{total_wall:.0f}",
                                                        f"{total_cpu:.0f}"]]), ""]
    text = "\n".join(md) + "\n"
    write_text(report_dir / "report.md", text)
    return report_dir / "report.md"
