"""The demo's own figures: per-task synthetic validation bars and image / map / ground-truth overlays."""
from __future__ import annotations

from pathlib import Path

from nnunet_anomaly._io import atomic_path, read_array

def plot_validation(path: Path, summaries: dict, ensemble: dict | None, task_names) -> None:
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


def plot_overlays(path: Path, rows, title: str) -> None:
    """One row per case: image, anomaly map, image with the map (heat) and the ground truth (contour).

    3D cases show the axial slice with the most ground truth, drawn with ``origin="lower"``; 2D cases
    (radiographs) the whole image as it is displayed (row 0 at the top). A row whose truth path is None
    (an image-level label only, such as pneumonia) gets no contour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from nnunet_anomaly.evaluation import load_prediction

    fig, axes = plt.subplots(len(rows), 3, figsize=(7.2, 2.4 * len(rows)), squeeze=False, constrained_layout=True)
    cases = []
    for label, image_path, prediction_path, truth_path in rows:
        image = read_array(image_path).astype(np.float32)
        truth = read_array(truth_path) > 0 if truth_path is not None else np.zeros(image.shape, bool)
        score = np.clip(load_prediction(prediction_path, reference_shape=image.shape), 0, 1)
        cases.append((label, image, truth, score))
    # one colour scale for the whole figure, from 0 to the largest score shown: a weakly trained model
    # has small scores, which a fixed 0..1 scale would render as uniformly black
    vmax = max(float(score.max()) for *_, score in cases)
    vmax = 1.0 if vmax > 0.5 else max(vmax, 1e-6)
    flat = cases[0][1].ndim == 2
    origin = "upper" if flat else "lower"
    for r, (label, image, truth, score) in enumerate(cases):
        if flat:
            img, sc, gt = image, score, truth
        else:
            # the axial slice with the most ground truth (the middle one for a healthy case)
            z = int(truth.sum(axis=(1, 2)).argmax()) if truth.any() else image.shape[0] // 2
            img, sc, gt = image[z], score[z], truth[z]
        lo, hi = np.percentile(img, [1, 99])
        axes[r, 0].imshow(img, cmap="gray", vmin=lo, vmax=hi, origin=origin)
        axes[r, 0].set_ylabel(label, fontsize=8)
        im = axes[r, 1].imshow(sc, cmap="inferno", vmin=0, vmax=vmax, origin=origin)
        axes[r, 2].imshow(img, cmap="gray", vmin=lo, vmax=hi, origin=origin)
        axes[r, 2].imshow(np.ma.masked_less(sc, 0.15 * vmax), cmap="inferno", vmin=0, vmax=vmax, alpha=0.6,
                          origin=origin)
        if gt.any():
            # contour's own origin flips rows a second time on axes imshow set up with origin="upper"
            # (issue 17), so the 2D contour takes the axes' orientation as it is
            axes[r, 2].contour(gt, levels=[0.5], colors="#00e676", linewidths=1.0,
                               **({} if flat else {"origin": "lower"}))
        for c in range(3):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        if r == 0:
            first = "radiograph" if flat else "image (axial slice)"
            for c, name in enumerate((first, "anomaly map", "map + ground truth (green)")):
                axes[r, c].set_title(name, fontsize=9)
    fig.colorbar(im, ax=axes[:, 2], shrink=0.6, label="anomaly score" + ("" if vmax == 1.0 else f" (scale 0-{vmax:.3g})"))
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def plot_case_scores(path: Path, groups, title: str) -> None:
    """Per model (one panel each): every test case's score, one column per kind of case, case names beside.

    `groups` is ``{panel title: {kind: {case: score}}}``; the kinds are drawn left to right in their order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(groups), figsize=(3.4 * len(groups), 3.6), squeeze=False, constrained_layout=True)
    colours = {"healthy": "#1f77b4"}
    for ax, (panel, kinds) in zip(axes[0], groups.items()):
        for k, (kind, scores) in enumerate(kinds.items()):
            values = np.array(list(scores.values()), float)
            # a fixed, seeded jitter: points of equal score stay apart, and the figure is the same every run
            jitter = np.random.default_rng(k).uniform(-0.15, 0.15, len(values))
            ax.scatter(k + jitter, values, s=22, color=colours.get(kind, "#d62728"), zorder=3,
                       edgecolor="black", linewidth=0.4)
            if len(values):
                ax.hlines(np.median(values), k - 0.3, k + 0.3, color="black", lw=1.0)
        ax.set_xticks(range(len(kinds)), [f"{kind}\n(n={len(s)})" for kind, s in kinds.items()], fontsize=9)
        ax.set_xlim(-0.6, len(kinds) - 0.4)
        ax.set_title(panel, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("sample score")
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
