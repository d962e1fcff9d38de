"""``nnUNetv2_train ... --c``: a finished fold stays finished, and a fold killed anywhere resumes to a complete one.

The literal ``nnUNetv2_train`` runs on a tiny 3D dataset (``3d_tiny``). Test-local trainer variants
(found through an ``nnUNet_extTrainer`` folder, as users add their own) shorten the runs and, when the
environment variable ``NNUA_TEST_KILL`` says so, send themselves a real SIGKILL at one chosen point:

* ``train:E:I``: in iteration I of epoch E;
* ``save:NAME:E``: halfway through writing checkpoint NAME after E epochs (``*``: any), half the
  bytes on disk;
* ``validate:N``: after the N-th (case, task) of the final validation.
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nnunet_anomaly._io import TEMP_DIR_NAME

from _helpers import nnunet_environment, plan_and_preprocess_3d_fullres, write_tiny_brain_dataset

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DATASET_ID, DATASET = 993, "Dataset993_ResumeBrain"
SHAPE = (30, 36, 30)
VARIANTS = '''
import io
import os
import signal

import torch

from nnunet_anomaly.trainers import AnomalyTaskTrainer_ci

KILL = os.environ.get("NNUA_TEST_KILL", "")
_save = torch.save


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _save_then_maybe_die(obj, f, *args, **kwargs):
    """torch.save; for the chosen checkpoint, write half of it to the real target and get killed."""
    if KILL.startswith("save:") and isinstance(obj, dict) and "current_epoch" in obj:
        _, name, epoch = KILL.split(":")
        if name in os.path.basename(str(f)) and epoch in ("*", str(obj["current_epoch"])):
            buffer = io.BytesIO()
            _save(obj, buffer, *args, **kwargs)
            with open(f, "wb") as handle:
                handle.write(buffer.getvalue()[: buffer.tell() // 2])
                handle.flush()
                os.fsync(handle.fileno())
            _die()
    return _save(obj, f, *args, **kwargs)


torch.save = _save_then_maybe_die


class AnomalyTaskTrainer_stopsEarly(AnomalyTaskTrainer_ci):
    """Patience 0: stops after its first epoch, 7 epochs before num_epochs."""
    epochs = 8
    iterations_per_epoch = 2
    early_stopping_patience_steps = 0


class AnomalyTaskTrainer_killable(AnomalyTaskTrainer_ci):
    epochs = 4
    iterations_per_epoch = 3
    early_stopping_patience_steps = 6  # two epochs without a better moving average

    def on_train_start(self):
        self.save_every = 1  # checkpoint_latest after every epoch
        super().on_train_start()

    def on_train_epoch_start(self):
        self._iteration = 0
        super().on_train_epoch_start()

    def train_step(self, batch):
        if KILL == f"train:{self.current_epoch}:{self._iteration}":
            _die()
        self._iteration += 1
        return super().train_step(batch)

    def print_to_log_file(self, *args, **kwargs):
        super().print_to_log_file(*args, **kwargs)
        if KILL.startswith("validate:") and args and str(args[0]).startswith("validated "):
            self._validated = getattr(self, "_validated", 0) + 1
            if self._validated == int(KILL.split(":")[1]):
                _die()
'''


def _plan_in_process(env):
    with nnunet_environment({k: env[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") if k in env}):
        plan_and_preprocess_3d_fullres(DATASET_ID)


@pytest.fixture(scope="module")
def nnunet(tmp_path_factory):
    """Planned and preprocessed tiny dataset, the variants folder, and the environment of the CLI runs."""
    root = tmp_path_factory.mktemp("resume")
    env = {k: v for k, v in os.environ.items() if k not in ("nnUNet_n_proc_DA", "NNUA_TEST_KILL", "PYTHONPATH")}
    env.update(nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
               nnUNet_results=str(root / "results"), nnUNet_def_n_proc="2", nnUNet_compile="false",
               MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    write_tiny_brain_dataset(root / "raw", DATASET, SHAPE, seed=3)
    _plan_in_process(env)
    from nnunet_anomaly.nnunet.planning import add_preset
    add_preset(root / "preprocessed" / DATASET / "nnUNetPlans.json", "3d_tiny")
    variants = root / "variants"
    variants.mkdir()
    (variants / "resume_test_trainers.py").write_text(textwrap.dedent(VARIANTS))
    from nnunet_anomaly.plugin import ext_trainer_dir
    env["nnUNet_extTrainer"] = os.pathsep.join([ext_trainer_dir(), str(variants)])
    env["nnUNet_n_proc_DA"] = "0"
    return root, env


def _train(env, trainer, fold, *extra, kill=None):
    run_env = {**env, **({"NNUA_TEST_KILL": kill} if kill else {})}
    result = subprocess.run([str(BIN / "nnUNetv2_train"), str(DATASET_ID), "3d_tiny", str(fold), "-tr", trainer,
                             "-device", "cpu", *extra], env=run_env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    if kill:
        assert result.returncode == -signal.SIGKILL, f"expected a SIGKILL at {kill}:\n{output[-4000:]}"
    else:
        assert result.returncode == 0, output[-4000:]
    return output


def _fold(root, trainer, fold) -> Path:
    return root / "results" / DATASET / f"{trainer}__nnUNetPlans__3d_tiny" / f"fold_{fold}"


def _load(path):
    import torch
    return torch.load(str(path), map_location="cpu", weights_only=False)


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _logs(folder):
    return [p.read_text() for p in sorted(folder.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)]


def _validation_digests(texts):
    return {line.split("digest ")[1].split()[0] for text in texts for line in text.splitlines()
            if "validation set digest" in line}


def test_a_fold_that_stopped_early_stays_finished(nnunet):
    root, env = nnunet
    trainer = "AnomalyTaskTrainer_stopsEarly"
    first = _train(env, trainer, 0)
    assert "Early stopping" in first
    fold = _fold(root, trainer, 0)
    final, summary = fold / "checkpoint_final.pth", fold / "validation" / "summary.json"
    assert _load(final)["current_epoch"] == 1  # 1 of 8 epochs
    before = {p: (_digest(p), p.stat().st_mtime_ns) for p in (final, summary)}

    again = _train(env, trainer, 0, "--c")  # what the documented SLURM recipe does on every (re)submission
    assert "already finished (stopped early after 1 epochs)" in again
    assert not re.search(r": Epoch \d", _logs(fold)[-1])  # nothing was trained
    assert {p: (_digest(p), p.stat().st_mtime_ns) for p in (final, summary)} == before  # nor rewritten
    assert "summary.json of this finished fold is complete; it is kept" in again


def _hidden(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


def test_a_fold_killed_anywhere_resumes_to_a_complete_fold(nnunet):
    root, env = nnunet
    trainer = "AnomalyTaskTrainer_killable"
    fold = _fold(root, trainer, 4)

    _train(env, trainer, 4, kill="train:2:1")  # 1. mid-epoch
    at_kill = _load(fold / "checkpoint_latest.pth")
    assert at_kill["current_epoch"] == 2

    output = _train(env, trainer, 4, "--c", kill="save:checkpoint_latest:3")  # 2. while writing a checkpoint
    assert _load(fold / "checkpoint_latest.pth")["current_epoch"] == 2  # the previous one, whole
    assert "Restored checkpoint_latest.pth: 2 epochs trained" in output
    assert [p.name.split(".tmp")[0][:-9] for p in (fold / TEMP_DIR_NAME).iterdir()] == ["checkpoint_latest.pth"]

    _train(env, trainer, 4, "--c", kill="save:checkpoint_final:*")  # 3. while writing checkpoint_final
    assert not (fold / "checkpoint_final.pth").exists()  # only its hidden temporary file

    output = _train(env, trainer, 4, "--c", kill="validate:2")  # 4. during the final validation
    assert "left by a run killed while writing it" in output
    final = _load(fold / "checkpoint_final.pth")
    epochs = final["current_epoch"]
    assert not (fold / "validation" / "summary.json").exists()  # nothing half-done looks finished

    final_bytes = _digest(fold / "checkpoint_final.pth")
    output = _train(env, trainer, 4, "--c")  # 5. the same command again: the fold completes
    assert "already finished" in output and not re.search(r": Epoch \d", _logs(fold)[-1])
    assert _digest(fold / "checkpoint_final.pth") == final_bytes
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert summary["checkpoint"]["epochs_trained"] == epochs and summary["pooled"]["n_anomalous_voxels"] > 0
    assert not _hidden(fold) and not _hidden(fold / "validation")
    assert not (fold / "checkpoint_latest.pth").exists()

    # the log, the moving average and the early-stopping counter continued across every resumption
    log = final["logging"]
    assert all(len(values) == epochs for values in log.values()), {k: len(v) for k, v in log.items()}
    for key, values in at_kill["logging"].items():
        assert log[key][:2] == values, key  # the two epochs before the first kill, as they were
    ema, raw = log["ema_fg_dice"], log["mean_fg_dice"]
    for i in range(1, epochs):
        assert ema[i] == pytest.approx(0.9 * ema[i - 1] + 0.1 * raw[i])
    assert final["_best_ema"] == pytest.approx(max(ema))
    assert _load(fold / "checkpoint_best.pth")["current_epoch"] == int(np.argmax(ema)) + 1
    patience = 2  # epochs: 6 steps of 3 iterations
    stops = [e for e in range(epochs) if e - int(np.argmax(ema[:e + 1])) >= patience]
    if epochs < 4:  # stopped early, at the first epoch the counter allowed, counting across the resumptions
        assert stops[0] == epochs - 1
    else:
        assert set(stops) <= {3}
    assert len(_validation_digests(_logs(fold))) == 1  # the same fixed validation set in every run
