"""``nnunet_anomaly demo``: the resumable step runner, the synthetic held-out set, and (slow) the real run.

The slow test runs the real pipeline end to end with ``--quick`` (real dataset build, nnU-Net planning,
training, prediction, evaluation, report) and checks the report and every figure it links to.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from nnunet_anomaly import demo
from nnunet_anomaly.demo import DEMO, QUICK, Step, StepFailed, Workspace, build_synthetic_test_set


# ------------------------------------------------------------------------------------------ step runner
def _file_step(name, folder, calls, *, fail=None):
    """A step that writes `folder/out.txt` (and counts its calls); `fail` is raised midway if given."""
    def action(ws):
        calls.append(name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "partial.txt").write_text("half")
        if fail is not None:
            raise fail
        (folder / "out.txt").write_text("done")
    return Step(name, f"make {name}", (folder,), (folder / "out.txt",), action)


def test_finished_steps_are_reused(tmp_path):
    ws = Workspace(tmp_path, QUICK)
    calls = []
    steps = [_file_step("a", tmp_path / "a", calls), _file_step("b", tmp_path / "b", calls)]
    ws.run_steps(steps)
    assert calls == ["a", "b"]
    stamp = json.loads(ws.stamp_path(steps[0]).read_text())
    assert stamp["step"] == "a" and stamp["seconds"] >= 0
    ws.run_steps(steps)
    assert calls == ["a", "b"], "a second run must reuse both finished steps"
    # a stamp without its output does not count: the step is redone
    (tmp_path / "b" / "out.txt").unlink()
    ws.run_steps(steps)
    assert calls == ["a", "b", "b"]
    # redoing an earlier step makes every later step stale (their inputs changed)
    (tmp_path / "a" / "out.txt").unlink()
    ws.run_steps(steps)
    assert calls == ["a", "b", "b", "a", "b"]
    ws.run_steps(steps)
    assert calls == ["a", "b", "b", "a", "b"]


def test_interrupted_step_leaves_no_stamp_and_restarts_clean(tmp_path):
    ws = Workspace(tmp_path, QUICK)
    calls = []
    interrupted = _file_step("a", tmp_path / "a", calls, fail=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        ws.run_steps([interrupted])
    assert not ws.stamp_path(interrupted).exists()
    assert (tmp_path / "a" / "partial.txt").exists()  # what the interrupted attempt left
    # the next run removes the half-written folder before redoing the step
    seen = {}

    def check_clean(ws_):
        seen["partial_before"] = (tmp_path / "a" / "partial.txt").exists()
        (tmp_path / "a").mkdir(parents=True, exist_ok=True)
        (tmp_path / "a" / "out.txt").write_text("done")

    ws.run_steps([Step("a", "make a", (tmp_path / "a",), (tmp_path / "a" / "out.txt",), check_clean)])
    assert seen["partial_before"] is False
    assert ws.stamp_path(interrupted).exists()


def test_kill_stops_the_running_tool_and_leaves_no_stamp(tmp_path):
    """SIGTERM (like Ctrl-C) stops the tool the step is running; the step gets no stamp."""
    import signal
    import time

    pid_file = tmp_path / "tool.pid"
    script = (
        "import signal, sys\n"
        "from pathlib import Path\n"
        "from nnunet_anomaly import demo\n"
        "from nnunet_anomaly.demo.cli import _interrupt\n"
        f"ws = demo.Workspace({str(tmp_path)!r}, demo.QUICK)\n"
        "signal.signal(signal.SIGTERM, _interrupt)\n"
        "tool = 'import os, time; open(%r, \"w\").write(str(os.getpid())); time.sleep(120)' % "
        f"{str(pid_file)!r}\n"
        "step = demo.Step('slow', 'slow', (), (Path('never'),), lambda ws: ws.command('slow', [sys.executable, '-c', tool]))\n"
        "ws.run_steps([step])\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pid_file.is_file(), process.stderr.read().decode()[-2000:] if process.poll() is not None else "no tool started"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) != 0
    tool_pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(tool_pid, 0)  # the tool is gone (and was reaped)
    assert not (tmp_path / ".demo" / "stamps" / "slow.json").exists()


def test_steps_own_disjoint_folders_and_record_their_own_commands(tmp_path):
    """Redoing one step must never delete another step's results; each command is filed under its step."""
    class Recorder(Workspace):
        def command(self, step, argv, **kwargs):
            self.commands.setdefault(step, []).append(argv)

    ws = Recorder(tmp_path, DEMO, device="cpu", real_lesion_sources={"brain1": None})
    steps = demo.demo_steps(ws)
    names = [step.name for step in steps]
    assert len(set(names)) == len(names)
    for step in steps:
        if step.name not in ("synthetic_test", "real_lesions", "report"):  # in-process steps
            step.action(ws)
            assert step.name in ws.commands, f"step {step.name} filed its commands elsewhere: {sorted(ws.commands)}"
    assert set(ws.commands) <= set(names)
    for step in steps:
        for other in steps:
            if other is step:
                continue
            for owned in step.owned:
                for path in (*other.owned, *other.outputs):
                    path = Path(path)
                    assert path != owned and owned not in path.parents, \
                        f"redoing {step.name} would delete {other.name}'s {path}"


def test_other_settings_in_the_same_workdir_are_refused(tmp_path):
    Workspace(tmp_path, QUICK).run_steps([])
    with pytest.raises(ValueError, match="other settings"):
        Workspace(tmp_path, DEMO).run_steps([])


def test_command_logs_progress_and_failure(tmp_path):
    ws = Workspace(tmp_path, QUICK)

    class Bar:
        n = 0

        def refresh(self):
            pass

    bar = Bar()
    script = "import sys; print('2026-01-01 00:00:00.0: Epoch 0'); print('2026-01-01 00:00:01.0: Epoch 1')"
    ws.command("train_fold_0", [sys.executable, "-c", script], progress=bar, progress_pattern=r"Epoch (\d+)\s*$")
    assert bar.n == 2
    log = (tmp_path / "logs" / "train_fold_0.log").read_text()
    assert "Epoch 1" in log and log.startswith("$ python -c")
    assert ws.commands["train_fold_0"][0].startswith("python -c")
    with pytest.raises(StepFailed, match=r"exited with status 3[\s\S]*boom"):
        ws.command("bad", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])


def test_environment_uses_the_workdir_and_never_the_callers(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", "/somewhere/else")
    monkeypatch.setenv("nnUNet_n_proc_DA", "12")
    before = dict(os.environ)
    ws = Workspace(tmp_path, QUICK, device="cpu")
    planning = ws.environment()
    training = ws.environment(training=True)
    assert planning["nnUNet_raw"] == str(tmp_path.absolute() / "nnUNet_raw")
    assert planning["nnUNet_results"] == str(tmp_path.absolute() / "nnUNet_results")
    assert "nnUNet_n_proc_DA" not in planning  # planning must not see it
    assert training["nnUNet_n_proc_DA"] == "0"
    assert training["nnunet_anomaly_pool"].endswith(os.path.join("Dataset990_MNIDemo", "external_pool"))
    assert dict(os.environ) == before
    # on a GPU nnU-Net's own worker count (here the caller's) stays
    assert Workspace(tmp_path, QUICK, device="cuda").environment(training=True)["nnUNet_n_proc_DA"] == "12"


def test_report_commands_use_workdir_not_machine_paths(tmp_path):
    ws = Workspace(tmp_path, QUICK)
    shown = ws._shown_argv([sys.executable, "-m", "nnunet_anomaly", "evaluate", "-o", str(tmp_path / "evaluation"),
                            "--names", "nnU-Net ensemble"])
    assert shown == 'python -m nnunet_anomaly evaluate -o $WORKDIR/evaluation --names "nnU-Net ensemble"'


def test_bad_arguments_give_one_clear_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nnunet_anomaly", "demo", "--workdir", str(tmp_path),
                             "--num-processes", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "--num-processes must be >= 1" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------ synthetic set
def _write(path, array, spacing=(4.0, 4.0, 4.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((1.0, 2.0, 3.0))
    sitk.WriteImage(image, str(path))


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_synthetic_test_set_on_held_out_images(tmp_path):
    rng = np.random.default_rng(0)
    dataset = tmp_path / "Dataset990_MNIDemo"
    grid = np.indices((32, 36, 32)).astype(np.float32)
    brain = ((grid[0] - 16) ** 2 / 13 ** 2 + (grid[1] - 18) ** 2 / 15 ** 2 + (grid[2] - 16) ** 2 / 13 ** 2) < 1
    for i in range(2):
        image = np.where(brain, 1.0 + 0.3 * rng.normal(size=brain.shape), 0.0).astype(np.float32)
        _write(dataset / "imagesTs" / f"test_healthy_{i:03d}_0000.nii.gz", image)
        _write(dataset / "brainmasksTs" / f"test_healthy_{i:03d}.nii.gz", brain.astype(np.uint8))
    _write(dataset / "imagesTs" / "test_tumour_000_0000.nii.gz", np.ones(brain.shape, np.float32))  # not used
    for i in range(2):
        _write(dataset / "external_pool" / "images" / f"pool_{i}.nii.gz",
               np.where(brain, rng.uniform(0, 1, brain.shape), 0).astype(np.float32))
    before = _digest(dataset)
    records = build_synthetic_test_set(dataset, tmp_path / "synthetic", cases_per_task=2, seed=0)
    assert _digest(dataset) == before, "the dataset must not be modified"
    made = [r for r in records if "skipped" not in r]
    assert {r["task"] for r in made} == {"intra_blend", "inter_blend", "sink", "source", "smooth_intensity"}
    for record in made:
        assert record["source_image"].startswith("test_healthy_")  # held-out healthy images only
        label = sitk.ReadImage(str(tmp_path / "synthetic" / "labelsTs" / f"{record['case']}.nii.gz"))
        image = sitk.ReadImage(str(tmp_path / "synthetic" / "imagesTs" / f"{record['case']}_0000.nii.gz"))
        assert label.GetSpacing() == image.GetSpacing() == (4.0, 4.0, 4.0) and image.GetOrigin() == (1.0, 2.0, 3.0)
        mask = sitk.GetArrayFromImage(label) > 0
        assert mask.sum() == record["anomalous_voxels"] > 0
    # deterministic: the same seed writes the same files
    build_synthetic_test_set(dataset, tmp_path / "again", cases_per_task=2, seed=0)
    assert _digest(tmp_path / "synthetic" / "labelsTs") == _digest(tmp_path / "again" / "labelsTs")
    with pytest.raises(FileNotFoundError, match="test_healthy"):
        build_synthetic_test_set(tmp_path / "nothing", tmp_path / "x")


# ------------------------------------------------------------------------------------------ the real run
@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    """The real pipeline on the tiny setting: every step through the real CLIs, then a valid report."""
    workdir = tmp_path / "demo"
    env = dict(os.environ, MPLBACKEND="Agg")
    # no real lesions (a folder without them): the same steps whether or not this machine cached them
    no_lesions = ["--real-lesions", str(tmp_path / "no_real_lesions")]
    run = subprocess.run([sys.executable, "-m", "nnunet_anomaly", "demo", "--quick", "--device", "cpu",
                          "--workdir", str(workdir), *no_lesions], capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = workdir / "report" / "report.md"
    assert f"report at {report}" in run.stdout.strip().splitlines()[-1]
    text = report.read_text()
    for needed in ("Does it find lesions?", "What is synthetic and what is real", "nnUNetv2_train 990",
                   "nnunet_anomaly predict", "nnUNetv2_predict", "nnunet_anomaly evaluate",
                   "nnUNetv2_plan_and_preprocess -d 990", "| fold 0 |", "| fold 1 |", "| **ensemble** |",
                   "| mean of the folds |", "| intensity baseline |", "Random"):
        assert needed in text, f"report lacks {needed!r}"
    assert str(tmp_path) not in text, "the report must not contain machine paths"
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", text)
    assert {"figures/demo_validation.png", "figures/demo_overlays_lesions.png",
            "figures/demo_overlays_synthetic.png", "figures/demo_tasks_3d.png"} <= set(figures)
    for figure in figures:
        with Image.open(report.parent / figure) as image:
            image.verify()
        with Image.open(report.parent / figure) as image:
            assert image.format == "PNG" and min(image.size) > 100
            pixels = np.asarray(image.convert("L"))
            assert pixels.std() > 5, f"{figure} is blank"
    # each fold's synthetic validation fed the table
    for fold in QUICK.folds:
        assert (workdir / "nnUNet_results" / "Dataset990_MNIDemo" / f"{QUICK.trainer}__nnUNetPlans__{QUICK.configuration}"
                / f"fold_{fold}" / "validation" / "summary.json").is_file()
    results = json.loads((workdir / "evaluation" / "ensemble" / "results.json").read_text())
    assert results  # written by nnunet_anomaly evaluate
    quality = json.loads((report.parent / "quality.json").read_text())
    assert set(quality["lesions"]) == {"ensemble", "fold 0", "fold 1", "mean of the folds", "intensity baseline"}
    assert quality["ensemble"]["average"] == "probability" and quality["ensemble"]["folds"] == ["0", "1"]
    assert 0 <= quality["synthetic"]["ensemble"]["pooled"] <= 1
    # a second run reuses every step
    again = subprocess.run([sys.executable, "-m", "nnunet_anomaly", "demo", "--quick", "--device", "cpu",
                            "--workdir", str(workdir), *no_lesions], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    steps = demo.demo_steps(Workspace(workdir, QUICK))
    assert again.stdout.count("done earlier, reused") + again.stderr.count("done earlier, reused") == len(steps)


# ------------------------------------------------------------------------------------------ real lesions
def _head_with_lesion(rng, shape=(16, 64, 64)):
    """A head-like (z, y, x) volume: bright scalp, dark skull, textured brain, a bright lesion."""
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(((grid[0] - centre[0]) / (shape[0] / 2)) ** 2 + ((grid[1] - centre[1]) / 30) ** 2
                + ((grid[2] - centre[2]) / 30) ** 2)
    volume = np.where(r < 1.0, 900.0, 0.0) + np.where(r < 0.85, -800.0, 0.0) + np.where(r < 0.75, 500.0, 0.0)
    volume += np.where(r < 0.75, 40 * rng.normal(size=shape), 0)
    lesion = ((grid[0] - centre[0]) ** 2 / 4 + (grid[1] - 36) ** 2 / 36 + (grid[2] - 28) ** 2 / 36) < 1
    volume[lesion] += 700
    return volume.astype(np.int16), lesion.astype(np.int32)


def test_real_lesions_found_in_the_cached_sdist_and_prepared(tmp_path):
    import tarfile

    rng = np.random.default_rng(0)
    staging = tmp_path / "staging" / "pyradiomics_bhklab-3.1.4" / "data"
    staging.mkdir(parents=True)
    for case in ("brain1", "brain2"):
        volume, lesion = _head_with_lesion(rng)
        for array, kind in ((volume, "image"), (lesion, "label")):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((1.0, 1.0, 3.0))
            image.SetDirection((1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))  # LAS, like the real files
            sitk.WriteImage(image, str(staging / f"{case}_{kind}.nrrd"))
    cache = tmp_path / "cache"
    cache.mkdir()
    with tarfile.open(cache / "pyradiomics_bhklab-3.1.4.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "staging" / "pyradiomics_bhklab-3.1.4", arcname="pyradiomics_bhklab-3.1.4")
    assert demo.find_real_lesions(tmp_path / "absent") is None
    assert demo.find_real_lesions(tmp_path / "staging" / "pyradiomics_bhklab-3.1.4" / "data" / "..") is not None
    sources = demo.find_real_lesions(cache)
    assert set(sources) == {"brain1", "brain2"}
    before = _digest(cache)
    records = demo.prepare_real_lesions(sources, tmp_path / "out", skull_strip="crude")  # ROBEX: 1 min a head
    assert _digest(cache) == before
    for record in records:
        image = sitk.ReadImage(str(tmp_path / "out" / "imagesTs" / f"{record['case']}_0000.nii.gz"))
        label = sitk.ReadImage(str(tmp_path / "out" / "labelsTs" / f"{record['case']}.nii.gz"))
        assert image.GetSpacing() == label.GetSpacing() == (4.0, 4.0, 4.0)
        assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == "RAS"
        array, mask = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label) > 0
        assert mask.sum() == record["lesion_voxels"] > 0
        brain = array != 0
        assert abs(array[brain].mean()) < 1e-3 and abs(array[brain].std() - 1) < 1e-2  # z-scored in the brain
        assert array[mask].mean() > array[brain & ~mask].mean() + 1  # the lesion stays bright
        # the crude mask peeled the scalp: far fewer voxels than the whole head at 4 mm
        assert record["brain_mask"].startswith("crude")
        head_voxels = np.pi * 4 / 3 * (30 / 4) ** 2 * (16 * 3 / 2 / 4)
        assert brain.sum() < 0.7 * head_voxels


# ------------------------------------------------------------------------------------------ quality numbers
def test_lesion_quality_scores_inside_the_brain_per_type_and_separates_healthy_cases():
    from sklearn.metrics import average_precision_score

    from nnunet_anomaly.demo import quality

    rng = np.random.default_rng(0)
    brain = np.zeros((6, 8, 8), bool)
    brain[1:5, 1:7, 1:7] = True
    cases, maps = {}, {}
    for name, lesion_value in (("test_tumour_000", 0.9), ("test_cyst_000", 0.6), ("test_healthy_000", None)):
        truth = np.zeros(brain.shape, bool)
        score = np.where(brain, rng.uniform(0, 0.3, brain.shape), 0.95)  # the background would be a false positive
        if lesion_value is not None:
            truth[2:4, 3:5, 3:5] = True
            score[truth] = lesion_value
        cases[name] = {"image": score, "truth": truth, "brain": brain}
        maps[name] = score
    row = quality.lesion_quality({"model": maps}, cases)["model"]
    assert row["ap"]["tumour"] == row["ap"]["cyst"] == 1.0  # the background does not count
    healthy_brain = maps["test_healthy_000"][brain]
    assert row["healthy"]["score_exceeded_by_1%"] == pytest.approx(np.quantile(healthy_brain, 0.99))
    assert row["highest_healthy_case"] < 0.3 < 0.6 == pytest.approx(row["lowest_lesion_case"])
    truth = np.concatenate([cases[c]["truth"][brain] for c in ("test_tumour_000", "test_healthy_000")])
    scores = np.concatenate([maps[c][brain] for c in ("test_tumour_000", "test_healthy_000")])
    assert row["ap_with_healthy"]["tumour"] == pytest.approx(average_precision_score(truth, scores))
    synthetic = quality.synthetic_quality({"model": {"sink_000": maps["test_tumour_000"]}},
                                          {"sink_000": cases["test_tumour_000"]})["model"]
    assert synthetic["sink"] == synthetic["pooled"] == 1.0
    mean = quality.mean_of_folds([row, quality.lesion_quality({"m": maps}, cases)["m"]])
    assert mean["ap"]["cyst"] == 1.0
