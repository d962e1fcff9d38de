"""The ``nnunet_anomaly show-tasks`` verb and the montage functions behind it."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nnunet_anomaly import cli, visualise
from nnunet_anomaly.visualise import (
    CONTOUR_COLOUR,
    TaskExample,
    _zoom_window,
    generate_task_examples,
    plot_task_examples,
    save_figure,
)

# Small settings keep the whole file fast: a 64 x 64 radiograph and the brain at 4 mm (50 x 59 x 48).
FAST_2D = ["--setting", "2d", "--size", "64", "--dpi", "40"]
FAST_3D = ["--setting", "3d", "--resolution-mm", "4", "--dpi", "40"]


def _pixels(path):
    with Image.open(path) as image:
        image.load()
        return image.format, np.asarray(image.convert("RGB"))


def _has_colour(pixels, hex_colour, tolerance=40):
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(pixels.astype(int) - target).max(axis=-1) <= tolerance).any())


def _has_green_outline(pixels):
    # The thin contour is anti-aliased into the grey image at small dpi, so look for clearly green
    # pixels (nothing else in the montage is green: grey, yellow box, red/blue, magma).
    red, green, blue = (pixels[..., i].astype(int) for i in range(3))
    return int(((green - np.maximum(red, blue)) > 60).sum()) >= 10


def test_help_works_through_python_dash_m():
    completed = subprocess.run(
        [sys.executable, "-m", "nnunet_anomaly", "show-tasks", "--help"], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    for option in ("--output-dir", "--seed", "--setting", "--order", "--size", "--resolution-mm"):
        assert option in completed.stdout


def test_show_tasks_2d_writes_a_real_deterministic_png(tmp_path, capsys):
    first, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert cli.main(["show-tasks", "-o", str(first), "--seed", "3", *FAST_2D]) == 0
    assert "tasks_2d.png" in capsys.readouterr().out
    assert sorted(p.name for p in first.iterdir()) == ["tasks_2d.png"]  # no temporary file left behind
    image_format, pixels = _pixels(first / "tasks_2d.png")
    assert image_format == "PNG"
    height, width, _ = pixels.shape
    assert width > 300 and height > 300
    assert pixels.std() > 20  # not blank
    assert _has_green_outline(pixels)  # the anomalies are outlined

    assert cli.main(["show-tasks", "-o", str(again), "--seed", "3", *FAST_2D]) == 0
    assert (first / "tasks_2d.png").read_bytes() == (again / "tasks_2d.png").read_bytes()

    assert cli.main(["show-tasks", "-o", str(other), "--seed", "4", *FAST_2D]) == 0
    _, other_pixels = _pixels(other / "tasks_2d.png")
    assert other_pixels.shape != pixels.shape or not np.array_equal(other_pixels, pixels)


def test_show_tasks_3d_small_brain(tmp_path):
    assert cli.main(["show-tasks", "-o", str(tmp_path), "--seed", "1", "--order", "3", *FAST_3D]) == 0
    image_format, pixels = _pixels(tmp_path / "tasks_3d.png")
    assert image_format == "PNG"
    assert pixels.shape[1] > pixels.shape[0] > 300  # ten panel columns: wider than tall
    assert pixels.std() > 20
    assert _has_green_outline(pixels)


def test_task_examples_are_real_changes_and_leave_the_input_alone():
    from nnunet_anomaly.offline_data import chest_radiograph
    from nnunet_anomaly.tasks import TASK_NAMES

    scene = visualise.chest_scene(64)
    image = scene.image
    original = image.copy()
    kwargs = dict(intra_pool=scene.intra_pool, inter_pool=scene.inter_pool, options=scene.options)
    examples = generate_task_examples(image, 5, **kwargs, min_label_fraction=0.01)
    np.testing.assert_array_equal(image, original)
    assert [example.task for example in examples] == list(TASK_NAMES)
    for example in examples:
        np.testing.assert_array_equal(example.before, chest_radiograph(64))
        changed = example.after != example.before
        assert changed.any(), example.task
        assert 0 <= example.label.min() and example.label.max() <= 1
        assert np.all(example.label[~example.mask] == 0)
        # Either the anomaly reached the requested size or every attempt was used.
        assert example.label.sum() >= 0.01 * image[0].size or example.attempt == 15
    again = generate_task_examples(image, 5, **kwargs, min_label_fraction=0.01)
    for first, second in zip(examples, again):
        np.testing.assert_array_equal(first.after, second.after)
        assert first.attempt == second.attempt


def test_a_higher_size_threshold_needs_at_least_as_many_attempts():
    scene = visualise.chest_scene(64)
    kwargs = dict(intra_pool=scene.intra_pool, inter_pool=scene.inter_pool, options=scene.options, tasks=["smooth_intensity"])
    easy = generate_task_examples(scene.image, 0, **kwargs, min_label_fraction=0.0)[0]
    hard = generate_task_examples(scene.image, 0, **kwargs, min_label_fraction=0.05, max_attempts=8)[0]
    assert easy.attempt == 0
    assert hard.attempt >= easy.attempt
    assert hard.label.sum() >= easy.label.sum() or hard.label.sum() >= 0.05 * scene.image[0].size


def _synthetic_examples(ndim):
    # A known anomaly: a bright square (2D) or cube (3D) in a gradient image.
    shape = (40, 48) if ndim == 2 else (30, 36, 24)
    grid = np.indices(shape).sum(axis=0).astype(np.float32)
    before = grid / grid.max()
    mask = np.zeros(shape, bool)
    mask[tuple(slice(10, 18) for _ in shape)] = True
    after = before + 0.8 * mask
    label = np.where(mask, 0.9, 0).astype(np.float32)
    return [TaskExample(name, before, after, label, mask, 1, 0) for name in ("one", "two")]


@pytest.mark.parametrize("ndim", [2, 3])
def test_plot_marks_the_anomaly_and_writes_atomically(tmp_path, ndim):
    foreground = None if ndim == 2 else np.ones((30, 36, 24), bool)
    figure = plot_task_examples(_synthetic_examples(ndim), foreground=foreground, title="t", caption="c " * 50)
    path = save_figure(figure, tmp_path / "sub" / "montage.png", dpi=100)
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["montage.png"]
    _, pixels = _pixels(path)
    assert _has_colour(pixels, CONTOUR_COLOUR)
    assert _has_colour(pixels, visualise.ZOOM_COLOUR)


def test_plot_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        plot_task_examples([])
    flat = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="2D images or 3D volumes"):
        plot_task_examples([TaskExample("x", flat, flat, flat, flat > 0, 1, 0)])


def test_zoom_window_is_square_inside_and_holds_the_anomaly():
    mask = np.zeros((50, 70), bool)
    mask[40:50, 0:6] = True  # in a corner
    rows, cols = _zoom_window(mask)
    assert rows.stop - rows.start == cols.stop - cols.start
    assert 0 <= rows.start and rows.stop <= 50 and 0 <= cols.start and cols.stop <= 70
    assert mask[rows, cols].sum() == mask.sum()
    assert _zoom_window(np.zeros((8, 9), bool)) == (slice(0, 8), slice(0, 9))


def test_bad_arguments_are_clear(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["show-tasks", "--setting", "4d"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["show-tasks", "--size", "8"])
    assert "must be >= 32" in capsys.readouterr().err

    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    assert cli.main(["show-tasks", "-o", str(not_a_folder), *FAST_2D]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert not_a_folder.read_text() == "x"


def test_missing_optional_package_is_one_clear_line(tmp_path, capsys, monkeypatch):
    def missing(*args, **kwargs):
        raise ImportError("the MNI152 brain needs the optional package 'nilearn'; install ...[demo]")

    monkeypatch.setattr(visualise, "render_tasks", missing)
    assert cli.main(["show-tasks", "-o", str(tmp_path), *FAST_3D]) == 1
    error = capsys.readouterr().err
    assert "nilearn" in error and "Traceback" not in error
    assert list(tmp_path.iterdir()) == []
