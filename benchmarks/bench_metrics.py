"""Pixel-level AP and AUROC on whole-test-set sizes: ours (exact, the default) against scikit-learn.

Each measurement runs in a fresh subprocess, so its peak memory is its own: the process builds the
test data (float32 scores as nnU-Net writes them, bool targets, 2 % positives, written chunk by chunk
so that building them peaks at the data size), notes its resident size, runs one metric call, and
reports the wall time, the peak resident size above the data (VmHWM after the call, its mark reset
just before, minus RSS before the call; ``ru_maxrss`` where the mark cannot be reset) and
tracemalloc's peak of the call. Both sides get the same float32 scores, so both compute the exact
metric; the script prints |ours - sklearn| too. ``--float16`` adds our ``quantise="float16"`` (the
MOOD protocol's rounding) as a third method.

``--test-set N`` instead times what ``nnunet_anomaly evaluate`` does with one scored map of a whole
test set: N cases of 80 x 112 x 80 float32 voxels (the paper's brain canvas; 285 cases = BraTS, 2e8
voxels) summarised case by case (``SortedScores``, exact; ``ScoreHistogram``, float16), then the
pooled AP and AUROC and the paper's chunked AP (chunks of 20 cases, 10 orderings), with the memory
the summaries hold.

Usage (the machine is shared: compare the ratios of one run, not absolute times)::

    nice -n 19 python benchmarks/bench_metrics.py                 # 5e7 and 2e8 voxels, sklearn at both (~15 min)
    nice -n 19 python benchmarks/bench_metrics.py --sizes 1e6     # a quick check
    nice -n 19 python benchmarks/bench_metrics.py --test-set 285  # one map of a BraTS-sized test set
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

METHODS = ("ours_ap", "ours_auroc", "sklearn_ap", "sklearn_auroc")
FLOAT16_METHODS = ("ours16_ap", "ours16_auroc")
PREVALENCE = 0.02


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0), so building the data does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _make_data(n: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    scores = np.empty(n, np.float32)
    targets = np.empty(n, bool)
    step = 1 << 20
    for start in range(0, n, step):
        stop = min(n, start + step)
        positive = rng.random(stop - start) < PREVALENCE
        # a plausible sigmoid output: mostly near 0, higher on the anomaly, overlapping
        raw = rng.beta(0.6, 6.0, stop - start) + 0.35 * positive * rng.random(stop - start)
        scores[start:stop] = np.clip(raw, 0, 1)
        targets[start:stop] = positive
    return scores, targets


def worker(method: str, n: int, seed: int) -> dict:
    import tracemalloc

    scores, targets = _make_data(n, seed)
    if method.startswith("sklearn"):
        from sklearn.metrics import average_precision_score, roc_auc_score

        function = {"sklearn_ap": lambda: average_precision_score(targets, scores),
                    "sklearn_auroc": lambda: roc_auc_score(targets, scores)}[method]
    else:
        from nnunet_anomaly.evaluation import auroc, average_precision

        function = {"ours_ap": lambda: average_precision(scores, targets),
                    "ours_auroc": lambda: auroc(scores, targets),
                    "ours16_ap": lambda: average_precision(scores, targets, quantise="float16"),
                    "ours16_auroc": lambda: auroc(scores, targets, quantise="float16")}[method]
    peak_was_reset = _reset_peak()
    rss_before = _rss_bytes()
    data_bytes = scores.nbytes + targets.nbytes
    tracemalloc.start()
    start = time.perf_counter()
    value = float(function())
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = _peak_rss_bytes()
    return {"peak_reset": peak_was_reset, "method": method, "n": n, "value": value, "seconds": seconds, "data_mb": data_bytes / 2**20,
            "peak_above_data_mb": max(0, peak - rss_before) / 2**20, "tracemalloc_peak_mb": traced_peak / 2**20}


CASE_SHAPE = (80, 112, 80)


def test_set(n_cases: int, seed: int) -> list[dict]:
    """Summarise `n_cases` synthetic float32 maps case by case, then the pooled and chunked metrics."""
    import numpy as np

    from nnunet_anomaly.evaluation import ScoreHistogram, SortedScores, chunked_average_precision

    rows = []
    for name in ("exact (SortedScores)", "float16 (ScoreHistogram)"):
        rng = np.random.default_rng(seed)
        cases, build = [], 0.0
        for index in range(n_cases):
            truth = np.zeros(CASE_SHAPE, bool)
            if index % 3:  # two thirds of the cases have a lesion
                z, y, x = rng.integers(10, 50), rng.integers(10, 80), rng.integers(10, 50)
                truth[z:z + 20, y:y + 20, x:x + 20] = rng.random((20, 20, 20)) < 0.7
            scores = np.clip(rng.beta(0.6, 6.0, CASE_SHAPE) + 0.35 * truth * rng.random(CASE_SHAPE), 0, 1)
            scores = scores.astype(np.float32)
            start = time.perf_counter()
            if name.startswith("exact"):
                cases.append(SortedScores.from_scores(scores, truth))
            else:
                cases.append(ScoreHistogram.from_scores(scores, truth).sparse())
            build += time.perf_counter() - start
        held = sum(c.nbytes if hasattr(c, "nbytes") and not isinstance(c, tuple) else sum(a.nbytes for a in c)
                   for c in cases)
        start = time.perf_counter()
        pooled = SortedScores.pooled(cases) if name.startswith("exact") else ScoreHistogram.from_sparse(*cases)
        ap, area = (pooled.metrics() if name.startswith("exact") else (pooled.average_precision(), pooled.auroc()))
        pooled_seconds = time.perf_counter() - start
        start = time.perf_counter()
        chunked = chunked_average_precision(cases)["mean"]
        chunked_seconds = time.perf_counter() - start
        rows.append({"summary": name, "cases": n_cases, "voxels": n_cases * int(np.prod(CASE_SHAPE)),
                     "build_s": build, "held_mb": held / 2**20, "pooled_s": pooled_seconds,
                     "chunked_s": chunked_seconds, "ap": ap, "auroc": area, "chunked_ap": chunked})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _run(method, n, seed, timeout):
    command = [sys.executable, __file__, "--worker", method, str(n), str(seed)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"method": method, "n": n, "error": f"over the {timeout:.0f} s budget"}
    if completed.returncode != 0:
        tail = (completed.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
        return {"method": method, "n": n, "error": f"exit {completed.returncode}: {tail}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=float, default=[5e7, 2e8])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per measurement")
    parser.add_argument("--sklearn-max", type=float, default=2e8,
                        help="largest size sklearn runs at (default 2e8: it needs about 10 GB there)")
    parser.add_argument("--float16", action="store_true",
                        help="also time quantise='float16' (MOOD's rounding; not exact on float32 scores)")
    parser.add_argument("--test-set", type=int, metavar="N_CASES",
                        help="time one scored map of a whole test set of N 80x112x80 cases instead (see above)")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "N", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.test_set:
        rows = test_set(args.test_set, args.seed)
        print("\n| summary | cases | voxels | summarising (all cases) | memory held | pooled AP + AUROC | chunked AP "
              "(10 x chunks of 20) | pooled AP | chunked AP |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['summary']} | {r['cases']} | {r['voxels']:.1e} | {r['build_s']:.1f} s | {r['held_mb']:.0f} MB | "
                  f"{r['pooled_s']:.1f} s | {r['chunked_s']:.1f} s | {r['ap']:.6f} | {r['chunked_ap']:.6f} |")
        return 0
    if args.worker:
        method, n, seed = args.worker
        print(json.dumps(worker(method, int(n), int(seed))))
        return 0

    import numpy
    import sklearn

    print(f"# python {platform.python_version()}, numpy {numpy.__version__}, scikit-learn {sklearn.__version__}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    rows = []
    methods = METHODS + (FLOAT16_METHODS if args.float16 else ())
    for n in (int(size) for size in args.sizes):
        for method in methods:
            if method.startswith("sklearn") and n > args.sklearn_max:
                row = {"method": method, "n": n, "error": f"not run (--sklearn-max {args.sklearn_max:.0e})"}
            else:
                row = _run(method, n, args.seed, args.timeout)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| voxels | metric | ours: time | sklearn: time | speed-up | ours: peak above data | sklearn: peak above data "
          "| memory ratio | abs. difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (int(size) for size in args.sizes):
        for metric in ("ap", "auroc"):
            ours = next(r for r in rows if r["n"] == n and r["method"] == f"ours_{metric}")
            theirs = next(r for r in rows if r["n"] == n and r["method"] == f"sklearn_{metric}")
            if "error" in ours:
                print(f"| {n:.0e} | {metric} | {ours['error']} | | | | | | |")
                continue
            if "error" in theirs:
                print(f"| {n:.0e} | {metric} | {ours['seconds']:.2f} s | {theirs['error']} | | "
                      f"{ours['peak_above_data_mb']:.0f} MB | | | |")
                continue
            print(f"| {n:.0e} | {metric} | {ours['seconds']:.2f} s | {theirs['seconds']:.1f} s | "
                  f"{theirs['seconds'] / ours['seconds']:.0f}x | {ours['peak_above_data_mb']:.0f} MB "
                  f"(traced {ours['tracemalloc_peak_mb']:.0f}) | {theirs['peak_above_data_mb']:.0f} MB "
                  f"(traced {theirs['tracemalloc_peak_mb']:.0f}) | "
                  f"{ours['peak_above_data_mb'] / max(theirs['peak_above_data_mb'], 1e-9):.3f} | "
                  f"{abs(ours['value'] - theirs['value']):.1e} |")
    if args.float16:
        print("\n| voxels | metric | float16 rounding: time | peak above data | difference to sklearn on float32 |")
        print("|---|---|---|---|---|")
        for n in (int(size) for size in args.sizes):
            for metric in ("ap", "auroc"):
                rounded = next(r for r in rows if r["n"] == n and r["method"] == f"ours16_{metric}")
                theirs = next(r for r in rows if r["n"] == n and r["method"] == f"sklearn_{metric}")
                if "error" in rounded or "error" in theirs:
                    continue
                print(f"| {n:.0e} | {metric} | {rounded['seconds']:.2f} s | {rounded['peak_above_data_mb']:.0f} MB | "
                      f"{abs(rounded['value'] - theirs['value']):.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
