"""The training canvas (issue 16, items 1-2): the image centred when it fits the patch, never shifted out."""
import numpy as np
import pytest

from nnunet_anomaly.nnunet.sampling import CanvasDataLoader, patch_origin
from nnunet_anomaly.nnunet.validation import make_validation_image, pair_seed, validation_canvas


class _Cases:
    """What nnU-Net's data loader reads: identifiers and load_case (a brain box of ones, its foreground)."""

    def __init__(self, shapes):
        self.identifiers = [f"case_{i}" for i in range(len(shapes))]
        self.shapes = dict(zip(self.identifiers, shapes))

    def load_case(self, identifier):
        shape = self.shapes[identifier]
        data = np.ones((1, *shape), np.float32)
        seg = np.ones((1, *shape), np.int16)
        locations = np.argwhere(seg > 0)  # (channel, *spatial) rows, as nnU-Net's class_locations
        return data, seg, None, {"class_locations": {1: locations[:: max(1, len(locations) // 5000)]}}


def _label_manager():
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    return LabelManager({"background": 0, "brain": 1}, regions_class_order=None)


def _off_centre(loader, shape, n=48):
    """Distance of the image's centre from the patch's centre, per sample, in voxels."""
    offsets = []
    for sample in range(n):
        lower, upper = loader.get_bbox(np.array(shape), sample % 3 == 0, loader._data.load_case("case_0")[3]["class_locations"])
        image_centre = (np.array(shape) - 1) / 2
        patch_centre = (np.array(lower) + np.array(upper) - 1) / 2
        offsets.append(float(np.abs(image_centre - patch_centre).max()))
    return np.array(offsets)


def test_a_brain_smaller_than_the_patch_is_always_centred():
    # the measurement: a 64x80x64 patch over a 40x48x40 brain, a third of the samples "foreground"
    np.random.seed(0)
    cases = _Cases([(40, 48, 40)])
    canvas = CanvasDataLoader(cases, 3, (64, 80, 64), (64, 80, 64), _label_manager(), oversample_foreground_percent=0.33)
    assert _off_centre(canvas, (40, 48, 40)).max() <= 1.0
    # nnU-Net's own loader shifts the oversampled ones by up to half the patch: what this replaces
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    np.random.seed(0)
    upstream = nnUNetDataLoader(cases, 3, (64, 80, 64), (64, 80, 64), _label_manager(), oversample_foreground_percent=0.33)
    assert _off_centre(upstream, (40, 48, 40)).max() > 5


@pytest.mark.parametrize("force_fg", [True, False])
def test_an_image_larger_than_the_patch_keeps_the_patch_inside_it(force_fg):
    np.random.seed(1)
    shape = (70, 30, 90)
    cases = _Cases([shape])
    loader = CanvasDataLoader(cases, 2, (32, 40, 32), (32, 40, 32), _label_manager(), oversample_foreground_percent=0.5)
    locations = cases.load_case("case_0")[3]["class_locations"]
    for _ in range(200):
        lower, upper = loader.get_bbox(np.array(shape), force_fg, locations)
        assert 0 <= lower[0] <= shape[0] - 32 and 0 <= lower[2] <= shape[2] - 32  # inside the image
        assert lower[1] == -5 and upper[1] == 35  # the axis that fits: centred


def test_rotation_margin_is_kept_around_the_patch():
    np.random.seed(2)
    cases = _Cases([(20, 20)])
    loader = CanvasDataLoader(cases, 1, (40, 40), (32, 32), _label_manager())  # 2D: pseudo-3D with a leading 1
    lower, upper = loader.get_bbox(np.array((1, 20, 20)), True, cases.load_case("case_0")[3]["class_locations"])
    assert lower == [0, -10, -10] and upper == [1, 30, 30]


def test_patch_origin_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="differ in dimensions"):
        patch_origin((10, 10), (8, 8, 8))


def test_validation_uses_the_training_canvas_and_training_sized_anomalies():
    """Validation anomalies are made on the canvas (as training makes them), so they are not smaller."""
    from nnunet_anomaly.tasks import TaskOptions
    rng = np.random.default_rng(0)
    shape, patch = (28, 34, 28), (40, 48, 40)
    image = rng.normal(size=(1, *shape)).astype(np.float32)
    foreground = np.zeros(shape, bool)
    foreground[2:-2, 2:-2, 2:-2] = True
    canvas, fg = validation_canvas(image, foreground, patch, np.random.default_rng(3))
    assert canvas.shape == (1, *patch) and fg.sum() == foreground.sum()
    where = np.argwhere(fg)
    assert np.abs((where.min(0) + where.max(0)) / 2 - (np.array(patch) - 1) / 2).max() <= 1  # centred
    sizes_canvas, sizes_case = [], []
    for i in range(12):
        seed = pair_seed(0, f"case_{i}", "sink")
        sizes_canvas.append(make_validation_image(canvas, fg, "sink", seed, options=TaskOptions.brain())[2].sum())
        sizes_case.append(make_validation_image(image, foreground, "sink", seed, options=TaskOptions.brain())[2].sum())
    # the task sizes its anomaly from the image it is given: the canvas, as in training
    assert np.median(sizes_canvas) > np.median(sizes_case)
