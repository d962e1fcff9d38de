"""``nnunet_anomaly demo --setting cxr``: the chest X-ray demo on real radiographs, the brain demo's shape in 2D.

The radiographs are the 16 of ``pneumonia-model-package`` (:mod:`nnunet_anomaly.offline_radiographs`,
cached at set-up by ``make radiographs``): 8 healthy and 8 with bacterial pneumonia. The steps, each
through the real tools and reusing the brain demo's runner, training, prediction and figure code:

1. stage the files (:func:`stage_radiographs`: five healthy images train, the other healthy and every
   pneumonia image test; every image cropped centrally to one aspect ratio, see :data:`ASPECT`) and
   convert them with ``dataset_conversion/Dataset505_Radiographs.py`` (the paper's radiograph
   preprocessing, 256 x 256; the test images with image-level labels);
2. ``nnUNetv2_plan_and_preprocess -c 2d``, then the small ``2d_demo`` configuration;
3. ``nnUNetv2_train 992 2d_demo FOLD -tr AnomalyTaskTrainer_demo2d`` for the five folds of T = 1;
4. ``nnunet_anomaly predict`` (the ensemble) of the test images and of the five tasks applied to the
   held-out healthy images; ``nnUNetv2_predict`` of each fold alone;
5. ``nnunet_anomaly evaluate --setting cxr``: sample-wise (pneumonia against healthy; the mean of the map,
   as the paper) and pixel-wise (the synthetic lesions), with baselines;
6. ``nnunet_anomaly show-tasks --setting 2d`` and a Markdown report (:func:`write_cxr_report`).
"""
from __future__ import annotations

import csv
import io
import sys
from functools import partial
from pathlib import Path

import numpy as np

from nnunet_anomaly._io import atomic_path, write_json, write_text
from nnunet_anomaly.demo import quality
from nnunet_anomaly.demo.runner import Step, Workspace, _now
from nnunet_anomaly.demo.settings import PLANS

__all__ = ["ASPECT", "TRAIN_SEED", "check_radiographs", "stage_radiographs", "cxr_steps", "cxr_quality_summary",
           "write_cxr_report"]

#: every radiograph is cropped centrally to this width / height before the conversion squeezes it to a
#: square. The healthy images of the package are about 1.25 wide for 1 high, the pneumonia ones about 1.5:
#: squeezed as they are, every pneumonia chest would look 20 % narrower than any training chest, and a
#: sample-wise score could find that instead of the disease.
ASPECT = 1.25
#: seed of the choice of the training images among the healthy ones
TRAIN_SEED = 0
INPUT_FOLDER = "radiograph_input"
TEST_IMAGES = "imagesTs_imagelevel"
TEST_LABELS = "labelsTs_imagelevel"


def check_radiographs(cache, settings) -> dict[str, list[Path]]:
    """The cached radiographs by class, or a ValueError that names the cache and the set-up command."""
    from nnunet_anomaly.offline_radiographs import DEFAULT_CACHE, available_radiographs, fetch_command

    cache = DEFAULT_CACHE if cache is None else cache
    found = available_radiographs(cache)
    need = settings.num_training + 1
    if len(found["normal"]) < need or not found["pneumonia"]:
        raise ValueError(f"the chest X-ray demo's radiographs are not in {cache} (found {len(found['normal'])} "
                         f"healthy, {len(found['pneumonia'])} pneumonia; it needs {need} healthy and 1 pneumonia); "
                         f"fetch them once, at set-up, with `make radiographs` or `{fetch_command(cache)}`")
    return found


def _crop_to_aspect(image, aspect: float):
    """`image` (a PIL image) cropped centrally to width / height = `aspect`, and the box kept."""
    width, height = image.size
    if width > aspect * height:
        new = int(round(aspect * height))
        box = ((width - new) // 2, 0, (width - new) // 2 + new, height)
    else:
        new = int(round(width / aspect))
        box = (0, (height - new) // 2, width, (height - new) // 2 + new)
    return image.crop(box), box


def stage_radiographs(radiographs: dict, folder, *, num_training: int, seed: int = TRAIN_SEED,
                      aspect: float = ASPECT) -> list[dict]:
    """Write the converter's input folders: ``train/``, ``test/`` and ``test_labels.csv`` (0 healthy, 1 pneumonia).

    `num_training` healthy images, drawn with `seed`, train; the other healthy images and every pneumonia
    image test. Each image is read with its EXIF orientation, cropped centrally to `aspect` and written
    as 8-bit grey PNG (lossless) named for its role (``train_healthy_000``, ``test_pneumonia_003``); the
    sources are only read. Returns one record per image (role, source file, crop box).
    """
    from PIL import Image, ImageOps

    folder = Path(folder)
    normal = sorted(radiographs["normal"], key=lambda p: p.name)
    order = np.random.default_rng(seed).permutation(len(normal))
    train = [normal[i] for i in sorted(order[:num_training])]
    test_healthy = [normal[i] for i in sorted(order[num_training:])]
    roles = [("train", "train_healthy", train), ("test", "test_healthy", test_healthy),
             ("test", "test_pneumonia", sorted(radiographs["pneumonia"], key=lambda p: p.name))]
    records = []
    for sub, prefix, paths in roles:
        for k, source in enumerate(paths):
            try:
                with Image.open(source) as opened:
                    image = ImageOps.exif_transpose(opened).convert("L")
            except OSError as error:
                raise ValueError(f"{source}: not a readable image ({error})") from None
            cropped, box = _crop_to_aspect(image, aspect)
            case = f"{prefix}_{k:03d}"
            buffer = io.BytesIO()
            cropped.save(buffer, format="PNG")
            with atomic_path(folder / sub / f"{case}.png") as tmp:
                tmp.write_bytes(buffer.getvalue())
            records.append({"case": case, "role": sub, "kind": prefix.split("_", 1)[1], "source": source.name,
                            "source_size": list(image.size), "crop_box": list(box)})
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["case", "label"])
    for record in records:
        if record["role"] == "test":
            writer.writerow([record["case"], int(record["kind"] == "pneumonia")])
    write_text(folder / "test_labels.csv", text.getvalue())
    return records


# ------------------------------------------------------------------------------------------ the steps
def _build_dataset(ws: Workspace) -> None:
    s = ws.settings
    staged = ws.workdir / INPUT_FOLDER
    records = stage_radiographs(ws.radiographs, staged, num_training=s.num_training)
    cache = Path(getattr(ws, "radiograph_cache", None) or ".cache/radiographs")
    if cache.is_absolute():  # the report names no path of this machine
        try:
            cache = cache.relative_to(Path.cwd())
        except ValueError:
            cache = Path("$RADIOGRAPHS")  # the folder given with --radiographs
    ws.commands.setdefault("dataset", []).append(
        "python -c 'from nnunet_anomaly.demo.cxr import check_radiographs, stage_radiographs; "
        f"from nnunet_anomaly.demo.settings import CXR; stage_radiographs(check_radiographs(\"{cache}\", CXR), "
        f"\"$WORKDIR/{INPUT_FOLDER}\", num_training={s.num_training})'")
    write_json(staged / "cases.json", records)
    name = s.dataset_name.split("_", 1)[1]
    ws.command("dataset", [sys.executable, "-m", "nnunet_anomaly.dataset_conversion.Dataset505_Radiographs",
                           "-i", staged / "train", "--test", staged / "test", "--test-labels",
                           staged / "test_labels.csv", "-o", ws.raw, "-d", s.dataset_id, "--name", name,
                           "-np", ws.num_processes])


def _synthetic_test(ws: Workspace) -> None:
    from nnunet_anomaly.demo.steps import link_inputs
    from nnunet_anomaly.demo.synthetic import build_synthetic_test_set

    folder = ws.workdir / "synthetic_test"
    n = ws.settings.synthetic_cases_per_task
    records = build_synthetic_test_set(ws.dataset_raw, folder, cases_per_task=n, images_folder=TEST_IMAGES)
    ws.commands.setdefault("synthetic_test", []).append(
        "python -c 'from nnunet_anomaly.demo import build_synthetic_test_set; "
        f"build_synthetic_test_set(\"$WORKDIR/nnUNet_raw/{ws.settings.dataset_name}\", \"$WORKDIR/synthetic_test\", "
        f"cases_per_task={n}, images_folder=\"{TEST_IMAGES}\")'")
    write_json(folder / "cases.json", records)
    link_inputs(ws.workdir / "fold_inputs", [ws.dataset_raw / TEST_IMAGES, folder / "imagesTs"])


def _evaluate(ws: Workspace) -> None:
    raw = ws.dataset_raw
    evaluate = [sys.executable, "-m", "nnunet_anomaly", "evaluate", "--setting", "cxr", "--baselines", "--quiet"]
    ws.command("evaluate", [*evaluate, "-p", ws.workdir / "predictions" / "ensemble", "--names", "ensemble",
                            "-g", raw / TEST_LABELS, "--images", raw / TEST_IMAGES,
                            "--test-set", "real radiographs: pneumonia vs healthy (image-level labels)",
                            "-o", ws.workdir / "evaluation" / "radiographs"])
    synthetic = ws.workdir / "synthetic_test"
    ws.command("evaluate", [*evaluate, "-p", ws.workdir / "predictions" / "synthetic_ensemble", "--names", "ensemble",
                            "-g", synthetic / "labelsTs", "--images", synthetic / "imagesTs",
                            "--test-set", "synthetic tasks, held-out healthy radiographs",
                            "-o", ws.workdir / "evaluation" / "synthetic"])


def _show_tasks(ws: Workspace) -> None:
    ws.command("show_tasks", [sys.executable, "-m", "nnunet_anomaly", "show-tasks", "--setting", "2d",
                              "-o", ws.workdir / "task_montage"])


def _report(ws: Workspace) -> None:
    write_cxr_report(ws)


def cxr_steps(ws: Workspace) -> list[Step]:
    """The chest X-ray demo's steps, in order (the brain demo's training and prediction steps, reused)."""
    from nnunet_anomaly.demo.steps import _plan_and_preprocess, _predict_ensemble, _predict_fold, _train

    s = ws.settings
    predictions = ws.workdir / "predictions"
    pre = ws.preprocessed / s.dataset_name
    steps = [
        Step("dataset", f"stage the cached radiographs and convert them (Dataset505_Radiographs -> {s.dataset_name})",
             (ws.dataset_raw, ws.workdir / INPUT_FOLDER), (ws.dataset_raw / "dataset.json",), _build_dataset),
        Step("plan_and_preprocess", "plan and preprocess (nnUNetv2_plan_and_preprocess -c 2d)", (pre,),
             (pre / f"{PLANS}.json",), _plan_and_preprocess),
    ]
    for fold in s.folds:
        steps.append(Step(f"train_fold_{fold}", f"train fold {fold} (nnUNetv2_train -tr {s.trainer})",
                          (ws.fold_folder(fold),), (ws.fold_folder(fold) / "checkpoint_final.pth",), _train(fold),
                          group="train"))
    steps += [
        Step("predict_ensemble", f"predict the test radiographs with the ensemble of folds {list(s.folds)}",
             (predictions / "ensemble",), (predictions / "ensemble",),
             _predict_ensemble("ensemble", "radiographs", "predict_ensemble")),
        Step("synthetic_test", "apply the five synthetic tasks to the held-out healthy radiographs",
             (ws.workdir / "synthetic_test", ws.workdir / "fold_inputs"),
             (ws.workdir / "synthetic_test" / "cases.json", ws.workdir / "fold_inputs"), _synthetic_test),
        Step("predict_synthetic_ensemble", "predict the synthetic held-out set with the ensemble",
             (predictions / "synthetic_ensemble",), (predictions / "synthetic_ensemble",),
             _predict_ensemble("synthetic_ensemble", "synthetic", "predict_synthetic_ensemble")),
    ]
    for fold in s.folds:
        steps.append(Step(f"predict_fold_{fold}", f"predict the test and synthetic radiographs with fold {fold}",
                          (predictions / f"fold_{fold}",), (predictions / f"fold_{fold}",), _predict_fold(fold),
                          group="predict_folds"))
    steps += [
        Step("evaluate", "evaluate (nnunet_anomaly evaluate --setting cxr)",
             tuple(ws.workdir / "evaluation" / name for name in ("radiographs", "synthetic")),
             (ws.workdir / "evaluation" / "radiographs" / "results.json",
              ws.workdir / "evaluation" / "synthetic" / "results.json"), _evaluate),
        Step("show_tasks", "render the task montage (nnunet_anomaly show-tasks --setting 2d)",
             (ws.workdir / "task_montage",), (ws.workdir / "task_montage" / "tasks_2d.png",), _show_tasks),
        Step("report", "write the report", (ws.workdir / "report",), (ws.workdir / "report" / "report.md",), _report),
    ]
    return steps


# ------------------------------------------------------------------------------------------ the numbers
def _whole_image(cases: dict) -> dict:
    """A radiograph is scored over all of it (the reference's foreground): no brain mask."""
    for data in cases.values():
        data["brain"] = np.ones(data["truth"].shape, bool)
    return cases


def cxr_quality_summary(ws: Workspace) -> dict:
    """Every number of the report: sample-wise (pneumonia vs healthy) and pixel-wise (synthetic lesions), for
    the ensemble, each fold, their mean and the intensity baseline. Reads the predictions; writes nothing."""
    s = ws.settings
    predictions = ws.workdir / "predictions"
    raw = ws.dataset_raw
    test = _whole_image(quality.load_test_set(raw / TEST_IMAGES, raw / TEST_LABELS))
    synthetic_dir = ws.workdir / "synthetic_test"
    synthetic = _whole_image(quality.load_test_set(synthetic_dir / "imagesTs", synthetic_dir / "labelsTs"))
    folds = [f"fold {f}" for f in s.folds]
    sources = {"ensemble": (predictions / "ensemble", predictions / "synthetic_ensemble"),
               **{name: (predictions / f"fold_{f}",) * 2 for name, f in zip(folds, s.folds)}}
    maps = {name: quality.load_maps(a, test) for name, (a, _) in sources.items()}
    maps["intensity baseline"] = quality.intensity_maps(test)
    synthetic_maps = {name: quality.load_maps(b, synthetic) for name, (_, b) in sources.items()}
    synthetic_maps["intensity baseline"] = quality.intensity_maps(synthetic)
    healthy = [c for c in test if quality.case_kind(c) == "healthy"]
    pneumonia = [c for c in test if quality.case_kind(c) == "pneumonia"]
    order = ["ensemble", *folds, "mean of the folds", "intensity baseline"]

    sample = quality.sample_quality(maps, pneumonia, healthy)
    sample["mean of the folds"] = {key: quality.mean_of_folds([sample[f][key] for f in folds])
                                   for key in ("auroc", "ap")}
    pixel = quality.synthetic_quality(synthetic_maps, synthetic)
    # the synthetic cases with the held-out healthy images as they are (negatives): a detector runs on every image
    from nnunet_anomaly.nnunet.validation import healthy_false_positives

    both = {**synthetic, **{c: test[c] for c in healthy}}
    for name in [*maps]:
        merged = {**synthetic_maps[name], **{c: maps[name][c] for c in healthy}}
        pixel[name]["pooled_with_healthy"] = quality._ap(merged, both, list(both))
        exceeded = healthy_false_positives(np.concatenate([maps[name][c].ravel() for c in healthy]), (0.01, 0.001))
        pixel[name]["healthy"] = {k: v for k, v in exceeded.items() if k.startswith("score_exceeded_by_")}
    pixel["mean of the folds"] = quality.mean_of_folds([pixel[f] for f in folds])
    from nnunet_anomaly._io import read_json

    ensemble_info = predictions / "ensemble" / "ensemble.json"
    return {"sample": {name: sample[name] for name in order}, "synthetic": {name: pixel[name] for name in order},
            "folds": folds, "cases": {"healthy": len(healthy), "pneumonia": len(pneumonia),
                                      "synthetic": len(synthetic), "training": s.num_training},
            "aggregates": quality.SAMPLE_AGGREGATES,
            "ensemble": read_json(ensemble_info) if ensemble_info.is_file() else None}


# ------------------------------------------------------------------------------------------ the report
def _sample_table(summary: dict) -> str:
    from nnunet_anomaly.demo.report import _fmt, _table

    aggregates = list(quality.SAMPLE_AGGREGATES)
    header = ["model", *(f"{a}{' (paper)' if a == 'mean' else ''}: AUROC / AP" for a in aggregates)]
    rows = [[f"**{name}**" if name == "ensemble" else name,
             *(f"{_fmt(row['auroc'][a])} / {_fmt(row['ap'][a])}" for a in aggregates)]
            for name, row in summary["sample"].items()]
    return _table(header, rows)


def _synthetic_table(summary: dict, task_names) -> str:
    from nnunet_anomaly.demo.report import _fmt, _table

    header = ["model", *task_names, "pooled", "pooled + healthy images", "healthy pixels: 1 % / 0.1 % exceed"]
    rows = []
    for name, row in summary["synthetic"].items():
        healthy = row.get("healthy", {})
        rows.append([f"**{name}**" if name == "ensemble" else name, *(_fmt(row.get(t)) for t in task_names),
                     _fmt(row.get("pooled")), _fmt(row.get("pooled_with_healthy")),
                     f"{_fmt(healthy.get('score_exceeded_by_1%'))} / {_fmt(healthy.get('score_exceeded_by_0.1%'))}"])
    return _table(header, rows)


def _case_table(summary: dict) -> str:
    from nnunet_anomaly.demo.report import _fmt, _table

    ensemble, baseline = summary["sample"]["ensemble"]["scores"], summary["sample"]["intensity baseline"]["scores"]
    cases = sorted(ensemble, key=lambda c: (quality.case_kind(c) != "healthy", c))
    return _table(["case", "ensemble: mean of map", "ensemble: top 0.1 %", "intensity baseline: mean"],
                  [[c, _fmt(ensemble[c]["mean"], 4), _fmt(ensemble[c]["top_0.1%"]), _fmt(baseline[c]["mean"], 4)]
                   for c in cases])


def _verdicts(summary: dict) -> list[str]:
    from nnunet_anomaly.demo.report import _fmt

    n = summary["cases"]
    ens, base = summary["sample"]["ensemble"], summary["sample"]["intensity baseline"]
    chance_ap = n["pneumonia"] / max(n["pneumonia"] + n["healthy"], 1)
    best = max(quality.SAMPLE_AGGREGATES, key=lambda a: ens["auroc"][a])
    auroc = ens["auroc"]["mean"]
    lines = [f"* **Pneumonia vs healthy, sample-wise (the paper's score, the mean of the map)**: AUROC "
             f"{_fmt(auroc)}, AP {_fmt(ens['ap']['mean'])} over {n['pneumonia']} pneumonia and {n['healthy']} healthy "
             f"images (chance: AUROC 0.5, AP {chance_ap:.3f}, as {n['pneumonia']} of the {n['pneumonia'] + n['healthy']} "
             f"images are positive); the intensity baseline {_fmt(base['auroc']['mean'])} / {_fmt(base['ap']['mean'])}. "
             f"So the map's mean is higher on the pneumonia image in a fraction {_fmt(auroc)} of the (pneumonia, healthy) "
             f"pairs: {'better than' if auroc > 0.5 else 'NOT better than'} chance (0.5)"
             + (f", and NOT better than the intensity baseline." if auroc <= base["auroc"]["mean"] else "."),
             f"* **Other aggregates** (same maps): the best is {best}, AUROC {_fmt(ens['auroc'][best])}; the scores that "
             f"look only at an image's highest pixels (99th percentile {_fmt(ens['auroc']['percentile_99'])}, top 0.1 % "
             f"{_fmt(ens['auroc']['top_0.1%'])}) say whether one bright spot, not a diffuse rise, tells the groups apart."]
    pixel = summary["synthetic"]
    lines.append(f"* **Synthetic lesions on the held-out healthy radiographs, pixel-wise**: pooled AP "
                 f"{_fmt(pixel['ensemble']['pooled'])} (intensity baseline {_fmt(pixel['intensity baseline']['pooled'])}); "
                 f"with the healthy images as negatives {_fmt(pixel['ensemble']['pooled_with_healthy'])} "
                 f"(baseline {_fmt(pixel['intensity baseline']['pooled_with_healthy'])}). Each task is a training task "
                 "of one fold model: held-out images, not unseen anomaly types.")
    folds_mean = summary["sample"]["mean of the folds"]["auroc"]["mean"]
    lines.append(f"* **Ensemble vs its folds** (sample-wise AUROC, mean of map): {_fmt(auroc)} vs the folds' mean "
                 f"{_fmt(folds_mean)}.")
    return lines


def write_cxr_report(ws: Workspace) -> Path:
    """Write ``report/report.md``, ``report/quality.json`` and ``report/figures/*.png`` of the chest X-ray demo."""
    from nnunet_anomaly.demo.figures import plot_case_scores, plot_overlays, plot_validation
    from nnunet_anomaly.demo.report import _copy, _fmt, _table, command_block, copy_evaluation_figures, plot_synthetic_overlays, \
        start_report, time_per_step
    from nnunet_anomaly.tasks import TASK_NAMES

    s = ws.settings
    raw = ws.dataset_raw
    report_dir, figures, summaries, summary = start_report(ws, cxr_quality_summary)
    n = summary["cases"]

    ensemble_tasks = {t: {"ap": summary["synthetic"]["ensemble"].get(t),
                          "auroc": summary["synthetic"]["ensemble"]["auroc"].get(t)} for t in TASK_NAMES}
    plot_validation(figures / "demo_validation.png", summaries, ensemble_tasks, list(TASK_NAMES))
    groups = {}
    for name, aggregate in (("ensemble", "mean"), ("ensemble", "top_0.1%"), ("intensity baseline", "mean")):
        scores = summary["sample"][name]["scores"]
        groups[f"{name}: {aggregate}{' (paper)' if aggregate == 'mean' else ''}"] = {
            kind: {c: v[aggregate] for c, v in scores.items() if quality.case_kind(c) == kind}
            for kind in ("healthy", "pneumonia")}
    plot_case_scores(figures / "demo_case_scores.png", groups,
                     f"sample scores: {n['healthy']} held-out healthy vs {n['pneumonia']} pneumonia radiographs")
    scores = summary["sample"]["ensemble"]["scores"]
    by_kind = {kind: sorted((c for c in scores if quality.case_kind(c) == kind), key=lambda c: scores[c]["mean"])
               for kind in ("healthy", "pneumonia")}
    # the highest-scoring healthy image, and the lowest- and highest-scoring pneumonia images
    picked = [c for c in (by_kind["healthy"][-1:] + by_kind["pneumonia"][:1] + by_kind["pneumonia"][-1:])]
    plot_overlays(figures / "demo_overlays_radiographs.png",
                  [(f"{c.replace('test_', '')}\nmean {scores[c]['mean']:.3g}", raw / TEST_IMAGES / f"{c}_0000.nii.gz",
                    ws.workdir / "predictions" / "ensemble" / f"{c}.npz", None) for c in dict.fromkeys(picked)],
                  "real radiographs (no pixel truth for pneumonia): the ensemble's maps")
    plot_synthetic_overlays(ws, figures, "synthetic tasks on held-out healthy radiographs: the ensemble")
    montage = _copy(ws.workdir / "task_montage" / "tasks_2d.png", figures / "demo_tasks_2d.png")
    evaluation_figures = [name for _, name in copy_evaluation_figures(ws, figures, ("radiographs", "synthetic"))]
    commands = partial(command_block, ws)

    quick = s.name.endswith("quick")
    flag = " --setting cxr" + (" --quick" if quick else "")
    info = _read_source(ws)
    md = [f"# nnunet-anomaly chest X-ray demo report{' (--quick)' if quick else ''}", ""]
    md += [f"Generated {_now()} by `nnunet_anomaly demo{flag}`. Trainer `{s.trainer}`, configuration "
           f"`{s.configuration}` (128 x 128 patches of the 256 x 256 radiograph), folds {list(s.folds)} of T = 1 (each "
           f"fold model trains on ONE synthetic task and is validated on the other four), device `{ws.device}`, "
           f"{ws.jobs} job(s) at a time. In the commands, `$WORKDIR` is the demo's working folder; every command ran "
           "with `nnUNet_raw=$WORKDIR/nnUNet_raw nnUNet_preprocessed=$WORKDIR/nnUNet_preprocessed "
           "nnUNet_results=$WORKDIR/nnUNet_results`.", ""]
    if quick:
        md += ["> **--quick run**: a few training iterations; the numbers below only show that the pipeline "
               "works and mean nothing about the method.", ""]
    md += [f"> **How few images this is**: the models train on **{n['training']} healthy radiographs** (each fold "
           f"model on {max(n['training'] - 1, 1)} of them; the fifth validates it). The test set is **{n['healthy']} held-out "
           f"healthy and {n['pneumonia']} pneumonia radiographs** (sample-wise only: pneumonia has no pixel mask here) and "
           f"**{n['synthetic']} synthetic lesions** made on those {n['healthy']} healthy images (pixel-wise). With "
           f"{n['healthy']} healthy test images a sample-wise AUROC moves in steps of 1/{n['healthy'] * n['pneumonia']}, "
           "and one image changes it by a third: these numbers show whether the pipeline works on real radiographs "
           "and roughly what the maps respond to, not how well the method detects pneumonia. The paper trains on "
           "10,478 healthy adult radiographs (VinDr-CXR) and tests on thousands.", ""]
    md += ["## Does it find anomalies?", "", *_verdicts(summary), "",
           "Sample-wise AUROC / AP over the test images (pneumonia = positive), per aggregate of the map (`mean` is "
           "the paper's sample score; `top_0.1%`: the score exceeded by 0.1 % of the pixels), for the ensemble "
           "(`nnunet_anomaly predict`: the folds' probabilities averaged), each fold alone, the mean over folds and "
           "the intensity baseline (the image itself, min-max scaled: its mean is the image's mean brightness after "
           "the preprocessing; where it separates the groups, so does something other than a local anomaly, such "
           "as how much dark background or collimation an image has). Computed from the maps by "
           "the report (`report/quality.json`); `nnunet_anomaly evaluate --setting cxr` gives the paper's three "
           "aggregates in section 5.", "", _sample_table(summary), "",
           "![sample scores per case](figures/demo_case_scores.png)", "",
           "![overlays, real radiographs](figures/demo_overlays_radiographs.png)", "",
           "Per case (ensemble):", "", _case_table(summary), "",
           "### What these numbers can and cannot show", "",
           f"* They **can** show that the whole 2D path runs on real radiographs (JPEG in, maps out), that the maps "
           "on healthy images stay low, where they light up, and whether pneumonia images score higher on average.",
           f"* They **cannot** show pneumonia detection in general: {n['healthy']} + {n['pneumonia']} images from one "
           "public set, and the groups differ in more than disease. The healthy and pneumonia files come from "
           "different batches of the Kermany set (other sizes, aspect ratios and JPEG compression: the crop to one "
           "aspect ratio removes the largest difference, not all), the patients are children (the paper's are "
           "adults), and two pneumonia images are of the same child (`person1946`). A sample score that separates "
           "the groups may be seeing any of this.",
           "* Pneumonia is diffuse consolidation, not a bounded lesion like the synthetic tasks, and it has no pixel "
           "mask here: nothing pixel-wise is claimed for it. The pixel-wise numbers are on the synthetic lesions, "
           "whose kinds the fold models trained on (held-out images, not unseen anomaly types).", ""]
    md += ["## What is synthetic and what is real", "",
           f"* **Images**: real paediatric chest radiographs (anterior-posterior), {info}.",
           f"* **Training**: {n['training']} healthy images (drawn with seed {TRAIN_SEED}), with nnU-Net's augmentation "
           "without mirroring and rotations of at most 15 degrees (`AnomalyTaskTrainer_demo2d`), because five images "
           "are few. The synthetic tasks' external pool (inter-dataset blending) is scikit-image's natural images, "
           "the trainers' built-in 2D pool (the paper: ImageNet).",
           f"* **Preprocessing**: every image cropped centrally to width / height = {ASPECT} (see "
           "`radiograph_input/cases.json`), then `Dataset505_Radiographs` (the paper's: resize to 512, histogram "
           "equalisation, [-1, 1], resize to 256 x 256).",
           f"* **Real test images**: {n['healthy']} healthy and {n['pneumonia']} bacterial-pneumonia radiographs, with "
           "image-level labels only (`imagesTs_imagelevel`, `labelsTs_imagelevel`).",
           f"* **Synthetic lesions**: each of the five tasks applied to each held-out healthy image "
           f"({s.synthetic_cases_per_task} case(s) per task).", ""]
    md += ["## 1. Data", "", commands("dataset"), "",
           "## 2. Planning and preprocessing", "", commands("plan_and_preprocess"), ""]
    md += ["## 3. Training and per-task synthetic validation", "",
           commands(*(f"train_fold_{f}" for f in s.folds)), "",
           "Each fold model on its held-out synthetic tasks, applied to its one validation image (pixel AP / AUROC "
           "from `nnUNet_results/.../fold_X/validation/summary.json`, written by the trainer):", ""]
    weights = dict(zip((summary["ensemble"] or {}).get("folds", []), (summary["ensemble"] or {}).get("weights", [])))
    rows = []
    for fold, fold_summary in summaries.items():
        per_task = fold_summary.get("per_task", {})
        pooled = fold_summary.get("pooled", {})
        rows.append([f"fold {fold}", ", ".join(fold_summary.get("train_tasks", [])),
                     *(f"{_fmt(per_task[t]['ap'])} / {_fmt(per_task[t]['auroc'])}" if t in per_task else "(trained)"
                       for t in TASK_NAMES),
                     f"{_fmt(pooled.get('ap'))} / {_fmt(pooled.get('auroc'))}",
                     _fmt(fold_summary.get("pooled_with_healthy", {}).get("ap")), _fmt(weights.get(str(fold)))])
    md += [_table(["model", "trained on", *TASK_NAMES, "pooled", "with healthy", "ensemble weight"], rows), "",
           "![per-task synthetic validation](figures/demo_validation.png)", ""]
    md += ["## 4. Prediction and ensembling", "",
           commands("synthetic_test", "predict_ensemble", "predict_synthetic_ensemble",
                    *(f"predict_fold_{f}" for f in s.folds)), "",
           "Pixel AP per synthetic task on the held-out healthy radiographs (the whole image scored); 'pooled + "
           "healthy images' adds those images as they are as negatives; the last column is the score exceeded by "
           "1 % / 0.1 % of the healthy test images' pixels:", "", _synthetic_table(summary, TASK_NAMES), "",
           "![overlays, synthetic tasks](figures/demo_overlays_synthetic.png)", "",
           "Overlays: the whole radiograph, as displayed; green contour: ground truth (synthetic cases only). The "
           "colour scale runs from 0 to the largest score in the figure.", ""]
    md += ["## 5. Evaluation with the paper's protocol (`nnunet_anomaly evaluate --setting cxr`)", "",
           commands("evaluate"), "",
           "The real radiographs have image-level labels (a pneumonia image's 'mask' is the whole image): read "
           "their sample-wise rows; their pixel-wise numbers mean nothing.", ""]
    for title, folder in (("Real radiographs: pneumonia vs healthy", "radiographs"),
                          ("Synthetic tasks on held-out healthy radiographs", "synthetic")):
        table_path = ws.workdir / "evaluation" / folder / "table.md"
        if table_path.is_file():
            md += [f"### {title}", "", table_path.read_text().strip(), ""]
    for name in evaluation_figures:
        md += [f"![{name}](figures/{name})", ""]
    md += ["## 6. The synthetic tasks", "", commands("show_tasks"), ""]
    if montage:
        md += ["![task montage](figures/demo_tasks_2d.png)", ""]
    md += time_per_step(ws, cxr_steps(ws))
    write_text(report_dir / "report.md", "\n".join(md) + "\n")
    return report_dir / "report.md"


def _read_source(ws: Workspace) -> str:
    """Where the radiographs came from, in words, from the cache's ``source.json``."""
    from nnunet_anomaly.offline_radiographs import CITATION, PACKAGE

    source = getattr(ws, "radiograph_source", None) or {}
    package = source.get("package", PACKAGE)
    if package != PACKAGE:
        return f"from a stand-in cache ({package})"
    return (f"from the PyPI package `{PACKAGE}` (only its images, cached at set-up by `make radiographs`), which "
            f"took them from the Kermany et al. set: {source.get('citation', CITATION)}")
