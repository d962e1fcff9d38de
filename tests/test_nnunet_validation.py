"""Fixed synthetic validation set: seeds, pair selection, cropping, metrics, DDP gathering."""
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from nnunet_anomaly.nnunet.validation import (ValidationBatches, ValidationSample, crop_to_patch, gather_scores,
                                              make_validation_image, pair_seed, pixel_metrics, select_pairs,
                                              summarise)


def test_pixel_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    targets = rng.random(5000) < 0.05
    scores = rng.random(5000) + 0.5 * targets
    ap, roc = pixel_metrics(scores, targets)
    # nnunet_anomaly.evaluation is exact on the scores as they are (float64 here)
    assert ap == pytest.approx(average_precision_score(targets, scores), abs=1e-9)
    assert roc == pytest.approx(roc_auc_score(targets, scores), abs=1e-9)


def test_pixel_metrics_undefined_cases():
    assert all(np.isnan(pixel_metrics(np.ones(4), np.zeros(4))))
    ap, roc = pixel_metrics(np.ones(4), np.ones(4))
    assert ap == 1.0 and np.isnan(roc)
    with pytest.raises(ValueError, match="differ in size"):
        pixel_metrics(np.ones(3), np.ones(4))


def test_pair_seeds_depend_only_on_seed_case_and_task():
    draw = lambda *a: np.random.default_rng(pair_seed(*a)).integers(1 << 30)
    assert draw(1, "c1", "sink") == draw(1, "c1", "sink")
    assert len({draw(1, "c1", "sink"), draw(1, "c2", "sink"), draw(1, "c1", "source"), draw(2, "c1", "sink")}) == 4


def test_validation_image_is_identical_every_time():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 24, 24, 24)).astype(np.float32)
    fg = np.ones((24, 24, 24), bool)
    a = make_validation_image(image, fg, "sink", pair_seed(0, "c", "sink"))
    b = make_validation_image(image, fg, "sink", pair_seed(0, "c", "sink"))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert a[2].any() and a[1].dtype == np.float32 and a[2].dtype == bool


def test_select_pairs_is_balanced_fixed_and_bounded():
    cases = [f"c{i}" for i in range(10)]
    tasks = ["sink", "source", "smooth_intensity"]
    pairs = select_pairs(cases, tasks, 9, seed=0)
    assert pairs == select_pairs(cases, tasks, 9, seed=0)
    assert len(pairs) == 9 and {t: sum(p[1] == t for p in pairs) for t in tasks} == {t: 3 for t in tasks}
    assert len(select_pairs(cases, tasks, 1000, seed=0)) == 30
    with pytest.raises(ValueError):
        select_pairs(cases, tasks, 0, seed=0)


def test_crop_pads_outside_the_image():
    a = np.arange(5 * 6).reshape(1, 5, 6)
    out = crop_to_patch([a], (4, 5), (4, 4), [-7])[0]
    assert out.shape == (1, 4, 4)
    assert out[0, 0, 0] == a[0, 2, 3] and out[0, -1, -1] == -7


def test_summarise_pools_and_splits_by_task():
    s = {"sink": [np.array([0.9, 0.1])], "source": [np.array([0.2, 0.8])]}
    t = {"sink": [np.array([True, False])], "source": [np.array([False, True])]}
    summary = summarise(s, t, ["sink", "source", "smooth_intensity"])
    assert summary["pooled"]["ap"] == 1.0 and summary["pooled"]["n_voxels"] == 4
    assert summary["per_task"]["sink"]["ap"] == 1.0
    assert np.isnan(summary["per_task"]["smooth_intensity"]["ap"])


def test_gather_merges_every_rank_with_a_fake_all_gather():
    ranks = [({"sink": [np.array([0.9, 0.2])]}, {"sink": [np.array([True, False])]}),
             ({"sink": [np.array([0.1])], "source": [np.array([0.7])]},
              {"sink": [np.array([True])], "source": [np.array([True])]})]

    def fake_all_gather_object(output, obj):  # what torch.distributed does: every rank's object, in rank order
        assert len(output) == 2
        output[:] = ranks

    scores, targets = gather_scores(*ranks[0], world_size=2, all_gather_object=fake_all_gather_object)
    assert [a.tolist() for a in scores["sink"]] == [[0.9, 0.2], [0.1]]
    assert [a.tolist() for a in targets["source"]] == [[True]]
    # the pooled metric over the gathered data equals the metric over all data at once
    merged = summarise(scores, targets, ["sink", "source"])["pooled"]["ap"]
    assert merged == pytest.approx(average_precision_score([1, 0, 1, 1], [0.9, 0.2, 0.1, 0.7]))
    # single process: nothing is gathered
    assert gather_scores(*ranks[0], world_size=1, all_gather_object=None) == ranks[0]


def test_validation_batches_cycle_forever():
    samples = [ValidationSample("c", "sink", np.full((1, 4, 4), i, np.float32), np.zeros((1, 4, 4), np.float32),
                                np.zeros((4, 4), bool), None) for i in range(5)]
    batches = ValidationBatches(samples, 2)
    assert len(batches) == 3
    keys = [next(batches)["keys"] for _ in range(4)]
    assert keys == [[0, 1], [2, 3], [4], [0, 1]]
    from nnunet_anomaly.nnunet.transforms import SoftDownsampleForDSTransform
    ds = ValidationBatches(samples, 2, SoftDownsampleForDSTransform([[1, 1], [0.5, 0.5]]))
    batch = next(ds)
    assert batch["data"].shape == (2, 1, 4, 4) and [t.shape for t in batch["target"]] == [(2, 1, 4, 4), (2, 1, 2, 2)]
    with pytest.raises(ValueError, match="empty"):
        ValidationBatches([], 2)
