"""The demo's resumable step runner: a working folder, its commands and logs, and done-stamps.

A step is a unit of work that owns some folders and produces some outputs. :meth:`Workspace.run_steps`
runs steps in order like ``make``: a step whose done-stamp and outputs exist is reused unless a step
before it was redone after it. A step's folders are deleted before it (re)starts, and its stamp is
written last and atomically, so an interrupted step (Ctrl-C, SIGTERM) is redone from scratch.

Consecutive steps of the same ``group`` are independent of each other (the fold models, say): up to
``jobs`` of them run at once, each in its own thread driving its own subprocess. Ctrl-C stops every
running tool.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from itertools import groupby
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from nnunet_anomaly._io import write_json
from nnunet_anomaly.demo.settings import PLANS, STATE_FOLDER, DemoSettings

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
    #: consecutive steps with the same non-empty group are independent and may run at the same time
    group: str = ""


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
    jobs : int
        Steps of one group (see :class:`Step`) that run at the same time.
    """

    def __init__(self, workdir, settings: DemoSettings, *, device: str = "cpu", num_processes: int = 2,
                 verbose: bool = False, real_lesion_sources: dict | None = None, jobs: int = 1):
        self.workdir = Path(workdir).absolute()
        self.settings = settings
        self.device = device
        self.num_processes = int(num_processes)
        self.verbose = verbose
        self.jobs = max(1, int(jobs))
        self._running: set[subprocess.Popen] = set()  # the tools running now (several inside a group)
        self._lock = threading.Lock()
        self._thread = threading.local()  # per step thread: the row of its progress bars
        #: CPU seconds (user + system) of each step's commands, children included
        self.cpu_seconds: dict[str, float] = {}
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
        return self.raw / self.settings.dataset_name

    @property
    def model_folder(self) -> Path:
        s = self.settings
        return self.results / s.dataset_name / f"{s.trainer}__{PLANS}__{s.configuration}"

    def fold_folder(self, fold: int) -> Path:
        return self.model_folder / f"fold_{fold}"

    def rel(self, path) -> str:
        """`path` relative to the working folder (for the report: no machine paths in it)."""
        try:
            return str(Path(path).relative_to(self.workdir))
        except ValueError:
            return str(path)

    # -------------------------------------------------------------------- environment
    def environment(self, *, training: bool = False, single_threaded: bool = False) -> dict:
        """The subprocesses' environment: our own nnU-Net roots, never the user's.

        `single_threaded` caps nnU-Net's prediction at one torch thread (``nnUNet_def_n_proc=1``), for
        tools that run at the same time as others.
        """
        env = dict(os.environ)
        env.update(nnUNet_raw=str(self.raw), nnUNet_preprocessed=str(self.preprocessed),
                   nnUNet_results=str(self.results))
        env.setdefault("nnUNet_compile", "false")
        env.setdefault("MPLBACKEND", "Agg")
        env["PYTHONUNBUFFERED"] = "1"  # the tools' output reaches the log (and the epoch bar) as it happens
        env.pop("nnunet_anomaly_pool", None)
        if training:
            # the inter-dataset blending task draws from the demo set's external pool (one rule, see
            # nnunet_anomaly.nnunet.sources; 2D: the built-in natural images, as no pool is set); on CPU
            # nnU-Net's spawned augmentation workers cost more than they give on two cores, so augmentation
            # runs in the main process
            if self.settings.setting == "brain":
                env["nnunet_anomaly_pool"] = str(self.dataset_raw / "external_pool")
            if self.device == "cpu":
                env["nnUNet_n_proc_DA"] = "0"
        else:
            env.pop("nnUNet_n_proc_DA", None)  # planning must not see it
        if single_threaded:
            env["nnUNet_def_n_proc"] = "1"
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
            with self._lock:
                self._running.add(process)
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
                code, cpu = _wait_with_cpu_time(process)
                with self._lock:
                    self.cpu_seconds[step] = self.cpu_seconds.get(step, 0.0) + cpu
            except BaseException:
                # Ctrl-C (or any error here): stop the child before leaving; the step has no stamp
                process.kill()
                process.wait()
                raise
            finally:
                with self._lock:
                    self._running.discard(process)
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
            # a linear pipeline of groups, like make: a step is reused only if no step before its group
            # was (re)done after it
            latest = 0.0
            index = 0
            for _, members in groupby(steps, key=lambda step: step.group or object()):
                members = list(members)
                todo = []
                for step in members:
                    index += 1
                    prefix = f"[{index}/{len(steps)}] {step.title}"
                    if self.is_done(step) and self._stamp_time(step) >= latest:
                        self._load_commands(step)
                        tqdm.write(f"{prefix}: done earlier, reused")
                        bar.update(1)
                    else:
                        todo.append((prefix, step))
                if len(todo) <= 1 or self.jobs == 1:
                    for prefix, step in todo:
                        self._run_step(prefix, step, bar)
                else:
                    self._run_concurrently(todo, bar)
                latest = max([latest, *(self._stamp_time(step) for step in members)])

    def _run_concurrently(self, todo, bar) -> None:
        """Run independent steps in threads, at most ``jobs`` at once; the first failure stops the rest."""
        pool = ThreadPoolExecutor(max_workers=min(self.jobs, len(todo)))
        futures = [pool.submit(self._run_step, prefix, step, bar, position=1 + i) for i, (prefix, step) in
                   enumerate(todo)]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                raise failed[0].exception()
        except BaseException:
            for future in futures:
                future.cancel()
            self.stop_running_tools()
            raise
        finally:
            pool.shutdown(wait=True)

    @property
    def bar_position(self) -> int:
        """The screen row for the progress bars of the step running in this thread (1 when run alone)."""
        return getattr(self._thread, "bar_position", 1)

    def stop_running_tools(self) -> None:
        """Kill every tool that a step is running (Ctrl-C, or a failure in a concurrent group)."""
        with self._lock:
            running = list(self._running)
        for process in running:
            process.kill()

    def _run_step(self, prefix: str, step: Step, bar, position: int = 1) -> None:
        from tqdm.auto import tqdm

        tqdm.write(f"{prefix} ... (log: {self.rel(self.logs / (step.name + '.log'))})")
        for folder in step.owned:  # an interrupted earlier attempt is redone from a clean folder
            if Path(folder).exists():
                shutil.rmtree(folder) if Path(folder).is_dir() else Path(folder).unlink()
        (self.logs / f"{step.name}.log").unlink(missing_ok=True)
        self.commands.pop(step.name, None)
        self.cpu_seconds.pop(step.name, None)
        started = time.monotonic()
        self._thread.bar_position = position
        step.action(self)
        seconds = time.monotonic() - started
        cpu_seconds = self.cpu_seconds.get(step.name, 0.0)
        missing = [self.rel(p) for p in step.outputs if not Path(p).exists()]
        if missing:
            raise StepFailed(f"step {step.name!r} finished but did not produce {', '.join(missing)}")
        write_json(self.stamp_path(step), {"step": step.name, "key": step.key, "finished_at": time.time(),
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

    def elapsed_seconds(self) -> float:
        """Wall-clock seconds from the start of the earliest stamped step until now."""
        starts = []
        for path in (self.state / "stamps").glob("*.json"):
            stamp = json.loads(path.read_text())
            starts.append(float(stamp.get("finished_at", time.time())) - float(stamp.get("seconds", 0.0)))
        return time.time() - min(starts) if starts else 0.0

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


def _wait_with_cpu_time(process: subprocess.Popen) -> tuple[int, float]:
    """Wait for `process`; its exit code and the CPU seconds it and its children used.

    ``os.wait4`` reaps exactly this child with its own resource usage, so steps that run at the same
    time each count only their own tools' CPU time (a machine-independent measure of the work).
    """
    if not hasattr(os, "wait4"):  # pragma: no cover - not a POSIX system
        return process.wait(), float("nan")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
    return process.returncode, usage.ru_utime + usage.ru_stime


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
