"""How large the fixed synthetic validation set must be for the selection it makes (issue 16, item 6).

For trained folds of a ``bench_quality.py`` working folder, the fold's validation set is built at several
sizes (``validation_max_pairs``) exactly as the trainer builds it, scored with the fold's checkpoint, and
the selection metric (pooled pixel AP with the healthy negatives) is given with its sampling error: the
SD over bootstrap resamples of the patches (:func:`nnunet_anomaly.nnunet.validation.bootstrap_ap_spread`).
With ``--other`` (a second working folder, the same folds trained differently) the paired SD of the
*difference* between the two models on the same patches is given too: that is the error of the
comparison a selection makes, to be set against the difference itself.

Command (CPU, a few minutes)::

    .venv/bin/python benchmarks/bench_validation_size.py --workdir /tmp/bq/canvas --other /tmp/bq/new_base \\
        --sizes 20 40 80 160 320
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

DATASET, CONFIGURATION = "Dataset990_MNIDemo", "3d_demo"


def _scores(trainer, samples, checkpoint: Path):
    """Per-sample scored probabilities and targets of `samples` under the weights of `checkpoint`."""
    import torch

    from nnunet_anomaly.nnunet.losses import output_to_map

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    trainer.network.load_state_dict(state["network_weights"])
    trainer.network.eval()
    scores, targets = [], []
    with torch.no_grad():
        for start in range(0, len(samples), 8):
            batch = samples[start:start + 8]
            output = trainer.network(torch.from_numpy(np.stack([s.image for s in batch])))
            highest = output[0] if trainer.enable_deep_supervision else output
            maps = output_to_map(highest.float(), trainer.output_activation)[:, 0].numpy()
            for sample, probabilities in zip(batch, maps):
                s, m = probabilities.ravel(), sample.mask.ravel()
                if sample.scored is not None:
                    s, m = s[sample.scored], m[sample.scored]
                scores.append(s)
                targets.append(m)
    return scores, targets


def measure(workdir: Path, other: Path | None, folds, sizes, trainer_name: str) -> list[dict]:
    # before nnU-Net is imported: it reads its folders once
    os.environ["nnUNet_raw"] = str(workdir / "raw")
    os.environ["nnUNet_preprocessed"] = str(workdir / "preprocessed")
    os.environ["nnUNet_results"] = tempfile.mkdtemp(prefix="bench_validation_size_")  # the trainer's log lands here
    os.environ["nnunet_anomaly_pool"] = str(workdir / "raw" / DATASET / "external_pool")
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    from nnunet_anomaly.evaluation import average_precision
    from nnunet_anomaly.nnunet.validation import bootstrap_ap_spread
    model = f"{trainer_name}__nnUNetPlans__{CONFIGURATION}"
    rows = []
    for fold in folds:
        trainer = get_trainer_from_args("990", CONFIGURATION, fold, trainer_name, device=torch.device("cpu"))
        trainer.initialize()
        train_keys, val_keys = trainer.do_split()
        _, val_pool, inter_pool = trainer._resolve_tasks_and_pools(train_keys, val_keys)
        for size in sizes:
            trainer.validation_max_pairs = size
            samples = trainer._build_validation_samples(val_keys, val_pool, inter_pool)
            a = _scores(trainer, samples, workdir / "results" / DATASET / model / f"fold_{fold}" / "checkpoint_final.pth")
            row = {"fold": fold, "pairs": len(samples), "ap": float(average_precision(np.concatenate(a[0]),
                                                                                      np.concatenate(a[1]))),
                   "sd": bootstrap_ap_spread(*a)}
            if other is not None:
                b = _scores(trainer, samples, other / "results" / DATASET / model / f"fold_{fold}" / "checkpoint_final.pth")
                row["other_ap"] = float(average_precision(np.concatenate(b[0]), np.concatenate(b[1])))
                row["paired_sd"] = bootstrap_ap_spread(a[0], a[1], b[0])
            rows.append(row)
            print(row, flush=True)
    return rows


def markdown(rows) -> str:
    lines = ["| fold | patches | AP with healthy | its SD | other model's AP | difference | paired SD of the difference |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        other = (f"{r['other_ap']:.3f} | {r['ap'] - r['other_ap']:+.3f} | {r['paired_sd']:.3f}" if "other_ap" in r
                 else "| |")
        lines.append(f"| {r['fold']} | {r['pairs']} | {r['ap']:.3f} | {r['sd']:.3f} | {other} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a finished bench_quality.py working folder")
    parser.add_argument("--other", type=Path, default=None, help="a second one (same folds, other training)")
    parser.add_argument("--trainer", default="AnomalyTaskTrainer_demo")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 80, 160])
    args = parser.parse_args(argv)
    print(markdown(measure(args.workdir.absolute(), args.other and args.other.absolute(), args.folds, args.sizes,
                           args.trainer)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
