"""Anatomy never seen: the brain cache, group-aware data blocks, acquisition variation, seen/unseen scoring."""
import json

import numpy as np
import pytest
import torch

from nnunet_anomaly import acquisition
from nnunet_anomaly.folds import grouped_blocks
from nnunet_anomaly.offline_brains import available_brains, load_brain, write_cached_brain


# ------------------------------------------------------------------------------------------ the brain cache
def _ball(shape=(30, 36, 30)):
    grid = np.indices(shape).astype(float)
    r = np.sqrt(sum(((g - (n - 1) / 2) / (n / 2.5)) ** 2 for g, n in zip(grid, shape)))
    return np.where(r < 1, 100 + 20 * np.cos(grid[0] / 2), 0.0).astype(np.float32), r < 1


def test_cached_brain_loads_skull_stripped_resampled_and_zscored(tmp_path):
    image, mask = _ball()
    head = image + 500 * (~mask)  # "skull" outside the mask must not survive
    write_cached_brain(tmp_path, "toy", head, mask, np.diag([1.0, 1.0, 1.0, 1.0]), kind="test", contrast="T1")
    assert "toy" in available_brains(tmp_path)
    brain, brain_mask, spacing = load_brain("toy", tmp_path, resolution_mm=2)
    assert spacing == (2.0, 2.0, 2.0) and brain.shape == (15, 18, 15)
    assert np.all(brain[~brain_mask] == 0) and abs(brain[brain_mask].mean()) < 1e-4
    assert abs(brain[brain_mask].std() - 1) < 1e-3


def test_missing_brain_names_the_fetch_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="offline_brains fetch --cache"):
        load_brain("neurosynth_t1", tmp_path / "empty")


def test_bad_cache_entries_are_refused_with_the_name(tmp_path):
    image, mask = _ball()
    image[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="toy: the image has 1 NaN"):
        write_cached_brain(tmp_path, "toy", image, mask, np.eye(4), kind="test", contrast="T1")
    with pytest.raises(ValueError, match="toy: the brain mask is empty"):
        write_cached_brain(tmp_path, "toy", np.ones((4, 4, 4)), np.zeros((4, 4, 4)), np.eye(4), kind="t", contrast="T1")


# ------------------------------------------------------------------------------------------ group-aware blocks
def test_grouped_blocks_keep_every_group_in_one_block_and_balance_them():
    rng = np.random.default_rng(0)
    groups = {f"case_{i:02d}": f"subject_{int(rng.integers(9))}" for i in range(40)}
    splits = grouped_blocks(list(groups), groups)
    assert len(splits) == 5
    assert sorted(c for s in splits for c in s["val"]) == sorted(groups)  # a partition
    for split in splits:
        assert not {groups[c] for c in split["val"]} & {groups[c] for c in split["train"]}
        assert sorted(split["train"] + split["val"]) == sorted(groups)
    sizes = [len(s["val"]) for s in splits]
    assert max(sizes) - min(sizes) <= max(list(groups.values()).count(g) for g in set(groups.values()))
    assert grouped_blocks(sorted(groups, reverse=True), groups) == splits  # order-independent


def test_grouped_blocks_refuse_missing_groups_and_too_few_groups():
    with pytest.raises(ValueError, match="1 case\\(s\\) have no group: b"):
        grouped_blocks(["a", "b"], {"a": "A"})
    with pytest.raises(ValueError, match="at least 5 groups"):
        grouped_blocks(list("abcdef"), dict(zip("abcdef", "AABBCD")))


# ------------------------------------------------------------------------------------------ acquisition variation
@pytest.mark.parametrize("change", ["bias", "thick", "gamma", "noise", "scale"])
def test_each_change_keeps_the_zscore_convention_and_changes_the_image(change):
    rng = np.random.default_rng(1)
    image, mask = _ball()
    image = acquisition.zscore_foreground(image[None] + rng.normal(0, 5, image.shape).astype(np.float32), mask)
    foreground = mask
    if change == "bias":
        out = acquisition.bias_field(image, mask, rng, 0.3)
    elif change == "thick":
        out = acquisition.thick_slices(image, mask, 2, 3.0)
    elif change == "gamma":
        out = acquisition.gamma_contrast(image, mask, 1.8)
    elif change == "noise":
        out = acquisition.add_noise(image, mask, rng, 0.2)
    else:
        out, foreground = acquisition.rescale(image, mask, (1.1, 0.9, 1.0))
        assert foreground.sum() != mask.sum()
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.all(out[0][~foreground] == 0)
    assert abs(out[0][foreground].mean()) < 1e-4 and abs(out[0][foreground].std() - 1) < 1e-3
    assert np.abs(out - image).max() > 0.05


def test_vary_acquisition_is_reproducible_and_leaves_the_input_alone():
    image, mask = _ball()
    image = acquisition.zscore_foreground(image[None], mask)
    before = image.copy()
    options = acquisition.AcquisitionOptions(p_thick_slices=1, p_bias=1, p_gamma=1, p_noise=1, p_scale=1)
    a = acquisition.vary_acquisition(image, mask, np.random.default_rng(5), options)
    b = acquisition.vary_acquisition(image, mask, np.random.default_rng(5), options)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(image, before)
    with pytest.raises(ValueError, match="p_bias must be in"):
        acquisition.AcquisitionOptions(p_bias=2)
    with pytest.raises(ValueError, match="gamma_range"):
        acquisition.AcquisitionOptions(gamma_range=(2.0, 1.0))


def test_acquisition_transform_moves_the_foreground_label_with_a_zoom():
    from nnunet_anomaly.nnunet.transforms import AcquisitionVariationTransform

    image, mask = _ball()
    image = acquisition.zscore_foreground(image[None], mask)
    seg = np.where(mask, 1, 0).astype(np.int16)
    seg[:2] = -1  # nnU-Net's padding stays padding
    options = acquisition.AcquisitionOptions(p_thick_slices=0, p_bias=0, p_gamma=0, p_noise=0, p_scale=1,
                                             scale_range=(1.2, 1.25))
    out = AcquisitionVariationTransform(options, seed=0)(image=torch.from_numpy(image),
                                                          segmentation=torch.from_numpy(seg[None]))
    new_seg = out["segmentation"].numpy()[0]
    assert (new_seg == 1).sum() > mask.sum()  # a bigger brain
    assert np.all(out["image"].numpy()[0][new_seg != 1] == 0)
    assert np.all(new_seg[:2][~(new_seg[:2] == 1)] == -1)


# ------------------------------------------------------------------------------------------ the demo's data
def test_demo_dataset_groups_training_anatomies_and_records_test_anatomies(tmp_path):
    from nnunet_anomaly.dataset_conversion import Dataset990_MNIDemo as demo

    folder = demo.build_demo_dataset(tmp_path, num_training=8, num_test_healthy=2, num_test_per_anomaly=1)
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["case_groups"] == {f"train_{i:03d}": demo.TRAIN_ANATOMIES[i % 8] for i in range(8)}
    records = json.loads((folder / "test_cases.json").read_text())
    assert records["test_healthy_000"] == {"kind": "healthy", "anatomy": "neurosynth_t1", "seen": False}
    assert records["test_healthy_001"] == {"kind": "healthy", "anatomy": "mni152_2009a", "seen": True}
    assert set(records) == {"test_healthy_000", "test_healthy_001", "test_tumour_000", "test_cyst_000"}
    with pytest.raises(ValueError, match="train_anatomies"):  # another anatomy list in the same folder
        demo.build_demo_dataset(tmp_path, num_training=8, num_test_healthy=2, num_test_per_anomaly=1,
                                train_anatomies=demo.TRAIN_ANATOMIES[:5])
