"""Fold mapping against the full table of the reference (written out literally, not recomputed)."""
import pytest

from nnunet_anomaly.folds import NUM_TASKS, FoldSplit, fold_split, fold_splits, num_folds

# (train_tasks, train_blocks) for every fold, copied from the reference document's section 1.6.
REFERENCE_TABLE = {
    1: [
        ((0,), (1, 2, 3, 4)),
        ((1,), (0, 2, 3, 4)),
        ((2,), (0, 1, 3, 4)),
        ((3,), (0, 1, 2, 4)),
        ((4,), (0, 1, 2, 3)),
    ],
    2: [
        ((0, 1), (2, 3, 4)),
        ((0, 2), (1, 3, 4)),
        ((0, 3), (1, 2, 4)),
        ((0, 4), (1, 2, 3)),
        ((1, 2), (0, 3, 4)),
        ((1, 3), (0, 2, 4)),
        ((1, 4), (0, 2, 3)),
        ((2, 3), (0, 1, 4)),
        ((2, 4), (0, 1, 3)),
        ((3, 4), (0, 1, 2)),
    ],
    3: [
        ((0, 1, 2), (0, 1, 2)),
        ((0, 1, 3), (0, 1, 3)),
        ((0, 1, 4), (0, 1, 4)),
        ((0, 2, 3), (0, 2, 3)),
        ((0, 2, 4), (0, 2, 4)),
        ((0, 3, 4), (0, 3, 4)),
        ((1, 2, 3), (1, 2, 3)),
        ((1, 2, 4), (1, 2, 4)),
        ((1, 3, 4), (1, 3, 4)),
        ((2, 3, 4), (2, 3, 4)),
    ],
    4: [
        ((0, 1, 2, 3), (0, 1, 2, 3)),
        ((0, 1, 2, 4), (0, 1, 2, 4)),
        ((0, 1, 3, 4), (0, 1, 3, 4)),
        ((0, 2, 3, 4), (0, 2, 3, 4)),
        ((1, 2, 3, 4), (1, 2, 3, 4)),
    ],
}

ALL = (0, 1, 2, 3, 4)


def _complement(values):
    return tuple(v for v in ALL if v not in values)


@pytest.mark.parametrize("num_train_tasks", [1, 2, 3, 4])
def test_full_reference_table(num_train_tasks):
    expected = REFERENCE_TABLE[num_train_tasks]
    assert num_folds(num_train_tasks) == len(expected)
    got = fold_splits(num_train_tasks)
    assert len(got) == len(expected)
    for fold, (train_tasks, train_blocks) in enumerate(expected):
        split = fold_split(fold, num_train_tasks)
        assert got[fold] == split
        assert split == FoldSplit(train_tasks, _complement(train_tasks), train_blocks, _complement(train_blocks))


def test_num_folds_values():
    assert [num_folds(t) for t in (1, 2, 3, 4)] == [5, 10, 10, 5]
    assert NUM_TASKS == 5


@pytest.mark.parametrize("num_tasks", [5, 6, 7])
def test_invariants(num_tasks):
    everything = set(range(num_tasks))
    for num_train_tasks in range(1, num_tasks):
        splits = fold_splits(num_train_tasks, num_tasks=num_tasks)
        assert len(splits) == len(set(splits))  # every fold distinct
        for split in splits:
            assert all(isinstance(v, tuple) for v in split)
            assert len(split.train_tasks) == num_train_tasks
            assert set(split.train_tasks).isdisjoint(split.val_tasks)
            assert set(split.train_tasks) | set(split.val_tasks) == everything
            assert set(split.train_blocks).isdisjoint(split.val_blocks)
            assert set(split.train_blocks) | set(split.val_blocks) == everything
            assert len(split.train_blocks) >= len(split.val_blocks)  # the larger side trains
            # blocks follow tasks: one side's blocks are exactly one side's task ids
            assert set(split.train_blocks) in (set(split.train_tasks), set(split.val_tasks))
            assert list(split.train_tasks) == sorted(split.train_tasks)


def test_every_task_validated_and_trained_equally_often():
    # Over all folds of one T, each task is a training task C(4, T-1) times: the ensemble is balanced.
    for t, expected in zip((1, 2, 3, 4), (1, 4, 6, 4)):
        counts = [sum(task in s.train_tasks for s in fold_splits(t)) for task in ALL]
        assert counts == [expected] * 5


def test_generalises_to_six_tasks():
    assert num_folds(2, num_tasks=6) == 15
    assert fold_split(0, 1, num_tasks=6) == FoldSplit((0,), (1, 2, 3, 4, 5), (1, 2, 3, 4, 5), (0,))
    assert fold_split(5, 5, num_tasks=6) == FoldSplit((1, 2, 3, 4, 5), (0,), (1, 2, 3, 4, 5), (0,))


@pytest.mark.parametrize(
    "fold, num_train_tasks, message",
    [
        (7, 1, "fold 7 is out of range for 1 training task: valid folds are 0-4"),
        (-1, 2, "fold -1 is out of range for 2 training tasks: valid folds are 0-9"),
        (10, 3, "fold 10 is out of range for 3 training tasks: valid folds are 0-9"),
        (5, 4, "fold 5 is out of range for 4 training tasks: valid folds are 0-4"),
        (1.0, 1, "fold 1.0 is out of range"),
        (True, 1, "fold True is out of range"),
        (0, 0, "`num_train_tasks` must be between 1 and 4"),
        (0, 5, "`num_train_tasks` must be between 1 and 4"),
        (0, "2", "`num_train_tasks` must be an integer"),
    ],
)
def test_clear_errors(fold, num_train_tasks, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        fold_split(fold, num_train_tasks)


def test_bad_num_tasks():
    with pytest.raises(ValueError, match="`num_tasks` must be an integer >= 2"):
        num_folds(1, num_tasks=1)


def test_tie_keeps_own_blocks():
    # 3 of 6 tasks: equal sides, the training tasks keep their own blocks.
    assert fold_split(0, 3, num_tasks=6) == FoldSplit((0, 1, 2), (3, 4, 5), (0, 1, 2), (3, 4, 5))
