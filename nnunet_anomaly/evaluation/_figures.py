"""Figures of an evaluation: overlays like the paper's Figures 3-5, PR/ROC curves, score distributions."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nnunet_anomaly._io import atomic_path

from ._histogram import precision_recall_curve, roc_curve

__all__ = ["draw_figures"]

_TITLES = {"slice": "slice-wise", "sample": "sample-wise", "pixel": "pixel-wise"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _pyplot().close(fig)
    return str(path.name)


def _display(array, is_volume_slice):
    # Volume slices (Z, Y, X) as SimpleITK reads NIfTI: show with y growing upwards (anterior at the
    # top for the usual RAS-stored brain); 2D images (PNG rows) keep their natural top-down order.
    return {"origin": "lower" if is_volume_slice else "upper"}


def draw_overlays(path: Path, overlays: list[dict], title: str) -> str | None:
    """Rows of (image + ground-truth contour, anomaly map over the image, anomaly map) per case."""
    if not overlays:
        return None
    plt = _pyplot()
    with_image = overlays[0]["image"] is not None
    n_columns = 3 if with_image else 1
    fig, axes = plt.subplots(len(overlays), n_columns, figsize=(2.9 * n_columns + 0.9, 2.9 * len(overlays) + 0.4),
                             squeeze=False, layout="constrained")
    mappable = None
    for row, item in enumerate(overlays):
        volume = item.get("volume", item["slice"] >= 0)
        kwargs = _display(item["map"], volume)
        truth = item["truth"].astype(float)
        where = f"{item['case']}" + (f", axial slice {item['slice']}" if volume else "")
        if item.get("pixel_ap") is not None:
            where += "\nhealthy" if item["pixel_ap"] != item["pixel_ap"] else f"\npixel AP {100 * item['pixel_ap']:.1f}"
        panels = []
        if with_image:
            image = item["image"]
            low, high = np.percentile(image, [0.5, 99.5])
            panels.append(("image + ground truth", image, "gray", (low, high), None))
            panels.append(("anomaly map over image", image, "gray", (low, high), item["map"]))
        panels.append(("anomaly map", item["map"], "magma", (0.0, 1.0), None))
        for column, (name, data, cmap, (vmin, vmax), over) in enumerate(panels):
            ax = axes[row, column]
            shown = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", **kwargs)
            if over is not None:
                # transparency grows with the score, so low scores leave the anatomy visible
                mappable = ax.imshow(over, cmap="magma", vmin=0, vmax=1, alpha=np.clip(over, 0, 1) * 0.9,
                                     interpolation="nearest", **kwargs)
            elif cmap == "magma":
                mappable = shown
            if truth.any():
                # No `origin` here: without one, contour puts truth[i, j] at (x=j, y=i), exactly where imshow
                # drew pixel (i, j) for either origin (imshow orients the y axis). Passing imshow's origin
                # flips the contour a second time for origin="upper" (2D: drawn upside down) and moves it
                # by half a pixel for origin="lower" (3D slices).
                ax.contour(truth, levels=[0.5], colors="red", linewidths=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=10)
            if column == 0:
                ax.set_ylabel(where, fontsize=9)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.6, label="anomaly score", pad=0.02)
    fig.suptitle(f"{title}: red contour = ground truth", fontsize=11)
    return _save(fig, path)


def _model_style(name, kind):
    if kind == "ensemble":
        return {"color": "black", "linewidth": 2.0, "zorder": 5}
    if kind == "baseline":
        return {"linestyle": "--", "linewidth": 1.2}
    return {"linewidth": 1.0, "alpha": 0.85}


def draw_curves(path: Path, results: dict, accumulators, sample_labels, slice_labels) -> str:
    """Precision-recall (top) and ROC (bottom) curves per scale, one line per model."""
    plt = _pyplot()
    scales = results["scales"]
    aggregate = results["aggregate"]
    fig, axes = plt.subplots(2, len(scales), figsize=(4.6 * len(scales), 8.4), squeeze=False)
    for column, scale in enumerate(scales):
        pr_ax, roc_ax = axes[0, column], axes[1, column]
        prevalence = results["random"][scale]["ap"]
        drawn = {"pr": False, "roc": False}
        for accumulator in accumulators:
            model = results["models"][accumulator.name]
            style = _model_style(accumulator.name, accumulator.kind)
            if scale == "pixel":
                histogram = accumulator.pooled
                if histogram.n_positive == 0:
                    continue
                precision, recall, _ = histogram.precision_recall_curve()
                fpr, tpr, _ = histogram.roc_curve()
                ap, area = model["pixel"]["ap_pooled"], model["pixel"]["auroc"]
            else:
                labels = slice_labels if scale == "slice" else sample_labels
                scores = np.concatenate(accumulator.slice_scores[aggregate]) if scale == "slice" else np.asarray(
                    accumulator.sample_scores[aggregate])
                if labels.sum() == 0:
                    continue
                precision, recall, _ = precision_recall_curve(scores, labels)
                fpr, tpr, _ = roc_curve(scores, labels)
                ap, area = model[scale]["ap"][aggregate], model[scale]["auroc"][aggregate]
            pr_ax.step(recall, precision, where="post", label=f"{accumulator.name} (AP {100 * ap:.1f})", **style)
            drawn["pr"] = True
            if np.all(np.isfinite(fpr)):
                roc_ax.plot(fpr, tpr, label=f"{accumulator.name} ({100 * area:.1f})", **style)
                drawn["roc"] = True
        unit = {"slice": "slice", "sample": "case", "pixel": "voxel"}[scale]
        for key, ax in (("pr", pr_ax), ("roc", roc_ax)):
            if not drawn[key]:
                reason = f"no anomalous {unit}" if key == "pr" or prevalence == 0 else f"only anomalous {unit}s"
                ax.text(0.5, 0.5, f"undefined: {reason}", ha="center", va="center", transform=ax.transAxes,
                        fontsize=10, color="dimgrey")
        if prevalence == prevalence:  # not nan
            pr_ax.axhline(prevalence, color="grey", linestyle=":", linewidth=1, label=f"chance ({100 * prevalence:.1f})")
        roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance (50.0)")
        suffix = " (pooled voxels)" if scale == "pixel" else f" ({aggregate} score)"
        pr_ax.set_title(f"{_TITLES[scale]} precision-recall{suffix}", fontsize=10)
        roc_ax.set_title(f"{_TITLES[scale]} ROC{suffix}", fontsize=10)
        pr_ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
        for ax in (pr_ax, roc_ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right" if ax is roc_ax else "lower left", framealpha=0.8)
    fig.suptitle(f"{results['test_set']}: AP and AUROC in %", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def draw_score_distributions(path: Path, results: dict, accumulators, sample_labels, slice_labels) -> str | None:
    """Histograms of the primary model's sample (and slice) scores, healthy against abnormal."""
    plt = _pyplot()
    aggregate = results["aggregate"]
    primary = next(a for a in accumulators if a.name == results["primary"])
    panels = [("samples (cases)", np.asarray(primary.sample_scores[aggregate]), sample_labels)]
    if results["setting"] == "brain":
        panels.append(("axial slices", np.concatenate(primary.slice_scores[aggregate]), slice_labels))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.6), squeeze=False)
    for ax, (name, scores, labels) in zip(axes[0], panels):
        labels = np.asarray(labels, bool)
        groups = ((~labels, "healthy", "tab:blue"), (labels, "abnormal", "tab:red"))
        if scores.size < 30:
            # too few for a histogram: one dot per score, one row per group
            for row, (selected, label, color) in enumerate(groups):
                ax.scatter(scores[selected], np.full(int(selected.sum()), row), color=color, s=40, alpha=0.8,
                           label=f"{label} (n={int(selected.sum())})")
            ax.set_yticks([0, 1], ["healthy", "abnormal"])
            ax.set_ylim(-0.7, 1.7)
            ax.set(xlabel=f"{aggregate} anomaly score", title=f"{results['primary']}: {name}")
        else:
            bins = np.histogram_bin_edges(scores, bins=min(40, max(5, scores.size // 4)))
            for selected, label, color in groups:
                if selected.any():
                    ax.hist(scores[selected], bins=bins, alpha=0.55, color=color, label=f"{label} (n={int(selected.sum())})")
            ax.set(xlabel=f"{aggregate} anomaly score", ylabel="count", title=f"{results['primary']}: {name}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def draw_figures(folder, results: dict, *, accumulators, overlays, sample_labels, slice_labels) -> list[str]:
    """Draw every figure into `folder`; returns the file names written."""
    folder = Path(folder)
    written = []
    name = draw_overlays(folder / "overlays.png", overlays, f"{results['test_set']} - {results['primary']}")
    if name:
        written.append(name)
    written.append(draw_curves(folder / "curves.png", results, accumulators, sample_labels, slice_labels))
    name = draw_score_distributions(folder / "score_distributions.png", results, accumulators, sample_labels, slice_labels)
    if name:
        written.append(name)
    return written
