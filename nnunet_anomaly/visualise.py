"""Pictures of what each synthetic anomaly task does: ``nnunet_anomaly show-tasks``.

For a real 2D image (a chest radiograph) and a real 3D volume (the MNI152 brain) the montage shows,
for each of the five tasks, the whole image with the zoomed window marked, then zoomed on the
anomaly: before and after the task (anomaly mask outlined), the signed difference and the Gaussian
label, like Figure 2 of Baugh et al. (MICCAI 2023). For 3D, each task shows the axial and coronal
slices holding the most label. Everything is real data that installs offline (see
:mod:`nnunet_anomaly.offline_data`); nothing is downloaded.

Python use::

    from nnunet_anomaly.visualise import render_tasks, save_figure
    figure = render_tasks("2d", seed=0, size=256)
    save_figure(figure, "tasks_2d.png")

The pieces can be used on their own: :func:`generate_task_examples` runs each task on any
channel-first image and :func:`plot_task_examples` draws the montage of the result.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from nnunet_anomaly._io import atomic_path

__all__ = [
    "TaskExample",
    "Scene",
    "generate_task_examples",
    "plot_task_examples",
    "chest_scene",
    "brain_scene",
    "render_tasks",
    "save_figure",
    "configure_parser",
    "run",
]

#: Colour of the anomaly-mask contour drawn on the "after" panels.
CONTOUR_COLOUR = "#00e676"
#: Colour of the box on the whole image that marks the zoomed window.
ZOOM_COLOUR = "#ffd600"
ROW_NAMES = ("before\n(whole image)", "before\n(zoom)", "after\n(zoom)", "difference\n(after - before)", "label")


class TaskExample(NamedTuple):
    """One task applied to one image, ready to plot (spatial arrays, first channel)."""

    task: str
    before: np.ndarray
    after: np.ndarray
    label: np.ndarray
    mask: np.ndarray
    n_anomalies: int
    attempt: int


class Scene(NamedTuple):
    """Everything :func:`generate_task_examples` and :func:`plot_task_examples` need for one image.

    ``views`` lists ``(name, axis)`` pairs of the planes to show for a 3D image (each plane is the
    slice through the anomaly, perpendicular to `axis`); it is empty for 2D.
    """

    image: np.ndarray
    foreground: np.ndarray | None
    intra_pool: object
    inter_pool: object
    options: object
    views: tuple[tuple[str, int], ...]
    title: str
    caption: str
    min_label_fraction: float


# ------------------------------------------------------------------------------ running the tasks


def generate_task_examples(
    image: np.ndarray,
    seed: int,
    *,
    tasks: Sequence[str] | None = None,
    foreground: np.ndarray | None = None,
    intra_pool=None,
    inter_pool=None,
    options=None,
    min_label_fraction: float = 0.005,
    max_attempts: int = 16,
) -> list[TaskExample]:
    """Apply each task once to `image`, retrying seeds until the anomaly is big enough to see.

    For task number ``t`` the attempts use ``numpy.random.default_rng([seed, t, attempt])`` for
    ``attempt = 0, 1, ...``: the first attempt whose label mass (sum of the soft label) reaches
    ``min_label_fraction`` of the image is kept. After `max_attempts` the attempt with the largest
    label mass is kept, so the search is bounded and the result depends only on `seed`.

    Parameters
    ----------
    image : ndarray, shape (C, *spatial)
        Channel-first float image.
    seed : int
        Seed of the whole montage.
    tasks : sequence of str, optional
        Task names (default: all of ``nnunet_anomaly.tasks.TASK_NAMES``, in that order).
    foreground, intra_pool, inter_pool, options
        Passed to :func:`nnunet_anomaly.tasks.apply_tasks`.
    min_label_fraction : float
        Label mass, as a fraction of the number of pixels/voxels, that makes an anomaly visible.
    max_attempts : int
        Seeds tried per task.

    Returns
    -------
    list of TaskExample
        One per task, in the order of `tasks`; arrays are spatial (channel 0 for the images).

    Raises
    ------
    ValueError
        If a task could not place a single anomaly in any attempt (the message names the task).

    Examples
    --------
    >>> from nnunet_anomaly.tasks import TaskOptions
    >>> image = np.random.default_rng(0).normal(size=(1, 48, 48)).astype(np.float32)
    >>> examples = generate_task_examples(image, 0, tasks=["sink", "smooth_intensity"], options=TaskOptions.cxr())
    >>> [example.task for example in examples], examples[1].after.shape
    (['sink', 'smooth_intensity'], (48, 48))
    >>> bool(examples[1].label.max() > 0), bool(np.all(examples[1].label[~examples[1].mask] == 0))
    (True, True)
    """
    from nnunet_anomaly.tasks import TASK_NAMES, PlacementError, apply_tasks

    image = np.asarray(image)
    if image.ndim < 3:
        raise ValueError(f"`image` must be channel-first (C, *spatial) with >= 2 spatial axes; got shape {image.shape}")
    if max_attempts < 1:
        raise ValueError(f"`max_attempts` must be >= 1; got {max_attempts}")
    tasks = tuple(TASK_NAMES if tasks is None else tasks)
    wanted_mass = min_label_fraction * np.prod(image.shape[1:])
    examples = []
    for task_index, task in enumerate(_progress(tasks, "tasks")):
        best, best_mass, last_error = None, -1.0, None
        for attempt in range(max_attempts):
            rng = np.random.default_rng([int(seed), task_index, attempt])
            try:
                result = apply_tasks(
                    image,
                    [task],
                    rng,
                    foreground=foreground,
                    intra_pool=intra_pool,
                    inter_pool=inter_pool,
                    options=options,
                )
            except PlacementError as error:
                last_error = error
                continue
            mass = float(result.label.sum())
            if mass > best_mass:
                best, best_mass = (result, attempt), mass
            if mass >= wanted_mass:
                break
        if best is None:
            raise ValueError(f"task {task!r} could not place an anomaly in {max_attempts} attempts: {last_error}")
        result, attempt = best
        examples.append(
            TaskExample(
                task=task,
                before=np.asarray(image[0]),
                after=np.asarray(result.image[0]),
                label=np.asarray(result.label),
                mask=np.asarray(result.mask, dtype=bool),
                n_anomalies=int(result.n_anomalies),
                attempt=attempt,
            )
        )
    return examples


def _progress(items, description):
    # A progress bar only for people watching a terminal; tests and logs stay clean.
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(items, desc=description, leave=False)
    return items


# -------------------------------------------------------------------------------------- plotting


def _plane(volume: np.ndarray, axis: int | None, index: int | None) -> np.ndarray:
    """The 2D array to show: a 2D image as is (rows down); a 3D slice transposed so that the
    remaining higher axis points up (shown with origin='lower')."""
    if axis is None:
        return volume
    return np.take(volume, index, axis=axis).T


def _best_slice(example: TaskExample, axis: int) -> int:
    """The slice perpendicular to `axis` holding the most label mass (the most visible anomaly)."""
    other_axes = tuple(a for a in range(example.label.ndim) if a != axis)
    mass = example.label.sum(axis=other_axes)
    if mass.max() <= 0:
        mass = example.mask.sum(axis=other_axes)
    return int(np.argmax(mass))


def _zoom_window(mask_plane: np.ndarray, *, grow: float = 2.0, min_fraction: float = 0.3) -> tuple[slice, slice]:
    """A square window around the anomaly in a plane: its bounding box grown `grow` times, at least
    `min_fraction` of the plane's shorter side, moved (not clipped) to stay inside the plane.

    Examples
    --------
    >>> mask = np.zeros((100, 80), bool); mask[10:20, 70:80] = True
    >>> _zoom_window(mask)
    (slice(3, 27, None), slice(56, 80, None))
    """
    rows, cols = mask_plane.shape
    limit = min(rows, cols)
    if not mask_plane.any():
        return slice(0, rows), slice(0, cols)
    present = [np.flatnonzero(mask_plane.any(axis=1 - axis)) for axis in (0, 1)]
    extent = max(int(p[-1] - p[0] + 1) for p in present)
    side = int(min(limit, max(round(grow * extent), round(min_fraction * limit))))
    window = []
    for p, size in zip(present, (rows, cols)):
        start = int(round((p[0] + p[-1]) / 2 - (side - 1) / 2))
        start = min(max(start, 0), size - side)
        window.append(slice(start, start + side))
    return tuple(window)


def plot_task_examples(
    examples: Sequence[TaskExample],
    *,
    views: Sequence[tuple[str, int]] = (),
    foreground: np.ndarray | None = None,
    crop_margin: int = 3,
    title: str = "",
    caption: str = "",
    panel_inches: float = 2.0,
):
    """Draw the montage: one column per task (per view for 3D); rows: the whole image before the
    task, then a zoom on the anomaly before and after, the difference and the label.

    The grey panels share the intensity window of the original image; the yellow box on the first
    row marks the zoomed window. The difference uses a diverging colour map centred at 0 and scaled
    to its own largest change (written under it); the label is shown on [0, 1]. The anomaly mask's
    outline is drawn in green on the "after" panel.

    Parameters
    ----------
    examples : sequence of TaskExample
        From :func:`generate_task_examples` (2D images or 3D volumes).
    views : sequence of (str, int)
        For 3D images: the planes to show, as ``(name, axis)``: the slice perpendicular to `axis`
        through the anomaly (the slice with the most label). Default: axial (axis 2), coronal (axis 1).
    foreground : ndarray of bool, optional
        The image's foreground. Every panel is cropped to its bounding box (plus `crop_margin`
        voxels, and grown to hold every anomaly), and background is drawn black instead of the grey
        of a z-score of 0 (background that a task changed stays visible after the task).
    crop_margin : int
        Margin around the foreground's bounding box, in pixels/voxels.
    title, caption : str
        Figure title and a caption printed under the panels.
    panel_inches : float
        Width of one panel in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if not examples:
        raise ValueError("`examples` is empty; nothing to plot")
    ndim = examples[0].before.ndim
    if ndim == 2:
        views = ((None, None),)
    elif ndim == 3:
        views = tuple(views) or (("axial", 2), ("coronal", 1))
    else:
        raise ValueError(f"can only plot 2D images or 3D volumes; got {ndim} spatial dimensions")
    box = _crop_box(examples, foreground, crop_margin)
    examples = [TaskExample(*(a[box] if isinstance(a, np.ndarray) else a for a in example)) for example in examples]
    if foreground is not None:
        foreground = np.asarray(foreground, dtype=bool)[box]

    # Layout by hand, in inches: predictable, identical for every seed, with room for the row names
    # on the left, the colour bars on the right and the caption below. Row 0 holds whole planes
    # (their aspect ratio); the zoomed rows are square.
    shapes = [_plane(examples[0].before, axis, 0).shape for _, axis in views]
    panel_heights = [panel_inches * rows / cols for rows, cols in shapes]
    row_heights = [max(panel_heights)] + [panel_inches] * (len(ROW_NAMES) - 1)
    inner_gap, group_gap, row_gap = 0.06, 0.22, 0.3
    left, right = 0.85, 1.0
    # The number of anomalies is worth a line only when some image has more than one.
    show_counts = any(example.n_anomalies != 1 for example in examples)
    top = (1.05 if ndim == 2 else 1.3) - (0 if show_counts else 0.2)
    group_width = len(views) * panel_inches + (len(views) - 1) * inner_gap
    width = left + len(examples) * group_width + (len(examples) - 1) * group_gap + right
    caption_lines = textwrap.wrap(caption, width=int((width - left - 0.4) * 15.5))
    bottom = 0.35 + 0.16 * len(caption_lines)
    height = top + sum(row_heights) + (len(row_heights) - 1) * row_gap + bottom
    row_bottoms = [height - top - sum(row_heights[: row + 1]) - row * row_gap for row in range(len(row_heights))]
    figure = Figure(figsize=(width, height))

    def axes_at(x, y, w, h):
        axes = figure.add_axes((x / width, y / height, w / width, h / height))
        axes.set_xticks([])
        axes.set_yticks([])
        for spine in axes.spines.values():
            spine.set_visible(False)
        return axes

    def text_at(x, y_from_top, text, **style):
        figure.text(x / width, 1 - y_from_top / height, text, **style)

    grey = colormaps["gray"].with_extremes(bad="black")
    values = examples[0].before if foreground is None else examples[0].before[foreground]
    low, high = np.percentile(values, [0.5, 99.5])
    diff_image = label_image = None
    for column, example in enumerate(examples):
        x_group = left + column * (group_width + group_gap)
        difference = example.after - example.before
        # Background is shown black (NaN -> the colour map's "bad" colour) instead of the mid-grey of a
        # z-score of 0; after the task, background that the task changed stays visible.
        before_shown, after_shown = example.before, example.after
        if foreground is not None:
            before_shown = np.where(foreground, example.before, np.nan)
            after_shown = np.where(foreground | (difference != 0), example.after, np.nan)
        for view_index, ((view_name, axis), panel_height) in enumerate(zip(views, panel_heights)):
            index = None if axis is None else _best_slice(example, axis)
            x = x_group + view_index * (panel_inches + inner_gap)
            mask_plane = _plane(example.mask, axis, index)
            zoom = _zoom_window(mask_plane)
            planes = [_plane(array, axis, index) for array in (before_shown, after_shown, difference, example.label)]
            whole, before, after, change, label = planes[0], *(plane[zoom] for plane in planes)
            origin = "upper" if axis is None else "lower"
            limit = max(float(np.abs(change).max()), 1e-6)
            for row, y in enumerate(row_bottoms):
                height_here = panel_height if row == 0 else panel_inches
                # A short whole plane sits at the top of its row, under its title.
                axes = axes_at(x, y + row_heights[row] - height_here, panel_inches, height_here)
                if row == 0:
                    axes.imshow(whole, cmap=grey, vmin=low, vmax=high, origin=origin)
                    (rows, cols) = zoom
                    if (rows.stop - rows.start, cols.stop - cols.start) != whole.shape:
                        axes.add_patch(
                            Rectangle(
                                (cols.start - 0.5, rows.start - 0.5),
                                cols.stop - cols.start,
                                rows.stop - rows.start,
                                fill=False,
                                edgecolor=ZOOM_COLOUR,
                                linewidth=1.0,
                            )
                        )
                    if view_name is not None:
                        axes.set_title(f"{view_name}, slice {index + box[axis].start}", fontsize=8, pad=3)
                elif row == 1:
                    axes.imshow(before, cmap=grey, vmin=low, vmax=high, origin=origin)
                elif row == 2:
                    axes.imshow(after, cmap=grey, vmin=low, vmax=high, origin=origin)
                    if mask_plane[zoom].any():
                        axes.contour(mask_plane[zoom].astype(float), levels=[0.5], colors=[CONTOUR_COLOUR], linewidths=1.0)
                elif row == 3:
                    diff_image = axes.imshow(change, cmap="RdBu_r", vmin=-limit, vmax=limit, origin=origin)
                    axes.set_xlabel(f"|change| up to {limit:.2f}", fontsize=8, labelpad=2)
                else:
                    label_image = axes.imshow(label, cmap="magma", vmin=0, vmax=1, origin=origin)
                if column == 0 and view_index == 0:
                    axes.set_ylabel(ROW_NAMES[row], fontsize=10, labelpad=4)
        # The task name and the number of anomalies over the task's panels.
        centre = x_group + group_width / 2
        plural = "y" if example.n_anomalies == 1 else "ies"
        text_at(centre, 0.62, example.task, ha="center", va="bottom", fontsize=11, fontweight="bold")
        if show_counts:
            text_at(centre, 0.82, f"{example.n_anomalies} anomal{plural}", ha="center", va="bottom", fontsize=8.5, color="0.3")

    # Colour bars: one for all difference panels (each has its own scale, written under it) and one
    # for the labels.
    bar_x = width - right + 0.25
    diff_bar = figure.colorbar(diff_image, cax=axes_at(bar_x, row_bottoms[3], 0.12, row_heights[3]))
    diff_bar.set_ticks([-diff_image.norm.vmax, 0, diff_image.norm.vmax])
    diff_bar.set_ticklabels(["darker", "0", "brighter"], fontsize=8)
    label_bar = figure.colorbar(label_image, cax=axes_at(bar_x, row_bottoms[4], 0.12, row_heights[4]))
    label_bar.set_ticks([0, 0.5, 1])
    label_bar.ax.tick_params(labelsize=8)
    label_bar.set_label("anomaly label", fontsize=8)

    if title:
        text_at(left, 0.12, title, ha="left", va="top", fontsize=12.5)
    if caption_lines:
        figure.text(left / width, 0.12 / height, "\n".join(caption_lines), ha="left", va="bottom", fontsize=8.5, color="0.15")
    return figure


def _crop_box(examples: Sequence[TaskExample], foreground: np.ndarray | None, margin: int) -> tuple[slice, ...]:
    """Bounding box of the foreground and of every anomaly, grown by `margin` (the whole image without a foreground)."""
    shape = examples[0].before.shape
    if foreground is None:
        return tuple(slice(0, size) for size in shape)
    keep = np.asarray(foreground, dtype=bool).copy()
    for example in examples:
        keep |= example.mask
    if not keep.any():
        return tuple(slice(0, size) for size in shape)
    box = []
    for axis, size in enumerate(shape):
        present = np.flatnonzero(keep.any(axis=tuple(a for a in range(len(shape)) if a != axis)))
        box.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + 1 + margin, size)))
    return tuple(box)


# ------------------------------------------------------------------------------- the real images


def _options(kind: str, order: int, max_anomalies: int):
    from nnunet_anomaly.tasks import TaskOptions

    preset = TaskOptions.cxr() if kind == "cxr" else TaskOptions.brain()
    return dataclasses.replace(preset, interpolation_order=order, max_anomalies=max_anomalies)


def _options_text(preset: str, order: int, max_anomalies: int) -> str:
    count = (
        "one anomaly per image for clarity (training places up to 4)"
        if max_anomalies == 1
        else f"up to {max_anomalies} anomalies per image"
    )
    return f"Options: TaskOptions.{preset}(), interpolation order {order}, {count}. Yellow box: the zoomed window. Green outline: anomaly mask."


def chest_scene(size: int = 256, *, order: int = 1, max_anomalies: int = 1) -> Scene:
    """The 2D scene: the real chest radiograph, its mirror as intra source, natural images as inter source."""
    from nnunet_anomaly.offline_data import chest_radiograph, natural_images
    from nnunet_anomaly.pools import ArrayPool

    cxr = chest_radiograph(size)
    # Only one real chest radiograph installs offline; the reference's intra-dataset source may be
    # the target image itself, so the pool is the radiograph and its left-right mirror.
    intra_pool = ArrayPool([cxr[None], np.ascontiguousarray(cxr[:, ::-1])[None]])
    inter_pool = ArrayPool([image[None] for image in natural_images(size)])
    return Scene(
        image=cxr[None],
        foreground=None,
        intra_pool=intra_pool,
        inter_pool=inter_pool,
        options=_options("cxr", order, max_anomalies),
        views=(),
        title=f"Synthetic anomaly tasks on a real chest radiograph ({size}x{size}, VinDr-style preprocessing)",
        caption=(
            "Image: pydicom-data RG1_UNCR.dcm (computed radiography, PA), inverted MONOCHROME1, "
            "histogram-equalised, in [-1, 1]. Intra-dataset blending source: the same radiograph or its "
            "left-right mirror (one real radiograph installs offline). Inter-dataset source: scikit-image's "
            "public-domain natural images, grey and equalised (the paper uses ImageNet). "
            + _options_text("cxr", order, max_anomalies)
        ),
        min_label_fraction=0.004,
    )


def brain_scene(resolution_mm: int = 2, *, order: int = 1, max_anomalies: int = 1) -> Scene:
    """The 3D scene: the MNI152 brain, itself as intra source, its GM/WM maps as inter source."""
    from nnunet_anomaly.offline_data import mni152_brain, mni152_tissue_maps
    from nnunet_anomaly.pools import ArrayPool

    brain, brain_mask, spacing = mni152_brain(resolution_mm)
    grey, white = mni152_tissue_maps(resolution_mm)
    intra_pool = ArrayPool([brain[None], np.ascontiguousarray(brain[::-1])[None]], masks=[brain_mask, brain_mask[::-1].copy()])
    inter_pool = ArrayPool([grey[None], white[None]], masks=[brain_mask, brain_mask])
    shape = "x".join(map(str, brain.shape))
    return Scene(
        image=brain[None],
        foreground=brain_mask,
        intra_pool=intra_pool,
        inter_pool=inter_pool,
        options=_options("brain", order, max_anomalies),
        views=(("axial", 2), ("coronal", 1)),
        title=f"Synthetic anomaly tasks on a real brain MRI volume (MNI152 T1, {shape} at {spacing[0]:g} mm)",
        caption=(
            "Volume: nilearn's MNI152 2009a symmetric T1 template (average of 152 healthy adults), z-scored "
            "inside the brain mask (foreground). Each column pair shows the axial and coronal slices with the "
            "most label, in neurological orientation (subject's left on the left). Intra-dataset blending source: "
            "the same volume or its left-right mirror (one brain installs offline). Inter-dataset source: the "
            "template's grey- and white-matter probability maps, z-scored: real brain data in another contrast "
            "(the paper uses MOOD abdominal CT). "
            + _options_text("brain", order, max_anomalies)
        ),
        min_label_fraction=0.0015,
    )


def render_tasks(
    setting: str, *, seed: int = 0, size: int = 256, resolution_mm: int = 2, order: int = 1, max_anomalies: int = 1
):
    """Run all five tasks on the real 2D (``"2d"``) or 3D (``"3d"``) image and return the montage figure.

    Parameters
    ----------
    setting : {"2d", "3d"}
        The chest radiograph (:func:`chest_scene`) or the brain volume (:func:`brain_scene`).
    seed : int
        Seed of the montage (see :func:`generate_task_examples`).
    size : int
        Side of the radiograph in pixels (2D).
    resolution_mm : int
        Voxel size of the brain in millimetres (3D; 4 is small and fast).
    order : {1, 3}
        Interpolation order of the tasks (3 is the reference's).
    max_anomalies : int
        Anomalies per image at most (1 keeps each panel readable; the recipe's default is 4).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if setting == "2d":
        scene = chest_scene(size, order=order, max_anomalies=max_anomalies)
    elif setting == "3d":
        scene = brain_scene(resolution_mm, order=order, max_anomalies=max_anomalies)
    else:
        raise ValueError(f"`setting` must be '2d' or '3d'; got {setting!r}")
    examples = generate_task_examples(
        scene.image,
        seed,
        foreground=scene.foreground,
        intra_pool=scene.intra_pool,
        inter_pool=scene.inter_pool,
        options=scene.options,
        min_label_fraction=scene.min_label_fraction,
    )
    return plot_task_examples(
        examples,
        views=scene.views,
        foreground=scene.foreground,
        title=f"{scene.title}, seed {seed}",
        caption=scene.caption,
        panel_inches=1.85 if setting == "2d" else 1.45,
    )


def save_figure(figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Write `figure` as a PNG atomically (a reader never sees a half-written file)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    FigureCanvasAgg(figure)  # the Agg canvas: no display needed
    with atomic_path(path) as tmp:
        # Written through Pillow with optimize (about 5% smaller); no metadata, so the same seed gives
        # byte-identical files.
        figure.savefig(tmp, dpi=dpi, format="png", facecolor="white", metadata={"Software": None}, pil_kwargs={"optimize": True})
    return path


# ------------------------------------------------------------------------------------------ verb


def _positive_int(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Render what each of the five synthetic anomaly tasks does (before, after, difference, label) on a "
        "real chest radiograph (2D) and a real brain MRI volume (3D), like Figure 2 of the paper. "
        "Writes tasks_2d.png and/or tasks_3d.png. Uses only data bundled in installed packages."
    )
    parser.add_argument("-o", "--output-dir", default=".", help="folder for the PNG files (default: current folder)")
    parser.add_argument("--seed", type=_positive_int(0), default=0, help="random seed (default 0); same seed, same pictures")
    parser.add_argument("--setting", choices=("2d", "3d", "both"), default="both", help="which image(s) to render (default both)")
    parser.add_argument(
        "--order", type=int, choices=(1, 3), default=1, help="interpolation order of the tasks: 1 (default) or 3 (the reference's)"
    )
    parser.add_argument("--size", type=_positive_int(32), default=256, help="side of the 2D radiograph in pixels (default 256)")
    parser.add_argument(
        "--resolution-mm", type=_positive_int(1), default=2, help="voxel size of the 3D brain in mm (default 2; 4 is fast)"
    )
    parser.add_argument(
        "--max-anomalies",
        type=_positive_int(1),
        default=1,
        help="anomalies per image at most (default 1, for readable panels; training uses up to 4)",
    )
    parser.add_argument("--dpi", type=_positive_int(30), default=120, help="PNG resolution (default 120)")


def run(args: argparse.Namespace) -> int:
    settings = ("2d", "3d") if args.setting == "both" else (args.setting,)
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"--output-dir {output_dir} exists and is not a folder")
    for setting in settings:
        try:
            figure = render_tasks(
                setting,
                seed=args.seed,
                size=args.size,
                resolution_mm=args.resolution_mm,
                order=args.order,
                max_anomalies=args.max_anomalies,
            )
        except ImportError as error:
            # A missing optional package (nilearn, pydicom-data): say which and how to install it.
            print(f"nnunet_anomaly show-tasks: error: {error}", file=sys.stderr)
            return 1
        path = save_figure(figure, output_dir / f"tasks_{setting}.png", dpi=args.dpi)
        print(f"wrote {path}")
    return 0
