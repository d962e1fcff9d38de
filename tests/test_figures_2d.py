"""The ground-truth contour of the overlays lies on the lesion, in 2D images and in 3D slices.

With a perfect map (map == ground truth) of an off-centre lesion, the red contour that
``evaluation/_figures.py`` draws must trace the lesion's pixels as ``imshow`` shows them. The
contour's vertices are read back from the matplotlib artist (``ContourSet.allsegs``) and mapped to
pixel indices through the image's own extent and origin, so the check does not assume any of
matplotlib's conventions: a contour flipped upside down (``origin="upper"`` given to ``contour`` on an
axis that ``imshow(origin="upper")`` had already inverted) or shifted by half a pixel fails it.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib.contour import ContourSet
from PIL import Image

from nnunet_anomaly.evaluation import _figures, evaluate_folder

ROWS, COLS = 64, 48
#: rows 6..15, columns 30..41: far from the centre in both directions, so a flip of either axis shows
LESION = (slice(6, 16), slice(30, 42))


def _lesion_mask(shape=(ROWS, COLS)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[LESION] = 1
    return mask


@pytest.fixture
def drawn_figures(monkeypatch):
    """The figures that `_figures._save` writes, by file name (a closed figure keeps its artists)."""
    figures = {}
    save = _figures._save

    def keep(fig, path):
        figures[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(_figures, "_save", keep)
    return figures


def _contour_pixels(ax) -> np.ndarray:
    """The vertices of the axis' contour lines as (row, column) pixel indices of the image shown on it."""
    contours = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert len(contours) == 1, f"expected one ground-truth contour, found {len(contours)}"
    segments = [segment for level in contours[0].allsegs for segment in level]
    assert segments, "the contour has no line"
    xy = np.concatenate(segments)
    image = ax.images[0]
    rows, cols = image.get_array().shape[:2]
    left, right, bottom, top = image.get_extent()
    # imshow puts row 0 at the top edge of the extent for origin="upper", at the bottom edge for "lower"
    row0_edge, last_edge = (top, bottom) if image.origin == "upper" else (bottom, top)
    column = (xy[:, 0] - left) / (right - left) * cols - 0.5
    row = (xy[:, 1] - row0_edge) / (last_edge - row0_edge) * rows - 0.5
    return np.stack([row, column], axis=1)


def _assert_on_lesion(ax, lesion=LESION):
    """The level-0.5 contour of a binary mask runs half a pixel outside its outer pixels' centres."""
    pixels = _contour_pixels(ax)
    (r0, r1), (c0, c1) = ((s.start, s.stop - 1) for s in lesion)
    low, high = pixels.min(axis=0), pixels.max(axis=0)
    np.testing.assert_allclose(low, [r0 - 0.5, c0 - 0.5], atol=1e-6,
                               err_msg=f"contour spans rows/cols {low}..{high}; lesion rows {r0}..{r1}, cols {c0}..{c1}")
    np.testing.assert_allclose(high, [r1 + 0.5, c1 + 0.5], atol=1e-6,
                               err_msg=f"contour spans rows/cols {low}..{high}; lesion rows {r0}..{r1}, cols {c0}..{c1}")
    # every vertex lies on the lesion's outline: within half a pixel (plus the cut corners) of its box
    inside_box = ((pixels[:, 0] >= r0 - 0.5 - 1e-6) & (pixels[:, 0] <= r1 + 0.5 + 1e-6)
                  & (pixels[:, 1] >= c0 - 0.5 - 1e-6) & (pixels[:, 1] <= c1 + 0.5 + 1e-6))
    assert inside_box.all()
    on_edge = (np.minimum(np.abs(pixels[:, 0] - (r0 - 0.5)), np.abs(pixels[:, 0] - (r1 + 0.5))) < 0.51) | (
        np.minimum(np.abs(pixels[:, 1] - (c0 - 0.5)), np.abs(pixels[:, 1] - (c1 + 0.5))) < 0.51)
    assert on_edge.all(), "a contour vertex lies inside the lesion, not on its outline"


def _overlay_item(truth, *, volume, image=None):
    return {"case": "case_0", "slice": 3 if volume else -1, "volume": volume,
            "image": image, "map": truth.astype(np.float32), "truth": truth, "pixel_ap": 1.0}


@pytest.mark.parametrize("with_image", [True, False])
def test_perfect_2d_map_contour_lies_on_the_lesion(drawn_figures, tmp_path, with_image):
    truth = _lesion_mask()
    image = np.random.default_rng(0).normal(size=truth.shape).astype(np.float32) if with_image else None
    _figures.draw_overlays(tmp_path / "overlays.png", [_overlay_item(truth, volume=False, image=image)], "2D")
    fig = drawn_figures["overlays.png"]
    axes = [ax for ax in fig.axes if ax.images]  # the colour bar draws no image
    assert len(axes) == (3 if with_image else 1)
    for ax in axes:
        assert ax.images[0].origin == "upper"  # a 2D image keeps its rows top-down
        _assert_on_lesion(ax)
    assert (tmp_path / "overlays.png").is_file()


def test_3d_slice_contour_lies_on_the_lesion(drawn_figures, tmp_path):
    """Volume slices are shown with origin="lower"; the contour must still sit on the pixels (not half a pixel off)."""
    truth = _lesion_mask()
    _figures.draw_overlays(tmp_path / "overlays.png", [_overlay_item(truth, volume=True, image=truth * 1.0)], "3D")
    for ax in [ax for ax in drawn_figures["overlays.png"].axes if ax.images][:3]:
        assert ax.images[0].origin == "lower"
        _assert_on_lesion(ax)


@pytest.mark.parametrize("file_format", ["png", "nii.gz"])
def test_evaluate_draws_2d_ground_truth_on_the_lesion(drawn_figures, tmp_path, file_format):
    """The whole route: 2D files on disk (PNG, or the 2D NIfTI our conversion scripts write), a perfect map."""
    gt, pred, img = (tmp_path / name for name in ("gt", "pred", "img"))
    for folder in (gt, pred, img):
        folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        truth = _lesion_mask() if index else np.zeros((ROWS, COLS), np.uint8)
        picture = (rng.random(truth.shape) * 200 + 30 * truth).astype(np.uint8)
        if file_format == "png":
            Image.fromarray(truth * 255).save(gt / f"cxr_{index}.png")
            Image.fromarray(picture).save(img / f"cxr_{index}_0000.png")
        else:
            sitk.WriteImage(sitk.GetImageFromArray(truth), str(gt / f"cxr_{index}.nii.gz"))
            sitk.WriteImage(sitk.GetImageFromArray(picture.astype(np.float32)), str(img / f"cxr_{index}_0000.nii.gz"))
        # nnU-Net's 2D probabilities: (C, 1, H, W)
        np.savez_compressed(pred / f"cxr_{index}.npz", probabilities=truth[None, None].astype(np.float32))
    results = evaluate_folder([pred], gt, tmp_path / "out", images=img, setting="cxr", figure_cases=["cxr_1"],
                              progress=False)
    assert results["models"]["pred"]["pixel"]["ap_pooled"] == pytest.approx(1.0)
    fig = drawn_figures["overlays.png"]
    axes = [ax for ax in fig.axes if ax.images][:3]
    assert len(axes) == 3
    for ax in axes:
        _assert_on_lesion(ax)
    assert (tmp_path / "out" / "figures" / "overlays.png").is_file()


@pytest.mark.parametrize("ndim", [2, 3])
def test_task_montage_contour_lies_on_the_anomaly(ndim):
    """``show-tasks`` (visualise.py) outlines the anomaly mask on its zoomed "after" panel without a flip."""
    from nnunet_anomaly import visualise

    mask2d = _lesion_mask().astype(bool)
    if ndim == 2:
        mask, lesion2d = mask2d, mask2d
    else:  # a (X, Y, Z) volume: the axial view (axis 2) shows plane[:, :, k].T, the coronal one plane[:, k, :].T
        mask = np.zeros((COLS, 20, ROWS), bool)
        mask[:, 8:12, :] = mask2d.T[:, None, :]
    before = np.random.default_rng(0).normal(size=mask.shape).astype(np.float32)
    example = visualise.TaskExample("sink", before, before - mask, mask.astype(np.float32), mask, 1, 0)
    views = () if ndim == 2 else (("coronal", 1),)
    figure = visualise.plot_task_examples([example], views=views)
    plane = mask2d if ndim == 2 else visualise._plane(mask, 1, visualise._best_slice(example, 1))
    rows, cols = visualise._zoom_window(plane)
    zoomed = np.argwhere(plane[rows, cols])
    (r0, c0), (r1, c1) = zoomed.min(axis=0), zoomed.max(axis=0)
    outlined = [ax for ax in figure.axes if any(isinstance(c, ContourSet) for c in ax.collections)]
    assert len(outlined) == 1
    assert outlined[0].images[0].origin == ("upper" if ndim == 2 else "lower")
    _assert_on_lesion(outlined[0], (slice(r0, r1 + 1), slice(c0, c1 + 1)))
