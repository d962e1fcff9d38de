"""Time per training sample of the whole anomaly generator, ours against a reference-like pipeline.

Both pipelines run ``apply_tasks`` with the reference's statistics on the same images, seeds and
tasks, in interleaved rounds on one core. Times are the process's CPU time per sample
(``time.process_time``), which on a shared machine is what one worker core spends, free of the
waiting that wall-clock time would add:

- **ours**: order-1 resampling, ``nnunet_anomaly.poisson.poisson_blend`` over the shape's box grown to
  an FFT-friendly size, the Gaussian labeller with the reference's closing and hole filling done by
  ``nnunet_anomaly.labelling.fill_basins`` (same labels, less work);
- **reference-like**: the reference's choices swapped in through options and private hooks:
  order-3 resampling (``TaskOptions(interpolation_order=3)``) of every voxel of the blend patch and
  of the deformation box (ours resamples only the voxels that matter), pie-torch's ``blend_dst_numpy``
  on the patch's bounding box, scipy's full Euclidean distance transform for the intensity ramp, and
  the reference labeller's grey closing + hole filling per region by scikit-image's
  ``reconstruction``. Everything else (shape rasterisation, placement, bbox-local labelling) is
  shared, so this understates the gap to the original code.

Inputs: 3D, the MNI152 T1 template at 2 mm, z-scored inside the brain and cropped/padded to
80x112x80, with its brain mask as foreground, the template and its mirror image as the intra pool
and the grey/white-matter maps as the external pool; 2D, a real chest radiograph at 256x256 (no
foreground, as the reference's CXR setting), its mirror image as intra pool, scikit-image's natural
images as the external pool.

Run (about 1-3 minutes, depending on load)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/bench_generator.py
"""
from __future__ import annotations

import argparse
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from nnunet_anomaly.pools import ArrayPool  # noqa: E402
from nnunet_anomaly.tasks import TASK_NAMES, TaskOptions, apply_tasks  # noqa: E402
from nnunet_anomaly import labelling  # noqa: E402
from nnunet_anomaly.tasks import blending, deformation, intensity  # noqa: E402

BRAIN_SHAPE = (80, 112, 80)


def _fit(volume: np.ndarray, shape, centre) -> np.ndarray:
    """Crop or zero-pad `volume` to `shape` around `centre`."""
    out = np.zeros(shape, volume.dtype)
    src, dst = [], []
    for c, n, s in zip(centre, volume.shape, shape):
        start = int(round(c - s / 2))
        lo, hi = max(start, 0), min(start + s, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def brain_setting():
    try:
        from nnunet_anomaly.offline_data import mni152_brain, mni152_tissue_maps

        brain, mask, _ = mni152_brain(resolution_mm=2)
        grey, white = mni152_tissue_maps(resolution_mm=2)
    except ImportError:  # fall back to nilearn's bundled template directly
        from nilearn.datasets import load_mni152_template

        brain = np.asarray(load_mni152_template(resolution=2).get_fdata(), np.float32)
        mask = brain > 0
        brain = np.where(mask, (brain - brain[mask].mean()) / brain[mask].std(), 0).astype(np.float32)
        grey, white = brain[::-1].copy(), brain[:, ::-1].copy()
    centre = [np.mean(np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))) for ax in range(3)]
    image = _fit(np.asarray(brain, np.float32), BRAIN_SHAPE, centre)[None]
    foreground = _fit(np.asarray(mask), BRAIN_SHAPE, centre)
    intra = ArrayPool([image, np.ascontiguousarray(image[:, ::-1])], masks=[foreground, foreground[::-1].copy()])
    inter = ArrayPool([np.asarray(grey, np.float32)[None], np.asarray(white, np.float32)[None]], masks=[mask, mask])
    return "3D 80x112x80 (MNI152 brain)", image, foreground, intra, inter, TaskOptions.brain()


def chest_setting():
    try:
        from nnunet_anomaly.offline_data import chest_radiograph, natural_images

        cxr = np.asarray(chest_radiograph(256), np.float32)
        naturals = natural_images(256)
    except ImportError:
        grid = np.meshgrid(*[np.linspace(-1, 1, 256)] * 2, indexing="ij")
        cxr = np.tanh(np.sin(5 * grid[0]) + np.cos(7 * grid[1])).astype(np.float32)
        naturals = [cxr.T.copy()]
    image = cxr[None]
    intra = ArrayPool([image, np.ascontiguousarray(image[:, :, ::-1])])
    inter = ArrayPool([np.asarray(n, np.float32)[None] for n in naturals])
    return "2D 256x256 (chest radiograph)", image, None, intra, inter, TaskOptions.cxr()


def _pietorch_blend(target, source, mask, patch_box):
    """The reference's blend: pie-torch's DST solver on the patch's bounding box exactly."""
    from pietorch import blend_dst_numpy

    corner = np.array([s.start for s in patch_box])
    patch = (slice(None),) + tuple(patch_box)
    mask_patch = mask[tuple(patch_box)].astype(target.dtype)  # pie-torch zeroes its border in place
    return blend_dst_numpy(target, source[patch], mask_patch, corner, True, channels_dim=0)


def _reference_distance(mask, cap):
    """The reference's distance map: scipy's full Euclidean distance transform of the box."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(np.pad(mask, 1))[(slice(1, -1),) * mask.ndim]


# pipeline -> (blend function, inside-distance function, hole filling, resample whole boxes, option changes)
PIPELINES = {
    "ours": (blending._default_blend, intensity.inside_distance, labelling.fill_basins, False, {}),
    "reference-like": (_pietorch_blend, _reference_distance, labelling._reference_fill, True,
                       {"interpolation_order": 3, "fill_holes": True}),
}


def run_once(pipeline, task, seed, image, foreground, intra, inter, options) -> float:
    blend, distance, fill, whole_patch, changes = PIPELINES[pipeline]
    blending._blend_function, intensity._inside_distance_function = blend, distance
    labelling._fill_function = fill
    deformation._remap_whole_patch = blending._resample_whole_patch = whole_patch
    try:
        opts = TaskOptions(**{**options.__dict__, **changes})
        # CPU time of this (single-threaded) process: on a shared machine, wall-clock time mostly
        # measures the other processes; CPU time is what one worker core spends per sample.
        start = time.process_time()
        apply_tasks(image, [task], np.random.default_rng(seed), foreground=foreground, intra_pool=intra,
                    inter_pool=inter, options=opts)
        return time.process_time() - start
    finally:
        blending._blend_function = blending._default_blend
        intensity._inside_distance_function = intensity.inside_distance
        labelling._fill_function = labelling.fill_basins
        deformation._remap_whole_patch = blending._resample_whole_patch = False


def bench(setting, rounds: int, per_round: int):
    name, image, foreground, intra, inter, options = setting
    times = {(p, t): [] for p in PIPELINES for t in TASK_NAMES}
    for p in PIPELINES:  # warm-up (imports, FFT plans)
        for t in TASK_NAMES:
            run_once(p, t, 10**6, image, foreground, intra, inter, options)
    for r in range(rounds):
        for i in range(per_round):
            seed = r * per_round + i
            for t in TASK_NAMES:
                for p in PIPELINES:  # interleaved: both pipelines see the same seed back to back
                    times[p, t].append(run_once(p, t, seed, image, foreground, intra, inter, options))
    return name, times


def report(name, times) -> str:
    lines = [
        f"#### {name}",
        "",
        "| task | ours median ms | reference-like median ms | speed-up (medians) | ours min ms | reference-like min ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in TASK_NAMES:
        ours, ref = np.median(times["ours", t]) * 1e3, np.median(times["reference-like", t]) * 1e3
        lines.append(f"| {t} | {ours:.2f} | {ref:.2f} | {ref / ours:.1f}x | "
                     f"{np.min(times['ours', t]) * 1e3:.2f} | {np.min(times['reference-like', t]) * 1e3:.2f} |")
    # A training sample draws one task uniformly: its expected time is the mean over tasks of each
    # task's time (means include the heavy tail of multi-anomaly samples; medians resist contention).
    ours_mean = np.mean([np.mean(times["ours", t]) for t in TASK_NAMES]) * 1e3
    ref_mean = np.mean([np.mean(times["reference-like", t]) for t in TASK_NAMES]) * 1e3
    ours_med = np.mean([np.median(times["ours", t]) for t in TASK_NAMES]) * 1e3
    ref_med = np.mean([np.median(times["reference-like", t]) for t in TASK_NAMES]) * 1e3
    lines.append(f"| **per training sample, mean over tasks of the per-task medians** | **{ours_med:.2f}** | "
                 f"**{ref_med:.2f}** | **{ref_med / ours_med:.1f}x** | | |")
    lines.append(f"| **per training sample, mean over tasks of the per-task means** | **{ours_mean:.2f}** | "
                 f"**{ref_mean:.2f}** | **{ref_mean / ours_mean:.1f}x** | | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=8, help="samples per task and pipeline in each round")
    parser.add_argument("--only", choices=["2d", "3d"], default=None)
    args = parser.parse_args(argv)
    settings = []
    if args.only in (None, "2d"):
        settings.append(chest_setting())
    if args.only in (None, "3d"):
        settings.append(brain_setting())
    print(f"# CPU time per sample (time.process_time), numpy {np.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"{args.rounds} rounds x {args.per_round} samples per task and pipeline", flush=True)
    for setting in settings:
        name, times = bench(setting, args.rounds, args.per_round)
        print(report(name, times), flush=True)
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
