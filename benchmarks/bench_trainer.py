"""Seconds per iteration of AnomalyTaskTrainer against plain nnUNetTrainer at the same configuration.

Both trainers are built in one process on the same preprocessed dataset, plans, configuration and
fold (nnU-Net fold 0 and task fold 0 train on the same four data blocks), then run alternately, one
iteration each by default (A B, B A, A B, ...), so that a change in machine load hits both alike.
Every iteration is split into the time blocked in ``next(dataloader)`` (data loading and
augmentation, including our synthetic anomalies) and ``train_step`` (forward, backward, optimiser);
the process CPU time is recorded too. The first ``--warmup`` iterations of each trainer are dropped.

By default a small dataset is written from the bundled real anatomy (MNI152 2 mm brain for 3D, the
pydicom-data chest radiograph for 2D; no download), planned with nnU-Net and given a benchmark
configuration; ``--dataset``/``--configuration`` use an existing preprocessed dataset instead (e.g.
the paper presets on a GPU). With ``--da-workers 0`` data loading runs in the main process, so the
data time is its full cost; with workers it is the time the GPU waited, i.e. whether they keep up.

    nice python benchmarks/bench_trainer.py --dims 3 2          # CPU, what benchmarks/README.md records
    python benchmarks/bench_trainer.py --device cuda --dims 3 --configuration 3d_paper --da-workers 12
    python benchmarks/bench_trainer.py --device cuda --dataset 501 --configuration 3d_paper --da-workers 12

Prints a Markdown table and writes it with the raw timings as JSON (``--json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUM_CASES = 10  # two per nnU-Net fold block
# CPU benchmark configurations: the paper's topology rule (nnU-Net's get_pool_and_conv_props), smaller patches
BENCH_CONFIGS = {
    3: dict(name="3d_bench", base="3d_fullres", patch_size=(48, 48, 48), batch_size=2, base_features=16),
    2: dict(name="2d_bench", base="2d", patch_size=(128, 128), batch_size=4, base_features=16),
}


# ----------------------------------------------------------------------------------------- dataset
def _write_dataset(raw: Path, dims: int, seed: int = 0) -> str:
    """A 10-case dataset from the bundled real anatomy with smooth random intensity changes per case."""
    import SimpleITK as sitk
    from PIL import Image
    from scipy import ndimage

    from nnunet_anomaly.offline_data import chest_radiograph, mni152_brain

    rng = np.random.default_rng(seed)
    name = "Dataset981_BenchBrain" if dims == 3 else "Dataset982_BenchCXR"
    folder = raw / name
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    if dims == 3:
        image, mask, spacing = mni152_brain(resolution_mm=2)
    else:
        image, mask, spacing = chest_radiograph(size=256), None, None
    for i in range(NUM_CASES):
        field = ndimage.gaussian_filter(rng.normal(size=image.shape), 8)
        case = image * (1 + 2 * field / (np.abs(field).max() + 1e-8) * 0.1) + rng.normal(0, 0.05, image.shape)
        if dims == 3:
            case = np.where(mask, case, 0).astype(np.float32)
            for array, sub, suffix, dtype in ((case, "imagesTr", "_0000", np.float32), (mask, "labelsTr", "", np.uint8)):
                itk = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)).astype(dtype))
                itk.SetSpacing(tuple(float(s) for s in spacing))
                sitk.WriteImage(itk, str(folder / sub / f"case_{i:03d}{suffix}.nii.gz"))
        else:
            grey = np.clip(np.round((case + 1) * 127.5), 0, 255).astype(np.uint8)
            Image.fromarray(grey).save(folder / "imagesTr" / f"case_{i:03d}_0000.png")
            Image.fromarray(np.ones_like(grey)).save(folder / "labelsTr" / f"case_{i:03d}.png")
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1" if dims == 3 else "zscore"},
        "labels": {"background": 0, "brain" if dims == 3 else "body": 1},
        "numTraining": NUM_CASES, "file_ending": ".nii.gz" if dims == 3 else ".png"}, indent=2))
    return name


def _prepare(work: Path, dims: int, preset: str | None = None) -> tuple[str, str]:
    """Write, plan and preprocess the benchmark dataset; add the benchmark configuration (or `preset`)."""
    from nnunet_anomaly.nnunet.planning import add_configuration, add_preset

    config = BENCH_CONFIGS[dims]
    config_name = preset or config["name"]
    name = "Dataset981_BenchBrain" if dims == 3 else "Dataset982_BenchCXR"
    plans = work / "preprocessed" / name / "nnUNetPlans.json"
    if not plans.is_file():
        name = _write_dataset(work / "raw", dims)
        dataset_id = name[len("Dataset"):len("Dataset") + 3]
        env = {k: v for k, v in os.environ.items() if k != "nnUNet_n_proc_DA"}  # 0 would crash planning
        command = [str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"), "-d", dataset_id, "-c",
                   config["base"], "-np", "1", "-npfp", "1", "--no_pbar"]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"planning failed:\n{(result.stdout + result.stderr)[-3000:]}")
    if preset:
        add_preset(plans, preset, force=True)
    else:
        add_configuration(plans, config_name, patch_size=config["patch_size"], batch_size=config["batch_size"],
                          base_configuration=config["base"], base_features=config["base_features"], force=True)
    return name, config_name


# ----------------------------------------------------------------------------------------- timing
def _build_trainer(trainer_name: str, dataset: str, configuration: str, device):
    """The trainer exactly as ``nnUNetv2_train DATASET CONFIGURATION 0 -tr NAME`` builds it, ready to iterate."""
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(str(dataset), configuration, 0, trainer_name, device=device)
    trainer.on_train_start()  # network, optimiser, data loaders (and our fixed validation set)
    trainer.on_train_epoch_start()
    return trainer


def _time_iterations(trainer, iterations: int) -> tuple[list, list, list]:
    """Wall time in ``next(dataloader)`` and in ``train_step``, and the process CPU time, per iteration."""
    data_s, step_s, cpu_s = [], [], []
    for _ in range(iterations):
        cpu_start, start = time.process_time(), time.perf_counter()
        batch = next(trainer.dataloader_train)
        loaded = time.perf_counter()
        trainer.train_step(batch)  # returns the loss on the CPU, so CUDA work has finished
        data_s.append(loaded - start)
        step_s.append(time.perf_counter() - loaded)
        cpu_s.append(time.process_time() - cpu_start)
    return data_s, step_s, cpu_s


def benchmark(dataset: str, configuration: str, trainers: list[str], *, iterations: int, rounds: int,
              warmup: int, device: str = "cpu") -> dict:
    """Alternate the trainers for `rounds` rounds of `iterations` iterations; return per-trainer timings."""
    import torch

    built = {name: _build_trainer(name, dataset, configuration, torch.device(device)) for name in trainers}
    times = {name: {"data_s": [], "step_s": [], "cpu_s": []} for name in trainers}
    for name, trainer in built.items():  # warm-up (first iterations allocate, fill caches, start workers)
        _time_iterations(trainer, warmup)
    for r in range(rounds):
        for name in (trainers if r % 2 == 0 else trainers[::-1]):
            for key, values in zip(("data_s", "step_s", "cpu_s"), _time_iterations(built[name], iterations)):
                times[name][key] += values
    for trainer in built.values():
        for loader in (trainer.dataloader_train, trainer.dataloader_val):
            if hasattr(loader, "_finish"):
                loader._finish()
    return times


def summarise(times: dict, reference: str) -> list[dict]:
    """Means, medians, data share and ratios to `reference`.

    ``paired_ratio`` is the median over iterations of (this trainer's i-th iteration / the reference's
    i-th iteration): neighbouring iterations share the machine's load, so it resists load changes.
    ``cpu_ratio`` compares process CPU time, which does not count time spent waiting for the CPU.
    """
    ref_wall = np.add(times[reference]["data_s"], times[reference]["step_s"])
    ref_cpu = float(np.mean(times[reference]["cpu_s"]))
    rows = []
    for name, t in times.items():
        wall = np.add(t["data_s"], t["step_s"])
        data, step = float(np.mean(t["data_s"])), float(np.mean(t["step_s"]))
        cpu = float(np.mean(t["cpu_s"]))
        rows.append(dict(trainer=name, s_per_it=data + step, median_s_per_it=float(np.median(wall)), data_s=data,
                         step_s=step, data_share=data / (data + step), ratio=(data + step) / float(np.mean(ref_wall)),
                         paired_ratio=float(np.median(wall / ref_wall)), cpu_s_per_it=cpu, cpu_ratio=cpu / ref_cpu,
                         n=len(wall)))
    return rows


def markdown(rows: list[dict], title: str) -> str:
    lines = [f"**{title}**", "", "| trainer | s/it (mean) | s/it (median) | data s/it | step s/it | data share "
             "| ratio of means | paired median ratio | CPU s/it | CPU-time ratio | iterations |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['trainer']} | {r['s_per_it']:.3f} | {r['median_s_per_it']:.3f} | {r['data_s']:.3f} | "
                     f"{r['step_s']:.3f} | {100 * r['data_share']:.1f}% | {r['ratio']:.2f}x | "
                     f"{r['paired_ratio']:.2f}x | {r['cpu_s_per_it']:.3f} | {r['cpu_ratio']:.2f}x | {r['n']} |")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or 'CPU'} ({os.cpu_count()} cores)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", choices=(2, 3), default=[3, 2],
                        help="built-in benchmark datasets to run (ignored with --dataset)")
    parser.add_argument("--dataset", help="existing preprocessed dataset id/name (needs nnUNet_preprocessed)")
    parser.add_argument("--configuration", help="configuration of --dataset; without --dataset, a planning preset "
                        "added to the built-in dataset (3d_paper / 2d_paper: the paper's patch, batch and stages)")
    parser.add_argument("--trainers", nargs="+", default=["AnomalyTaskTrainer", "nnUNetTrainer"],
                        help="trainer names; the last one is the reference of the ratio")
    parser.add_argument("--iterations", type=int, default=1, help="iterations per trainer per round")
    parser.add_argument("--rounds", type=int, default=30, help="rounds; the trainer order reverses every round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per trainer before round 1")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--da-workers", type=int, default=0, help="nnUNet_n_proc_DA (0: load in this process)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--workdir", type=Path, help="keep raw/preprocessed/results here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.dataset and not args.configuration:
        parser.error("--dataset needs --configuration")
    if args.configuration and not args.dataset and len(args.dims) != 1:
        parser.error("a preset --configuration on the built-in data needs one of --dims 3 or --dims 2")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_trainer_"))
    if not args.dataset:
        for sub in ("raw", "preprocessed", "results"):
            os.environ[f"nnUNet_{sub}"] = str(work / sub)
    else:
        os.environ.setdefault("nnUNet_results", str(work / "results"))
    os.environ.setdefault("nnUNet_def_n_proc", str(os.cpu_count() or 2))
    os.environ.setdefault("nnUNet_compile", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")

    if args.dataset:
        jobs = [(args.dataset, args.configuration)]
    else:
        jobs = [_prepare(work, d, args.configuration) for d in args.dims]
    os.environ["nnUNet_n_proc_DA"] = str(args.da_workers)  # after planning (0 crashes the planner)

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else _cpu_name()
    header = (f"{device_name}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"nnUNet_n_proc_DA={args.da_workers}; {args.rounds} alternating rounds x {args.iterations} "
              f"iterations after {args.warmup} warm-up iterations")
    report, results = [header, ""], []
    for dataset, configuration in jobs:
        times = benchmark(dataset, configuration, args.trainers, iterations=args.iterations, rounds=args.rounds,
                          warmup=args.warmup, device=args.device)
        rows = summarise(times, args.trainers[-1])
        results.append(dict(dataset=dataset, configuration=configuration, rows=rows, times=times))
        report += [markdown(rows, f"{dataset} / {configuration}"), ""]
        print("\n".join(report[-2:]), flush=True)
    print("\n".join(report))
    if args.json:
        args.json.write_text(json.dumps(dict(header=header, results=results), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
