"""Single-core timing of ``poisson_blend`` against pie-torch ``blend_dst_numpy`` and the bare DST-I pair.

Usage::

    python benchmarks/bench_poisson.py [--rounds N] [--json out.json] [--seed S]

Every method runs on the same images, in one process, single-threaded (the thread-count environment
variables are set before numpy/scipy are imported; scipy.fft gets ``workers=1``).  Measurements are
interleaved: each round runs every (case, method) pair once in a freshly shuffled order, so load from
other processes hits all methods alike; two warm-up calls per pair are not timed.

For each case the box ``B`` is centred in the image and the mask is an ellipse/ellipsoid whose bounding
box is ``B`` shrunk by one voxel on every side, so the mask's bounding box grown by one voxel is exactly
``B``.  pie-torch solves over ``B`` (its region is ``source[B]``, ``mask[B]``, corner ``B.start``);
``poisson_blend`` solves over ``blend_box(mask)``, i.e. ``B`` grown to an FFT-friendly size (reported).
The floor is ``scipy.fft.dstn`` + ``idstn`` (type 1, float32) on the interior of a box, timed both on
``B`` ("floor B") and on the box ``poisson_blend`` actually solves ("floor ours").  "ours, crop" is
``poisson_blend`` called on views cropped to ``blend_box(mask)`` (identical result, see its Notes): the
same solve without the whole-image copy and mask scan.
"""
import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.fft  # noqa: E402

from nnunet_anomaly._io import write_json  # noqa: E402
from nnunet_anomaly.poisson import blend_box, poisson_blend  # noqa: E402

# (name, image shape, box shape B)
CASES = [
    ("2D 256x256, box 64x64", (256, 256), (64, 64)),
    ("2D 256x256, box 128x128", (256, 256), (128, 128)),
    ("3D 80x112x80, box 32^3", (80, 112, 80), (32, 32, 32)),
    ("3D 80x112x80, box 48^3", (80, 112, 80), (48, 48, 48)),
    ("3D 80x112x80, box 64x90x64", (80, 112, 80), (64, 90, 64)),
]
METHODS = ("ours", "ours_crop", "pie", "floor_ours", "floor_B")


def _ellipsoid_mask(image_shape, box_shape):
    """Bool mask (image shape) whose bounding box is the centred box B shrunk by one voxel per side."""
    start = [(n - b) // 2 for n, b in zip(image_shape, box_shape)]
    box = tuple(slice(s, s + b) for s, b in zip(start, box_shape))
    # Semi-axes reach the box faces; clipping to the box interior leaves the extremes one voxel inside.
    grids = np.meshgrid(
        *[(np.arange(b) - (b - 1) / 2) / ((b - 1) / 2) for b in box_shape], indexing="ij", sparse=True
    )
    inside = sum(g**2 for g in grids) <= 1.0
    local = np.zeros(box_shape, dtype=bool)
    interior = tuple(slice(1, b - 1) for b in box_shape)
    local[interior] = inside[interior]
    mask = np.zeros(image_shape, dtype=bool)
    mask[box] = local
    return mask, box


def _build_case(image_shape, box_shape, rng):
    target = rng.normal(size=image_shape).astype(np.float32)
    source = (2.0 * rng.normal(size=image_shape) + 1.0).astype(np.float32)
    mask, box = _ellipsoid_mask(image_shape, box_shape)
    assert blend_box(mask, fft_friendly=False) == box, "mask's bounding box grown by one voxel must be B"
    ours_box = blend_box(mask)
    corner = np.array([s.start for s in box])
    source_crop = np.ascontiguousarray(source[box])
    # pie-torch zeroes the faces of its mask in place; ours are already zero, so reusing it is harmless.
    pie_mask = mask[box].astype(np.float32)
    floor_b = np.ascontiguousarray(target[tuple(slice(s.start + 1, s.stop - 1) for s in box)])
    floor_ours = np.ascontiguousarray(target[tuple(slice(s.start + 1, s.stop - 1) for s in ours_box)])

    from pietorch import blend_dst_numpy

    def dst_pair(array):
        return scipy.fft.idstn(scipy.fft.dstn(array, type=1, workers=1), type=1, workers=1)

    callables = {
        "ours": lambda: poisson_blend(target, source, mask),
        # The documented fast path for a caller that knows the box: views cropped to it (same result).
        "ours_crop": lambda: poisson_blend(target[ours_box], source[ours_box], mask[ours_box]),
        "pie": lambda: blend_dst_numpy(target, source_crop, pie_mask, corner, False),
        "floor_ours": lambda: dst_pair(floor_ours),
        "floor_B": lambda: dst_pair(floor_b),
    }
    info = {
        "image": list(image_shape),
        "box_B": [s.stop - s.start for s in box],
        "box_ours": [s.stop - s.start for s in ours_box],
        "mask_fill_of_B": float(mask[box].mean()),
    }
    return callables, info


CLOCKS = ("cpu", "wall")
CLOCK_TITLES = {"cpu": "thread CPU time (time.thread_time)", "wall": "wall-clock time (time.perf_counter)"}


def _summarise(cases, samples):
    results = []
    for index, (name, _, info) in enumerate(cases):
        row = dict(case=name, **info)
        for method in METHODS:
            values = np.array(samples[(index, method)])
            row[method] = {"median_ms": float(np.median(values)), "min_ms": float(values.min()), "samples_ms": values.tolist()}
        for stat, key in (("median_ms", "ratios_of_medians"), ("min_ms", "ratios_of_minima")):
            value = {m: row[m][stat] for m in METHODS}
            row[key] = {
                "pie_over_ours": value["pie"] / value["ours"],
                "ours_over_floor_ours": value["ours"] / value["floor_ours"],
                "ours_over_floor_B": value["ours"] / value["floor_B"],
                "ours_crop_over_floor_ours": value["ours_crop"] / value["floor_ours"],
            }
        results.append(row)
    return results


def _print_table(results, title):
    print(f"\n{title}: median ms (min ms); ratios of medians (of minima)\n")
    print(
        "| case | box B -> ours | ours | ours, crop | pie `blend_dst_numpy` | floor, our box | floor, box B "
        "| pie / ours | ours / floor (our box) | ours / floor (B) | ours, crop / floor (our box) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        box = "x".join(map(str, row["box_B"])) + " -> " + "x".join(map(str, row["box_ours"]))
        cells = [f"{_fmt(row[m]['median_ms'])} ({_fmt(row[m]['min_ms'])})" for m in METHODS]
        ratios = [
            f"{row['ratios_of_medians'][key]:.2f} ({row['ratios_of_minima'][key]:.2f})"
            for key in ("pie_over_ours", "ours_over_floor_ours", "ours_over_floor_B", "ours_crop_over_floor_ours")
        ]
        print(f"| {row['case']} | {box} | " + " | ".join(cells + ratios) + " |")
    print(
        "\nTargets by medians (pie/ours >= 2; ours <= 1.3x the floor on our box; on box B; "
        "the cropped call <= 1.3x the floor on our box):"
    )
    for row in results:
        ratios = row["ratios_of_medians"]
        verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
        print(
            f"- {row['case']}: {verdict(ratios['pie_over_ours'] >= 2)}; "
            f"{verdict(ratios['ours_over_floor_ours'] <= 1.3)}; {verdict(ratios['ours_over_floor_B'] <= 1.3)}; "
            f"{verdict(ratios['ours_crop_over_floor_ours'] <= 1.3)}"
        )


def _fmt(ms):
    return f"{ms:.3f}" if ms < 10 else f"{ms:.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=31, help="timed rounds (default 31)")
    parser.add_argument("--json", help="also write the raw results to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and of the shuffling")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    rng = np.random.default_rng(args.seed)
    shuffler = random.Random(args.seed)
    cases = []
    for name, image_shape, box_shape in CASES:
        callables, info = _build_case(image_shape, box_shape, rng)
        cases.append((name, callables, info))
    pairs = [(index, method) for index in range(len(cases)) for method in METHODS]
    # Two clocks per call: wall time (what a data loader waits for) and this thread's CPU time (blind to
    # time spent descheduled, so it stays meaningful when other jobs share the cores).
    samples = {clock: {pair: [] for pair in pairs} for clock in CLOCKS}

    load_before = os.getloadavg()
    for _ in range(2):  # warm-up: imports, FFT plans, caches
        for index, method in pairs:
            cases[index][1][method]()
    started = time.perf_counter()
    for round_index in range(args.rounds):
        order = pairs[:]
        shuffler.shuffle(order)
        for index, method in order:
            call = cases[index][1][method]
            wall, cpu = time.perf_counter(), time.thread_time()
            call()
            samples["cpu"][(index, method)].append((time.thread_time() - cpu) * 1e3)
            samples["wall"][(index, method)].append((time.perf_counter() - wall) * 1e3)
        print(f"\rround {round_index + 1}/{args.rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()

    results = {clock: _summarise(cases, samples[clock]) for clock in CLOCKS}
    print(
        f"\nSingle thread, float32, {args.rounds} interleaved rounds (seed {args.seed}); "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; {elapsed:.1f} s timed.\n"
        f"numpy {np.__version__}, scipy {scipy.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs."
    )
    for clock in CLOCKS:
        _print_table(results[clock], CLOCK_TITLES[clock])
    if args.json:
        write_json(
            args.json,
            {
                "command": " ".join(["python", "benchmarks/bench_poisson.py"] + (argv if argv is not None else sys.argv[1:])),
                "rounds": args.rounds,
                "seed": args.seed,
                "load_average_before": load_before,
                "load_average_after": load_after,
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "python": platform.python_version(),
                "results_cpu_time": results["cpu"],
                "results_wall_time": results["wall"],
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
