"""Task/fold mapping: which synthetic tasks and which data blocks each fold model trains on.

The reference implementation (Baugh et al., MICCAI 2023, ``train_setup.py: construct_datasets``)
ties synthetic task ``i`` to data block ``i`` (the data are split into ``num_tasks`` contiguous
blocks) and, for ``T`` training tasks, enumerates the folds as
``itertools.combinations(range(num_tasks), T)`` in lexicographic order.  A fold model trains on
its ``T`` tasks and is validated on the held-out tasks.  The data blocks follow the tasks, but the
two sides are swapped when needed so that the larger portion of the data always trains:

* ``T=1``: train on every block except ``k``, validate on block ``k``;
* ``T=2``: train on the three blocks of the validation tasks, validate on the two training-task blocks;
* ``T=3``, ``T=4``: train on the blocks of the training tasks, validate on the rest.

Everything here is a pure function of ``(fold, num_train_tasks, num_tasks)``, except
:func:`grouped_blocks`, which builds the data blocks themselves so that no subject (or site, or
scanner) is in two blocks: a fold's synthetic validation then runs on anatomy it never trained on.
"""
from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Dict, List, Mapping, NamedTuple, Sequence, Tuple

__all__ = ["NUM_TASKS", "FoldSplit", "num_folds", "fold_split", "fold_splits", "grouped_blocks"]

#: Number of synthetic anomaly tasks (and data blocks) in the paper.
NUM_TASKS = 5


class FoldSplit(NamedTuple):
    """One fold: training/validation task ids and training/validation data-block ids (sorted tuples)."""

    train_tasks: Tuple[int, ...]
    val_tasks: Tuple[int, ...]
    train_blocks: Tuple[int, ...]
    val_blocks: Tuple[int, ...]


def _check_num_train_tasks(num_train_tasks, num_tasks) -> None:
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 2:
        raise ValueError(f"`num_tasks` must be an integer >= 2; got {num_tasks!r}")
    if isinstance(num_train_tasks, bool) or not isinstance(num_train_tasks, int):
        raise ValueError(f"`num_train_tasks` must be an integer; got {num_train_tasks!r}")
    if not 1 <= num_train_tasks <= num_tasks - 1:
        raise ValueError(
            f"`num_train_tasks` must be between 1 and {num_tasks - 1} (at least one task must be left "
            f"for validation out of {num_tasks}); got {num_train_tasks}"
        )


def num_folds(num_train_tasks: int, *, num_tasks: int = NUM_TASKS) -> int:
    """Number of fold models for ``num_train_tasks`` training tasks: ``C(num_tasks, num_train_tasks)``.

    Parameters
    ----------
    num_train_tasks : int
        Number of tasks each model trains on, 1 to ``num_tasks - 1``.
    num_tasks : int, optional
        Total number of tasks (and data blocks); 5 in the paper.

    Raises
    ------
    ValueError
        If ``num_train_tasks`` is outside ``1 .. num_tasks - 1``.

    Examples
    --------
    >>> [num_folds(t) for t in (1, 2, 3, 4)]
    [5, 10, 10, 5]
    >>> num_folds(2, num_tasks=6)
    15
    >>> num_folds(5)
    Traceback (most recent call last):
    ...
    ValueError: `num_train_tasks` must be between 1 and 4 (at least one task must be left for validation out of 5); got 5
    """
    _check_num_train_tasks(num_train_tasks, num_tasks)
    return comb(num_tasks, num_train_tasks)


def fold_split(fold: int, num_train_tasks: int, *, num_tasks: int = NUM_TASKS) -> FoldSplit:
    """Tasks and data blocks of one fold, as the reference enumerates them.

    Parameters
    ----------
    fold : int
        Fold index, ``0 .. num_folds(num_train_tasks) - 1``.
    num_train_tasks : int
        Number of tasks the fold model trains on (``T``).
    num_tasks : int, optional
        Total number of tasks and data blocks (5 in the paper).

    Returns
    -------
    FoldSplit
        ``train_tasks`` is the ``fold``-th element of ``itertools.combinations(range(num_tasks), T)``,
        ``val_tasks`` the remaining tasks.  Block ``i`` belongs to task ``i``; the training blocks are
        the blocks of whichever side (training tasks or validation tasks) is larger, so training always
        gets the larger portion of the data (on a tie, the training tasks' own blocks).

    Raises
    ------
    ValueError
        For ``num_train_tasks`` outside ``1 .. num_tasks - 1`` or an out-of-range ``fold``.

    Examples
    --------
    >>> fold_split(0, 1)
    FoldSplit(train_tasks=(0,), val_tasks=(1, 2, 3, 4), train_blocks=(1, 2, 3, 4), val_blocks=(0,))
    >>> fold_split(0, 2)
    FoldSplit(train_tasks=(0, 1), val_tasks=(2, 3, 4), train_blocks=(2, 3, 4), val_blocks=(0, 1))
    >>> fold_split(9, 3)
    FoldSplit(train_tasks=(2, 3, 4), val_tasks=(0, 1), train_blocks=(2, 3, 4), val_blocks=(0, 1))
    >>> fold_split(7, 1)
    Traceback (most recent call last):
    ...
    ValueError: fold 7 is out of range for 1 training task: valid folds are 0-4
    """
    total = num_folds(num_train_tasks, num_tasks=num_tasks)
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < total:
        plural = "task" if num_train_tasks == 1 else "tasks"
        raise ValueError(
            f"fold {fold!r} is out of range for {num_train_tasks} training {plural}: valid folds are 0-{total - 1}"
        )
    # combinations() is lazy and lexicographic; walking to the fold-th item never builds the full list.
    for index, train_tasks in enumerate(combinations(range(num_tasks), num_train_tasks)):
        if index == fold:
            break
    val_tasks = tuple(t for t in range(num_tasks) if t not in train_tasks)
    # Block i is tied to task i.  "Always train on the larger portion": swap when validation is larger.
    if len(val_tasks) > len(train_tasks):
        return FoldSplit(tuple(train_tasks), val_tasks, val_tasks, tuple(train_tasks))
    return FoldSplit(tuple(train_tasks), val_tasks, tuple(train_tasks), val_tasks)


def fold_splits(num_train_tasks: int, *, num_tasks: int = NUM_TASKS) -> List[FoldSplit]:
    """All folds for ``num_train_tasks`` training tasks, in fold order.

    Examples
    --------
    >>> [s.train_tasks for s in fold_splits(4)]
    [(0, 1, 2, 3), (0, 1, 2, 4), (0, 1, 3, 4), (0, 2, 3, 4), (1, 2, 3, 4)]
    """
    return [
        fold_split(fold, num_train_tasks, num_tasks=num_tasks)
        for fold in range(num_folds(num_train_tasks, num_tasks=num_tasks))
    ]


def grouped_blocks(identifiers: Sequence[str], groups: Mapping[str, str], *,
                   num_blocks: int = NUM_TASKS) -> List[Dict[str, List[str]]]:
    """nnU-Net's 5-fold ``splits_final.json`` with whole groups (subjects, sites, scanners) per block.

    Groups are placed largest first, each into the block that holds the fewest cases so far (ties: the
    lower block), so the blocks are as even as whole groups allow; cases and groups are sorted first,
    so the result depends only on the mapping.

    Parameters
    ----------
    identifiers : sequence of str
        The training cases.
    groups : mapping of str to str
        The group of every case (e.g. ``dataset.json``'s ``"case_groups"``).
    num_blocks : int, optional
        Number of blocks (5: one per task).

    Returns
    -------
    list of dict
        ``[{"train": [...], "val": [...]}, ...]``: block ``i`` is the ``"val"`` list of entry ``i``.

    Raises
    ------
    ValueError
        If a case has no group, or there are fewer groups than blocks.

    Examples
    --------
    >>> groups = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "d1": "D", "e1": "E", "f1": "F"}
    >>> [block["val"] for block in grouped_blocks(sorted(groups), groups)]
    [['a1', 'a2'], ['b1', 'f1'], ['c1'], ['d1'], ['e1']]
    >>> grouped_blocks(["x", "y"], {"x": "X", "y": "X"})
    Traceback (most recent call last):
    ...
    ValueError: group-aware folds need at least 5 groups (one per block); the 2 cases have 1 group: X
    """
    identifiers = sorted(str(i) for i in identifiers)
    missing = [i for i in identifiers if i not in groups]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} case(s) have no group: {shown}")
    members: Dict[str, List[str]] = {}
    for case in identifiers:
        members.setdefault(str(groups[case]), []).append(case)
    if len(members) < num_blocks:
        raise ValueError(f"group-aware folds need at least {num_blocks} groups (one per block); the "
                         f"{len(identifiers)} cases have {len(members)} group{'s' if len(members) != 1 else ''}: "
                         f"{', '.join(sorted(members))}")
    blocks: List[List[str]] = [[] for _ in range(num_blocks)]
    for name in sorted(members, key=lambda g: (-len(members[g]), g)):
        smallest = min(range(num_blocks), key=lambda b: (len(blocks[b]), b))
        blocks[smallest].extend(members[name])
    return [{"train": sorted(c for j, other in enumerate(blocks) if j != b for c in other), "val": sorted(block)}
            for b, block in enumerate(blocks)]
