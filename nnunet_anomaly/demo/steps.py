"""The demo's steps, in order: each is one or more real commands (see :func:`demo_steps`)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from nnunet_anomaly._io import write_json
from nnunet_anomaly.demo.real_lesions import prepare_real_lesions
from nnunet_anomaly.demo.runner import Step, Workspace, _tool
from nnunet_anomaly.demo.settings import CHECKPOINT, CXR_DATASET_NAME, DATASET_NAME, PLANS
from nnunet_anomaly.demo.synthetic import build_synthetic_test_set


def _build_dataset(ws: Workspace) -> None:
    argv = [sys.executable, "-m", "nnunet_anomaly.dataset_conversion.Dataset990_MNIDemo",
            "-o", ws.raw, "-np", ws.num_processes, "--num-training", ws.settings.num_training,
            "--num-test-healthy", ws.settings.num_test_healthy, "--num-test-per-anomaly", ws.settings.num_test_per_anomaly]
    from nnunet_anomaly.dataset_conversion.Dataset990_MNIDemo import TRAIN_ANATOMIES

    if getattr(ws, "brains", None):
        argv += ["--brains", ws.brains]
    anatomies = getattr(ws, "train_anatomies", None)
    if anatomies and list(anatomies) != list(TRAIN_ANATOMIES):  # some were not fetched
        argv += ["--train-anatomies", *anatomies]
    ws.command("dataset", argv, env_shown=())


def _plan_and_preprocess(ws: Workspace) -> None:
    s = ws.settings
    argv = [*_tool("nnUNetv2_plan_and_preprocess"), "-d", s.dataset_id, "-c", s.base_configuration,
            "-np", ws.num_processes, "-npfp", ws.num_processes]
    ws.command("plan_and_preprocess", argv)
    if ws.settings.configuration != ws.settings.base_configuration:
        # the small demo configuration: the whole 4 mm brain (or the whole 256 x 256 radiograph) as one patch
        # (one sliding-window tile per image), 8 base features and one convolution per stage; it reuses the
        # preprocessed data of the base configuration
        patch = [str(p) for p in s.patch_size]
        ws.command("plan_and_preprocess", [sys.executable, "-m", "nnunet_anomaly.nnunet.planning", "add-config",
                                           "-d", s.dataset_id, "--name", s.configuration, "--patch", *patch,
                                           "--batch", s.batch_size, "--features", s.features,
                                           "--convs-per-stage", s.convs_per_stage, "--base", s.base_configuration])


def _train(fold: int) -> Callable[[Workspace], None]:
    def action(ws: Workspace) -> None:
        from tqdm.auto import tqdm

        argv = [*_tool("nnUNetv2_train"), ws.settings.dataset_id, ws.settings.configuration, fold,
                "-tr", ws.settings.trainer, "-device", ws.device]
        env = ws.environment(training=True)
        shown = [k for k in ("nnunet_anomaly_pool", "nnUNet_n_proc_DA") if k in env]
        with tqdm(desc=f"  fold {fold} epochs", unit="epoch", position=ws.bar_position, leave=False,
                  total=_trainer_epochs(ws.settings.trainer)) as epochs:
            ws.command(f"train_fold_{fold}", argv, env=env, progress=epochs,
                       progress_pattern=r"Epoch (\d+)\s*$", env_shown=shown)
    return action


def _trainer_epochs(trainer: str) -> int | None:
    """The trainer's epoch count, for the progress bar (None when it cannot be read cheaply)."""
    try:
        import nnunet_anomaly.trainers as trainers

        epochs = getattr(getattr(trainers, trainer), "epochs", None)
        return None if epochs is None else int(epochs)
    except Exception:  # only a progress bar depends on it
        return None


#: the inputs the demo predicts: the demo test set, the synthetic held-out set, the real lesions
INPUTS = {"lesions": ("nnUNet_raw", DATASET_NAME, "imagesTs"), "synthetic": ("synthetic_test", "imagesTs"),
          "real": ("real_lesions", "imagesTs"), "both": ("fold_inputs",),
          "radiographs": ("nnUNet_raw", CXR_DATASET_NAME, "imagesTs_imagelevel")}


def _predict_ensemble(name: str, inputs: str, step: str) -> Callable[[Workspace], None]:
    """The documented ensemble: ``nnunet_anomaly predict`` (probabilities averaged, folds weighted)."""
    def action(ws: Workspace) -> None:
        ws.command(step, _predict_argv(ws, "nnunet_anomaly", inputs, ws.workdir / "predictions" / name,
                                       ws.settings.folds))
    return action


def _predict_fold(fold: int) -> Callable[[Workspace], None]:
    """One fold model alone on the test set and the synthetic held-out set together (nnU-Net's own prediction).

    One command per fold (``fold_inputs/`` links both sets' images): each start of nnU-Net costs seconds.
    """
    def action(ws: Workspace) -> None:
        env = ws.environment(single_threaded=True)  # the folds run at the same time, one core each
        ws.command(f"predict_fold_{fold}", _predict_argv(ws, "nnUNetv2_predict", "both",
                                                         ws.workdir / "predictions" / f"fold_{fold}", (fold,)), env=env)
    return action


def _predict_argv(ws: Workspace, tool: str, inputs: str, output, folds) -> list:
    s = ws.settings
    verb = [*_tool("nnunet_anomaly"), "predict"] if tool == "nnunet_anomaly" else _tool(tool)
    argv = [*verb, "-i", ws.workdir.joinpath(*INPUTS[inputs]), "-o", output, "-d", s.dataset_id, "-c",
            s.configuration, "-tr", s.trainer, "-f", *folds, "-chk", CHECKPOINT, "--save_probabilities", "-npp", 0,
            "-nps", 0, "-device", ws.device]
    return argv + (["--disable_tta"] if s.disable_tta else [])


def _evaluate(ws: Workspace) -> None:
    raw = ws.dataset_raw
    evaluate = [sys.executable, "-m", "nnunet_anomaly", "evaluate"]
    common = ["-g", raw / "labelsTs", "--images", raw / "imagesTs", "--test-set", "demo synthetic lesions",
              "--quiet"]
    ws.command("evaluate", [*evaluate, "-p", ws.workdir / "predictions" / "ensemble", "--names", "ensemble",
                            "-o", ws.workdir / "evaluation" / "ensemble", "--baselines", *common])
    synthetic = ws.workdir / "synthetic_test"
    ws.command("evaluate", [*evaluate, "-p", ws.workdir / "predictions" / "synthetic_ensemble",
                            "--names", "ensemble", "-g", synthetic / "labelsTs", "--images", synthetic / "imagesTs",
                            "--test-set", "synthetic tasks, held-out images", "-o", ws.workdir / "evaluation" / "synthetic",
                            "--baselines", "--quiet"])


def _evaluate_real_lesions(ws: Workspace) -> None:
    real = ws.workdir / "real_lesions"
    ws.command("evaluate_real_lesions", [
        sys.executable, "-m", "nnunet_anomaly", "evaluate", "-p", ws.workdir / "predictions" / "real_lesions_ensemble",
        "--names", "ensemble", "-g", real / "labelsTs", "--images", real / "imagesTs",
        "--test-set", "real lesions (domain-shifted smoke test)", "-o", ws.workdir / "evaluation" / "real_lesions",
        "--baselines", "--quiet"])


def _show_tasks(ws: Workspace) -> None:
    ws.command("show_tasks", [sys.executable, "-m", "nnunet_anomaly", "show-tasks", "--setting", "3d",
                              "--resolution-mm", "4", "-o", ws.workdir / "task_montage"])


def _report(ws: Workspace) -> None:
    from nnunet_anomaly.demo.report import write_report  # the report lists the steps: imported late

    write_report(ws)


def demo_steps(ws: Workspace) -> list[Step]:
    """The demo's steps, in order, for the working folder `ws` (the chest X-ray demo's for ``--setting cxr``)."""
    s = ws.settings
    if s.setting == "cxr":
        from nnunet_anomaly.demo.cxr import cxr_steps

        return cxr_steps(ws)
    predictions = ws.workdir / "predictions"
    steps = [
        Step("dataset", "build the offline demo dataset (Dataset990_MNIDemo)", (ws.dataset_raw,),
             (ws.dataset_raw / "dataset.json",), _build_dataset),
        Step("plan_and_preprocess", "plan and preprocess (nnUNetv2_plan_and_preprocess)",
             (ws.preprocessed / DATASET_NAME,), (ws.preprocessed / DATASET_NAME / f"{PLANS}.json",),
             _plan_and_preprocess),
    ]
    for fold in s.folds:  # independent: trained at the same time (--jobs)
        steps.append(Step(f"train_fold_{fold}", f"train fold {fold} (nnUNetv2_train -tr {s.trainer})",
                          (ws.fold_folder(fold),), (ws.fold_folder(fold) / "checkpoint_final.pth",), _train(fold),
                          group="train"))
    steps.append(Step("predict_ensemble", f"predict the test set with the ensemble of folds {list(s.folds)}",
                      (predictions / "ensemble",), (predictions / "ensemble",),
                      _predict_ensemble("ensemble", "lesions", "predict_ensemble")))
    steps.append(Step("synthetic_test", "apply the five synthetic tasks to the held-out healthy test images",
                      (ws.workdir / "synthetic_test", ws.workdir / "fold_inputs"),
                      (ws.workdir / "synthetic_test" / "cases.json", ws.workdir / "fold_inputs"), _synthetic_test))
    steps.append(Step("predict_synthetic_ensemble", "predict the synthetic held-out set with the ensemble",
                      (predictions / "synthetic_ensemble",), (predictions / "synthetic_ensemble",),
                      _predict_ensemble("synthetic_ensemble", "synthetic", "predict_synthetic_ensemble")))
    for fold in s.folds:
        steps.append(Step(f"predict_fold_{fold}", f"predict the test set and the synthetic set with fold {fold}",
                          (predictions / f"fold_{fold}",), (predictions / f"fold_{fold}",), _predict_fold(fold),
                          group="predict_folds"))
    if ws.real_lesion_sources:
        real = ws.workdir / "real_lesions"
        steps += [
            Step("real_lesions", "prepare the real lesions (pyradiomics brain1/brain2) in the demo geometry",
                 (real,), (real / "cases.json",), _real_lesions),
            Step("predict_real_lesions", "predict the real lesions with the ensemble",
                 (predictions / "real_lesions_ensemble",), (predictions / "real_lesions_ensemble",),
                 _predict_ensemble("real_lesions_ensemble", "real", "predict_real_lesions")),
            Step("evaluate_real_lesions", "evaluate the real lesions (nnunet_anomaly evaluate)",
                 (ws.workdir / "evaluation" / "real_lesions",),
                 (ws.workdir / "evaluation" / "real_lesions" / "results.json",), _evaluate_real_lesions),
        ]
    steps += [
        Step("evaluate", "evaluate (nnunet_anomaly evaluate)",
             tuple(ws.workdir / "evaluation" / name for name in ("ensemble", "synthetic")),
             (ws.workdir / "evaluation" / "ensemble" / "results.json",
              ws.workdir / "evaluation" / "synthetic" / "results.json"), _evaluate),
        Step("show_tasks", "render the task montage (nnunet_anomaly show-tasks)", (ws.workdir / "task_montage",),
             (ws.workdir / "task_montage" / "tasks_3d.png",), _show_tasks),
        Step("report", "write the report", (ws.workdir / "report",), (ws.workdir / "report" / "report.md",), _report,
             key=f"real_lesions={'yes' if ws.real_lesion_sources else 'no'}"),
    ]
    return steps


def _synthetic_test(ws: Workspace) -> None:
    folder = ws.workdir / "synthetic_test"
    records = build_synthetic_test_set(ws.dataset_raw, folder, cases_per_task=ws.settings.synthetic_cases_per_task)
    ws.commands.setdefault("synthetic_test", []).append(
        "python -c 'from nnunet_anomaly.demo import build_synthetic_test_set; "
        f"build_synthetic_test_set(\"$WORKDIR/nnUNet_raw/{DATASET_NAME}\", \"$WORKDIR/synthetic_test\", "
        f"cases_per_task={ws.settings.synthetic_cases_per_task})'")
    write_json(folder / "cases.json", records)
    link_inputs(ws.workdir / "fold_inputs", [ws.dataset_raw / "imagesTs", folder / "imagesTs"])


def link_inputs(target, sources) -> None:
    """A folder of links to every image of `sources` (names must not clash): one nnU-Net input folder."""
    import os
    import shutil

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for source in sources:
        for image in sorted(Path(source).iterdir()):
            if (target / image.name).exists():
                raise ValueError(f"{image.name} is in two of {', '.join(map(str, sources))}")
            try:
                os.symlink(image.absolute(), target / image.name)
            except OSError:  # a file system without links: copy
                shutil.copyfile(image, target / image.name)


def _real_lesions(ws: Workspace) -> None:
    folder = ws.workdir / "real_lesions"
    records = prepare_real_lesions(ws.real_lesion_sources, folder)
    ws.commands.setdefault("real_lesions", []).append(
        "python -c 'from nnunet_anomaly.demo import find_real_lesions, prepare_real_lesions; "
        "prepare_real_lesions(find_real_lesions(\".cache/real_lesions\"), \"$WORKDIR/real_lesions\")'")
    write_json(folder / "cases.json", records)
