"""The fixed synthetic validation set, its pixel metrics, and their gathering across GPUs.

The reference re-draws its validation anomalies every epoch, which makes model selection noisy. Here
the validation tasks are applied once to the validation partition with seeds that depend only on
``(validation_seed, case identifier, task)``: the set is identical in every epoch, on every GPU
count, and after resuming.

Per epoch the network sees fixed *patches* on the training canvas (:func:`validation_canvas`: the
whole image centred when it fits the patch, the task applied to that canvas as training applies it),
so the cost is a few batches; the final validation (:func:`make_validation_image` on the full image,
predicted with nnU-Net's sliding window) is exact.

Healthy anatomy is part of the set: the pseudo-task :data:`HEALTHY` stands for the validation images
left as they are, scored on their foreground only. Every voxel there is a negative, so a model that
marks healthy tissue loses AP once those negatives are pooled with the anomalous patches
(``pooled_with_healthy``), and :func:`healthy_false_positives` reports the scores that 1 % and 0.1 %
of the healthy voxels exceed. Memory is bounded by ``memory_budget_mb``: when
the validation partition times the validation tasks would exceed it, an evenly spread, fixed subset
of (case, task) pairs is kept.
"""
from __future__ import annotations

import math
import zlib
from typing import Callable, NamedTuple, Sequence

import numpy as np

__all__ = ["HEALTHY", "ValidationSample", "pair_seed", "make_validation_image", "crop_to_patch", "validation_canvas",
           "select_pairs", "bootstrap_ap_spread",
           "pixel_metrics", "healthy_false_positives", "summarise", "gather_scores", "ValidationBatches"]

#: the pseudo-task of the anomaly-free validation samples (the image as it is; every scored voxel negative)
HEALTHY = "healthy"
#: fractions of healthy voxels at which :func:`healthy_false_positives` reports the score they exceed
#: (the thresholds ``nnunet_anomaly export --threshold-from`` and ``evaluate`` can calibrate from)
HEALTHY_RATES = (0.05, 0.01, 0.005, 0.001, 0.0001)


class ValidationSample(NamedTuple):
    """One fixed validation patch."""
    case: str
    task: str
    image: np.ndarray         # (C, *patch) float32
    label: np.ndarray         # (1, *patch) float32 soft label (the training target)
    mask: np.ndarray          # (*patch) bool anomaly mask (the metric's ground truth)
    scored: np.ndarray | None  # flat indices of the voxels that are scored (None: all)

    def __repr__(self):  # short: nnU-Net writes trainer attributes into debug.json
        return (f"ValidationSample(case={self.case!r}, task={self.task!r}, shape={tuple(self.image.shape)}, "
                f"anomalous_voxels={int(self.mask.sum())})")


def pair_seed(seed: int, case: str, task: str) -> np.random.SeedSequence:
    """The seed of one (case, task) pair: independent of the partition, the GPU count and the epoch.

    Examples
    --------
    >>> a = np.random.default_rng(pair_seed(0, "brain_001", "sink")).random()
    >>> b = np.random.default_rng(pair_seed(0, "brain_001", "sink")).random()
    >>> a == b
    True
    """
    return np.random.SeedSequence([int(seed), zlib.crc32(case.encode()), zlib.crc32(task.encode())])


def make_validation_image(image: np.ndarray, foreground: np.ndarray, task: str, seed: np.random.SeedSequence,
                          *, intra_pool=None, inter_pool=None, options=None):
    """Apply `task` to a full image with a fixed seed (:data:`HEALTHY`: the image as it is).

    Returns
    -------
    anomalous : float32 ndarray (C, *spatial)
    label : float32 ndarray (*spatial), soft label
    mask : bool ndarray (*spatial)
        Empty when the task could not place an anomaly (the image is then returned unchanged).
    """
    from nnunet_anomaly.tasks import PlacementError, apply_tasks

    if task == HEALTHY:
        empty = np.zeros(image.shape[1:], dtype=bool)
        return np.asarray(image, dtype=np.float32), empty.astype(np.float32), empty
    rng = np.random.default_rng(seed)
    try:
        result = apply_tasks(np.asarray(image, dtype=np.float32), [task], rng, foreground=foreground,
                             intra_pool=intra_pool, inter_pool=inter_pool, options=options)
    except PlacementError:
        empty = np.zeros(image.shape[1:], dtype=bool)
        return np.asarray(image, dtype=np.float32), empty.astype(np.float32), empty
    return (np.asarray(result.image, dtype=np.float32), np.asarray(result.label, dtype=np.float32),
            np.asarray(result.mask, dtype=bool))


def crop_to_patch(arrays: Sequence[np.ndarray], centre: Sequence[int], patch_size: Sequence[int],
                  pad_values: Sequence[float]) -> list[np.ndarray]:
    """Crop arrays ``(..., *spatial)`` to `patch_size` around `centre`, padding outside the image.

    Examples
    --------
    >>> a = np.arange(16).reshape(4, 4)
    >>> crop_to_patch([a], (0, 0), (2, 2), [-1])[0].tolist()
    [[-1, -1], [-1, 0]]
    """
    out = []
    spatial = arrays[0].shape[-len(patch_size):]
    lower = [int(c) - p // 2 for c, p in zip(centre, patch_size)]
    for array, pad in zip(arrays, pad_values):
        lead = array.shape[:array.ndim - len(patch_size)]
        result = np.full((*lead, *patch_size), pad, dtype=array.dtype)
        src, dst = [], []
        for lo, p, n in zip(lower, patch_size, spatial):
            a, b = max(lo, 0), min(lo + p, n)
            src.append(slice(a, max(a, b)))
            dst.append(slice(a - lo, a - lo + max(0, b - a)))
        result[(..., *dst)] = array[(..., *src)]
        out.append(result)
    return out


def validation_canvas(image: np.ndarray, foreground: np.ndarray, patch_size: Sequence[int],
                      rng: np.random.Generator) -> list[np.ndarray]:
    """`image` ``(C, *spatial)`` and `foreground` on the training canvas, before any task is applied.

    The canvas is the one training uses (:func:`nnunet_anomaly.nnunet.sampling.patch_origin`): the
    whole image centred where it fits the patch, else a patch inside the image over a random
    foreground voxel. Applying the task to the canvas, as training applies it to its patch, gives
    validation anomalies of the training size in the training geometry.

    Examples
    --------
    >>> image = np.ones((1, 4, 6), np.float32); foreground = image[0] > 0
    >>> canvas, fg = validation_canvas(image, foreground, (8, 8), np.random.default_rng(0))
    >>> canvas.shape, int(fg.sum()), np.argwhere(fg).min(0).tolist()
    ((1, 8, 8), 24, [2, 1])
    """
    from nnunet_anomaly.nnunet.sampling import patch_origin

    where = np.argwhere(foreground)
    centre = where[rng.integers(len(where))] if len(where) else None
    origin = patch_origin(foreground.shape, patch_size, centre)
    return crop_to_patch([image, foreground], [o + p // 2 for o, p in zip(origin, patch_size)], patch_size,
                         [0.0, False])


def select_pairs(cases: Sequence[str], tasks: Sequence[str], max_pairs: int, seed: int) -> list[tuple[str, str]]:
    """All (case, task) pairs, or an evenly spread fixed subset of `max_pairs` of them.

    Every task keeps (nearly) the same number of pairs, so per-task metrics stay comparable.

    Examples
    --------
    >>> select_pairs(["a", "b"], ["sink", "source"], 10, 0)
    [('a', 'sink'), ('a', 'source'), ('b', 'sink'), ('b', 'source')]
    >>> len(select_pairs(["a", "b", "c"], ["sink", "source"], 4, 0))
    4
    """
    pairs = [(c, t) for c in sorted(cases) for t in tasks]
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    if len(pairs) <= max_pairs:
        return pairs
    rng = np.random.default_rng(seed)
    per_task = {t: [p for p in pairs if p[1] == t] for t in tasks}
    keep = []
    quota = max(1, max_pairs // len(tasks))
    for t in tasks:
        chosen = rng.choice(len(per_task[t]), size=min(quota, len(per_task[t])), replace=False)
        keep.extend(per_task[t][i] for i in sorted(chosen))
    return sorted(keep)[:max_pairs]


def pixel_metrics(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """Pixel-level average precision and AUROC; NaN where undefined (no positives or no negatives).

    Exact on the scores as they are (:func:`nnunet_anomaly.evaluation.average_precision` / ``auroc``,
    equal to scikit-learn's); float32 scores stay float32, which halves the memory of the sort.

    Examples
    --------
    >>> pixel_metrics(np.array([0.1, 0.9, 0.2, 0.8]), np.array([0, 1, 0, 1]))
    (1.0, 1.0)
    """
    from nnunet_anomaly.evaluation import auroc, average_precision

    scores = np.asarray(scores).ravel()
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    targets = np.asarray(targets).ravel().astype(bool)
    if scores.shape != targets.shape:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} differ in size")
    n_pos = int(targets.sum())
    if n_pos == 0:
        return float("nan"), float("nan")
    ap = float(average_precision(scores, targets))
    if n_pos == targets.size:
        return ap, float("nan")
    return ap, float(auroc(scores, targets))


def healthy_false_positives(scores: np.ndarray, rates: Sequence[float] = HEALTHY_RATES) -> dict:
    """The anomaly scores that a fraction `rates` of healthy voxels exceed (lower is better).

    Every voxel of a healthy image is a false positive at any threshold below its score, so the score
    exceeded by 1 % of healthy voxels is the threshold at which 1 % of healthy tissue would be marked.

    Examples
    --------
    >>> out = healthy_false_positives(np.linspace(0, 1, 1001))
    >>> out["score_exceeded_by_1%"], out["score_exceeded_by_0.1%"], out["n_voxels"]
    (0.99, 0.999, 1001)
    >>> healthy_false_positives(np.zeros(0))["score_exceeded_by_1%"]
    nan
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    out = {"n_voxels": int(scores.size)}
    for rate in rates:
        value = float(np.quantile(scores, 1.0 - rate)) if scores.size else float("nan")
        out[f"score_exceeded_by_{rate * 100:g}%"] = round(value, 12)
    out["max"] = float(scores.max()) if scores.size else float("nan")
    return out


def summarise(scores_by_task: dict, targets_by_task: dict, tasks: Sequence[str]) -> dict:
    """Pooled and per-task AP / AUROC from per-task lists of score and target arrays.

    ``pooled`` covers the anomalous samples of `tasks`. When `scores_by_task` holds :data:`HEALTHY`
    samples, ``pooled_with_healthy`` adds their voxels as negatives and ``healthy`` holds
    :func:`healthy_false_positives` of their scores.
    """
    per_task = {}
    all_scores, all_targets = [], []
    for task in tasks:
        s = np.concatenate(scores_by_task.get(task, [np.zeros(0, np.float32)]))
        t = np.concatenate(targets_by_task.get(task, [np.zeros(0, bool)])).astype(bool)
        all_scores.append(s)
        all_targets.append(t)
        ap, roc = pixel_metrics(s, t) if s.size else (float("nan"), float("nan"))
        per_task[task] = {"ap": ap, "auroc": roc, "n_voxels": int(s.size), "n_anomalous_voxels": int(t.sum())}
    summary = {"pooled": _pooled(all_scores, all_targets), "per_task": per_task}
    if HEALTHY in scores_by_task:
        healthy = np.concatenate(scores_by_task[HEALTHY])
        summary["pooled_with_healthy"] = _pooled(all_scores + [healthy], all_targets + [np.zeros(healthy.size, bool)])
        summary["healthy"] = healthy_false_positives(healthy)
    return summary


def bootstrap_ap_spread(scores: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                        other_scores: Sequence[np.ndarray] | None = None, *, n_resamples: int = 500,
                        seed: int = 0, bins: int = 2048) -> float:
    """The sampling error of the pooled AP of a validation set: its SD when whole samples are resampled.

    The validation set is a sample of patches; the pooled AP a model gets on it is one draw. Resampling
    the patches with replacement (each keeps all its voxels, which are not independent) gives the
    spread of that AP, which says how large a difference the set can decide. With `other_scores` (a
    second model's scores of the same voxels) it is the SD of the *difference* of the two APs on the
    same resampled patches: the error of a comparison on a fixed set, which is what selection makes.
    Scores are probabilities in [0, 1], counted in `bins` equal bins (the AP of binned scores).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> targets = [rng.random(500) < 0.1 for _ in range(40)]
    >>> scores = [np.clip(t * 0.3 + rng.random(t.size) * 0.7, 0, 1) for t in targets]
    >>> few, many = bootstrap_ap_spread(scores[:10], targets[:10]), bootstrap_ap_spread(scores, targets)
    >>> bool(0 < many < few)
    True
    >>> bootstrap_ap_spread(scores, targets, scores)  # a model against itself: no difference to decide
    0.0
    """
    from nnunet_anomaly.evaluation._histogram import _average_precision_from_counts

    if len(scores) != len(targets) or (other_scores is not None and len(other_scores) != len(scores)):
        raise ValueError(f"{len(scores)} score arrays, {len(targets)} target arrays"
                         + ("" if other_scores is None else f" and {len(other_scores)} other score arrays"))
    if not len(scores):
        return float("nan")

    def counts(per_sample):  # (samples, 2, bins): negatives and positives per bin, highest bin first
        out = np.zeros((len(per_sample), 2, bins))
        for i, (s, t) in enumerate(zip(per_sample, targets)):
            b = bins - 1 - np.clip((np.asarray(s, np.float64).ravel() * bins).astype(int), 0, bins - 1)
            t = np.asarray(t, bool).ravel()
            out[i, 0] = np.bincount(b[~t], minlength=bins)
            out[i, 1] = np.bincount(b[t], minlength=bins)
        return out

    models = [counts(scores)] + ([counts(other_scores)] if other_scores is not None else [])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(n_resamples)):
        weights = np.bincount(rng.integers(len(scores), size=len(scores)), minlength=len(scores)).astype(float)
        aps = []
        for c in models:
            negatives, positives = np.tensordot(weights, c, axes=1)
            occupied = (positives + negatives) > 0
            aps.append(_average_precision_from_counts(positives[occupied], negatives[occupied])
                       if positives.sum() else np.nan)
        values.append(aps[0] - aps[1] if len(aps) == 2 else aps[0])
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    return float(np.std(values)) if values.size > 1 else float("nan")


def _pooled(scores: list, targets: list) -> dict:
    s, t = np.concatenate(scores), np.concatenate(targets)
    ap, roc = pixel_metrics(s, t) if s.size else (float("nan"), float("nan"))
    return {"ap": ap, "auroc": roc, "n_voxels": int(s.size), "n_anomalous_voxels": int(t.sum())}


def gather_scores(scores_by_task: dict, targets_by_task: dict, world_size: int,
                  all_gather_object: Callable | None) -> tuple[dict, dict]:
    """Merge per-rank ``{task: [arrays]}`` dictionaries (``torch.distributed.all_gather_object`` under DDP).

    `all_gather_object(output_list, obj)` fills `output_list` (length `world_size`) with every rank's
    object, as torch.distributed does; with ``world_size == 1`` nothing is gathered.

    Examples
    --------
    >>> def fake_gather(out, obj):  # two ranks holding the same object
    ...     out[:] = [obj, obj]
    >>> s, t = gather_scores({"sink": [np.ones(2)]}, {"sink": [np.ones(2, bool)]}, 2, fake_gather)
    >>> [a.size for a in s["sink"]]
    [2, 2]
    """
    if world_size <= 1 or all_gather_object is None:
        return scores_by_task, targets_by_task
    gathered = [None] * world_size
    all_gather_object(gathered, (scores_by_task, targets_by_task))
    scores, targets = {}, {}
    for rank_scores, rank_targets in gathered:
        for task, arrays in rank_scores.items():
            scores.setdefault(task, []).extend(arrays)
        for task, arrays in rank_targets.items():
            targets.setdefault(task, []).extend(arrays)
    return scores, targets


class ValidationBatches:
    """Iterate the fixed validation samples of this rank in batches, forever (nnU-Net calls ``next``).

    Each batch is ``{"data": (B, C, *patch), "target": soft label (or its deep-supervision list),
    "keys": indices into the sample list}``.
    """

    def __init__(self, samples: Sequence[ValidationSample], batch_size: int, target_transform=None):
        if not samples:
            raise ValueError("the synthetic validation set is empty (no validation cases or no validation tasks)")
        self.samples = list(samples)
        self.batch_size = max(1, int(batch_size))
        self.target_transform = target_transform
        self._position = 0

    def __len__(self) -> int:
        return math.ceil(len(self.samples) / self.batch_size)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        import torch

        keys = list(range(self._position, min(self._position + self.batch_size, len(self.samples))))
        self._position = 0 if keys[-1] + 1 >= len(self.samples) else keys[-1] + 1
        data = torch.from_numpy(np.stack([self.samples[k].image for k in keys]))
        labels = [torch.from_numpy(self.samples[k].label) for k in keys]
        if self.target_transform is not None:
            per_sample = [self.target_transform(segmentation=label)["segmentation"] for label in labels]
            target = [torch.stack([s[i] for s in per_sample]) for i in range(len(per_sample[0]))]
        else:
            target = torch.stack(labels)
        return {"data": data, "target": target, "keys": keys}
