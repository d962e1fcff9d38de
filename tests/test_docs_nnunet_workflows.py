"""The documentation states the facts an nnU-Net user needs, and they match the code.

* the external-pool step comes before the first 3D training command wherever one is shown;
* which trainer reproduces the paper, and that the default keeps nnU-Net's SGD for 1000 x 250;
* ``checkpoint_best.pth``, the selected model, is what ``nnunet_anomaly predict`` uses by default;
* the number of folds of every trainer (``_T2`` / ``_T3``: 10);
* what ``--c`` does, which of nnU-Net's tools apply, how the trainers are found.
"""
import re
from pathlib import Path

import pytest

from nnunet_anomaly.folds import num_folds
from nnunet_anomaly.trainers import (AnomalyTaskTrainer, AnomalyTaskTrainer_paper, AnomalyTaskTrainer_reference,
                                     AnomalyTaskTrainer_T2, AnomalyTaskTrainer_T3, AnomalyTaskTrainer_T4)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "documentation"
FENCE = re.compile(r"```(?:bash|sh|console)\n(.*?)```", re.DOTALL)


def _command_lines(path: Path) -> list:
    return [line.strip() for block in FENCE.findall(path.read_text()) for line in block.splitlines()]


@pytest.mark.parametrize("page", [ROOT / "README.md", DOCS / "quickstart.md", DOCS / "training.md"],
                         ids=lambda p: p.name)
def test_the_pool_step_comes_before_the_first_3d_training(page):
    lines = _command_lines(page)
    first_3d = next(i for i, line in enumerate(lines)
                    if re.search(r"nnUNetv2_train \S+ 3d_\w+ .*-tr AnomalyTaskTrainer", line))
    assert any(line.startswith("export nnunet_anomaly_pool=") for line in lines[:first_3d]), page.name


def test_fold_1_and_dropping_are_explained_where_users_train():
    for page in (ROOT / "README.md", DOCS / "quickstart.md", DOCS / "training.md"):
        text = " ".join(page.read_text().split())
        assert "fold 1" in text and "-f 0 1 2 3 4" in text, page.name
    training = " ".join((DOCS / "training.md").read_text().split())
    assert "dropped_tasks" in training and "stderr" in training


def test_which_trainer_reproduces_the_paper_is_stated_and_true():
    text = " ".join((DOCS / "training.md").read_text().split())
    section = text[text.index("## Which trainer reproduces the paper"):text.index("## The paper's settings")]
    assert "`AnomalyTaskTrainer` (the default) does not reproduce the paper's training" in section
    assert "SGD" in section and "1000 epochs of 250 iterations" in section and "no early stopping" in section
    assert "`AnomalyTaskTrainer_paper`" in section and "`AnomalyTaskTrainer_reference`" in section
    # the facts, from the classes
    assert not AnomalyTaskTrainer.paper_schedule and AnomalyTaskTrainer.epochs is None
    assert AnomalyTaskTrainer.iterations_per_epoch is None and AnomalyTaskTrainer.early_stopping_patience_steps is None
    assert AnomalyTaskTrainer_paper.paper_schedule and AnomalyTaskTrainer_paper.early_stopping_patience_steps
    assert AnomalyTaskTrainer_reference.paper_schedule and not AnomalyTaskTrainer_reference.deep_supervision
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "keeps nnU-Net's SGD for 1000 epochs × 250 iterations" in readme


def test_nnunet_trainer_defaults_are_what_the_docs_say():
    import inspect

    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    source = inspect.getsource(nnUNetTrainer.__init__) + inspect.getsource(nnUNetTrainer.configure_optimizers)
    assert "self.num_epochs = 1000" in source and "self.num_iterations_per_epoch = 250" in source
    assert "torch.optim.SGD" in source


@pytest.mark.parametrize("page", [ROOT / "README.md", DOCS / "prediction.md", DOCS / "training.md"],
                         ids=lambda p: p.name)
def test_the_default_checkpoint_of_predict_is_the_one_the_docs_name(page):
    import argparse

    from nnunet_anomaly.nnunet.predict import configure_parser
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    default = parser.get_default("chk")
    assert default == "checkpoint_best.pth"  # the selected model (issue 16 item 3)
    text = " ".join(page.read_text().split())
    assert re.search(rf"`?{re.escape(default)}`?,? (the selected model|predicts with the selected|is the selected)"
                     rf"|uses `{re.escape(default)}` by default", text), page.name
    assert "default `checkpoint_final.pth`" not in text and "(`-chk`, default `checkpoint_final.pth`)" not in text


def test_fold_counts_in_the_training_table_match_the_code():
    rows = re.findall(r"^\| `(AnomalyTaskTrainer\w*)` \| (\d) \| (\d+) \|", (DOCS / "training.md").read_text(),
                      re.MULTILINE)
    classes = {c.__name__: c for c in (AnomalyTaskTrainer, AnomalyTaskTrainer_T2, AnomalyTaskTrainer_T3,
                                       AnomalyTaskTrainer_T4)}
    assert {name for name, *_ in rows} == set(classes)
    for name, tasks, folds in rows:
        assert classes[name].num_train_tasks == int(tasks) and num_folds(int(tasks)) == int(folds)
    for page in (ROOT / "README.md", DOCS / "training.md"):
        assert re.search(r"`_T2` and `_T3`[^.]* 10 folds", " ".join(page.read_text().split())), page.name


def test_resuming_nnunet_tools_and_discovery_are_documented():
    training = " ".join((DOCS / "training.md").read_text().split())
    assert "A finished fold stays finished" in training and "A killed run resumes" in training
    prediction = " ".join((DOCS / "prediction.md").read_text().split())
    for tool in ("nnUNetv2_accumulate_crossval_results", "nnUNetv2_find_best_configuration",
                 "nnUNetv2_determine_postprocessing", "nnunet_anomaly crossval"):
        assert tool in prediction
    assert "nnunet_anomaly.pth" in prediction and "Nothing is written into nnU-Net's package folder" in prediction
