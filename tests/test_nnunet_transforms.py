"""The anomaly transform that runs in nnU-Net's DA workers, and soft deep-supervision downsampling."""
import numpy as np
import pytest
import torch

from nnunet_anomaly.nnunet.transforms import (SoftDownsampleForDSTransform, SyntheticAnomalyTransform,
                                              foreground_from_segmentation)
from nnunet_anomaly.pools import ArrayPool

PATCH = (24, 28, 24)


def _patch(seed=0):
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in PATCH], indexing="ij"))
    inside = np.sqrt((grid ** 2).sum(0)) < 0.9
    image = (rng.standard_normal(PATCH) * inside).astype(np.float32)[None]
    seg = np.where(inside, 1, 0).astype(np.int16)[None]
    seg[:, :2] = -1  # nnU-Net: outside the nonzero region / padding
    return torch.from_numpy(image), torch.from_numpy(seg)


def _transform(tasks=("sink", "source", "smooth_intensity"), seed=3, **kwargs):
    pool = ArrayPool([_patch(s)[0].numpy() for s in (5, 6)])
    return SyntheticAnomalyTransform(tasks, seed=seed, intra_pool=pool, inter_pool=pool, **kwargs)


@pytest.mark.parametrize("tasks", [("sink",), ("source",), ("smooth_intensity",), ("intra_blend",), ("inter_blend",)])
def test_transform_output_contract(tasks):
    image, seg = _patch()
    before = image.clone()
    out = _transform(tasks)(image=image, segmentation=seg)
    label = out["segmentation"]
    assert label.dtype == torch.float32 and tuple(label.shape) == (1, *PATCH)
    assert float(label.min()) >= 0.0 and float(label.max()) <= 1.0
    assert out["image"].dtype == torch.float32 and out["image"].shape == image.shape
    assert torch.equal(image, before), "the input patch must not be modified"
    changed = (out["image"] != before).any(0).numpy()
    assert float(label.max()) > 0, "an anomaly must be placed in a patch that is mostly foreground"
    # the soft label is positive only where the image changed, or in what the reference's grey closing and
    # hole filling reach from there (a step of the 18-neighbourhood, and the holes it encloses)
    from scipy import ndimage
    reach = ndimage.binary_fill_holes(ndimage.binary_dilation(changed, ndimage.generate_binary_structure(3, 2)))
    assert not bool(((label[0].numpy() > 0) & ~reach).any())
    from nnunet_anomaly.tasks import TaskOptions
    raw = _transform(tasks, options=TaskOptions.brain(fill_holes=False))(image=image.clone(), segmentation=seg)
    raw_changed = (raw["image"] != before).any(0)
    assert not bool(((raw["segmentation"][0] > 0) & ~raw_changed).any())  # without filling: exactly the change


def test_transform_is_deterministic_given_seed_and_differs_between_seeds():
    image, seg = _patch()
    a = _transform(seed=11)
    b = _transform(seed=11)
    c = _transform(seed=12)
    results = [t(image=image.clone(), segmentation=seg.clone())["segmentation"] for t in (a, b, c)]
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], results[2])
    # successive calls draw new parameters
    again = a(image=image.clone(), segmentation=seg.clone())["segmentation"]
    assert not torch.equal(results[0], again)


def test_transform_worker_streams_differ(monkeypatch):
    import nnunet_anomaly.nnunet.transforms as module
    image, seg = _patch()
    labels = []
    for identity in [(1,), (2,)]:
        monkeypatch.setattr(module, "_worker_identity", lambda identity=identity: identity)
        labels.append(_transform(seed=1)(image=image.clone(), segmentation=seg.clone())["segmentation"])
    assert not torch.equal(labels[0], labels[1])


def test_transform_without_foreground_returns_unchanged_patch_and_zero_label():
    image, _ = _patch()
    seg = torch.zeros((1, *PATCH), dtype=torch.int16)
    out = _transform()(image=image.clone(), segmentation=seg)
    assert torch.equal(out["image"], image)
    assert float(out["segmentation"].abs().max()) == 0.0


def test_transform_on_a_constant_patch_returns_it_unchanged_with_zero_label():
    # e.g. a patch of flat padding that still carries foreground labels: nothing to corrupt, no crash
    _, seg = _patch()
    image = torch.full((1, *PATCH), 0.5)
    out = _transform(p_anomaly=1.0)(image=image.clone(), segmentation=seg)
    assert torch.equal(out["image"], image)
    assert float(out["segmentation"].abs().max()) == 0.0


def test_transform_pickles_for_worker_processes():
    import pickle
    t = _transform()
    t.next_rng()
    clone = pickle.loads(pickle.dumps(t))
    assert clone._pid is None and clone.tasks == t.tasks


def test_transform_rejects_bad_settings():
    with pytest.raises(ValueError, match="at least one task"):
        SyntheticAnomalyTransform([], seed=0)
    with pytest.raises(ValueError, match="p_anomaly"):
        SyntheticAnomalyTransform(["sink"], seed=0, p_anomaly=1.5)


def test_foreground_counts_only_positive_labels():
    seg = torch.tensor([[[-1, 0], [1, 2]]], dtype=torch.int16)
    assert foreground_from_segmentation(seg).tolist() == [[False, False], [True, True]]


def test_soft_downsampling_averages_exactly():
    seg = torch.zeros((1, 4, 4, 4))
    seg[0, :2, :2, :2] = 1.0      # a full 2x2x2 block -> 1
    seg[0, 2, 2, 2] = 0.8         # one voxel of a block -> 0.1
    out = SoftDownsampleForDSTransform([[1, 1, 1], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]])(segmentation=seg)
    levels = out["segmentation"]
    assert torch.equal(levels[0], seg)
    assert levels[1].shape == (1, 2, 2, 2)
    assert levels[1][0, 0, 0, 0].item() == pytest.approx(1.0)
    assert levels[1][0, 1, 1, 1].item() == pytest.approx(0.1)
    assert levels[1].sum().item() == pytest.approx(1.1)
    assert levels[2].item() == pytest.approx((8 + 0.8) / 64)
    # nearest-neighbour (nnU-Net's default) would give a different, aliased value
    assert levels[2].item() not in (0.0, 1.0, 0.8)


def test_repr_is_short():
    text = repr(_transform())
    assert text.startswith("SyntheticAnomalyTransform(tasks=") and "ArrayPool(2)" in text and len(text) < 300
