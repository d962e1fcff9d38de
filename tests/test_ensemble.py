"""Fold ensembles: probabilities averaged with validation weights (``nnunet_anomaly predict``)."""
import json

import numpy as np
import pytest
import torch

from nnunet_anomaly.nnunet.ensemble import ProbabilityEnsemblePredictor, validation_weights


def _summaries(root, aps):
    for fold, ap in aps.items():
        folder = root / f"fold_{fold}" / "validation"
        folder.mkdir(parents=True)
        summary = {"pooled": {"ap": 0.9}} if ap is None else {"pooled_with_healthy": {"ap": ap}, "pooled": {"ap": 0.9}}
        (folder / "summary.json").write_text(json.dumps(summary))


def test_validation_weights_follow_the_squared_validation_ap(tmp_path):
    _summaries(tmp_path, {0: 0.1, 1: 0.3, 4: 0.0})
    out = validation_weights(tmp_path, [0, 1, 4], weighting="validation")
    np.testing.assert_allclose(out["weights"], [0.1, 0.9, 0.0], atol=1e-6)
    assert out["validation_ap"] == [0.1, 0.3, 0.0] and out["note"] == ""
    assert validation_weights(tmp_path, [0, 1])["weights"] == [0.5, 0.5]  # the default


def test_validation_weights_fall_back_to_equal_weights_and_say_why(tmp_path):
    _summaries(tmp_path, {0: 0.2, 2: 0.0, 3: 0.0})
    missing = validation_weights(tmp_path, [0, 1], weighting="validation")  # fold 1 has no summary
    assert missing["weights"] == [0.5, 0.5] and "fold(s) [1]" in missing["note"]
    zeros = validation_weights(tmp_path, [2, 3], weighting="validation")
    assert zeros["weights"] == [0.5, 0.5] and "AP 0" in zeros["note"]
    with pytest.raises(ValueError, match="weighting"):
        validation_weights(tmp_path, [0], weighting="best")


def test_without_healthy_negatives_the_anomalous_ap_weighs(tmp_path):
    _summaries(tmp_path, {0: None, 1: 0.3})  # fold 0: an older summary, pooled AP 0.9 only
    np.testing.assert_allclose(validation_weights(tmp_path, [0, 1], weighting="validation")["weights"], [0.9, 0.1],
                               atol=1e-6)


class _Constant(torch.nn.Module):
    """A 'network' whose output is its one parameter everywhere (one logit per fold)."""

    def __init__(self):
        super().__init__()
        self.logit = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.logit.expand(1, *x.shape[1:])


def _predictor(logits, weights):
    predictor = ProbabilityEnsemblePredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.network = _Constant()
    predictor.list_of_parameters = [{"logit": torch.tensor(float(v))} for v in logits]
    predictor.fold_weights = weights
    predictor.predict_sliding_window_return_logits = lambda data: predictor.network(data).detach()
    return predictor


def test_the_predictor_averages_probabilities_not_logits():
    data = torch.zeros(1, 3, 4, 5)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    out = _predictor([6.0, -6.0, -6.0], None).predict_logits_from_preprocessed_data(data)
    assert out.shape == (1, 3, 4, 5)
    expected = (sigmoid(6.0) + 2 * sigmoid(-6.0)) / 3  # 0.336; the logit mean would give sigmoid(-2) = 0.119
    np.testing.assert_allclose(torch.sigmoid(out).numpy(), expected, rtol=1e-5)
    weighted = _predictor([6.0, -6.0], [0.9, 0.1]).predict_logits_from_preprocessed_data(data)
    np.testing.assert_allclose(torch.sigmoid(weighted).numpy(), 0.9 * sigmoid(6.0) + 0.1 * sigmoid(-6.0), rtol=1e-5)
    with pytest.raises(ValueError, match="2 fold models are loaded but 3 fold weights"):
        _predictor([1.0, 2.0], [0.2, 0.3, 0.5]).predict_logits_from_preprocessed_data(data)


def test_one_fold_is_exactly_nnunets_prediction():
    data = torch.zeros(1, 2, 2, 2)
    out = _predictor([17.0], None).predict_logits_from_preprocessed_data(data)
    assert torch.all(out == 17.0)  # no sigmoid/logit round trip (17 would saturate it)


def test_an_identity_output_model_is_clipped_not_squashed():
    """AnomalyTaskTrainer_reference regresses the raw output: its map is that output clipped to [0, 1]."""
    data = torch.zeros(1, 2, 2, 2)
    one = _predictor([0.3], None)
    one.output_activation = "identity"
    np.testing.assert_allclose(torch.sigmoid(one.predict_logits_from_preprocessed_data(data)).numpy(), 0.3, rtol=1e-5)
    folds = _predictor([1.7, -0.5, 0.3], None)
    folds.output_activation = "identity"
    exported = torch.sigmoid(folds.predict_logits_from_preprocessed_data(data)).numpy()  # nnU-Net's export
    np.testing.assert_allclose(exported, (1.0 + 0.0 + 0.3) / 3, rtol=1e-5)
    folds.average_outputs = True  # the identity model's "logit mean": raw mean, then clipped
    np.testing.assert_allclose(torch.sigmoid(folds.predict_logits_from_preprocessed_data(data)).numpy(),
                               0.5, rtol=1e-5)


def test_the_checkpoints_trainer_says_how_its_output_becomes_a_map():
    from nnunet_anomaly.nnunet.ensemble import trainer_output_activation

    assert trainer_output_activation("AnomalyTaskTrainer_reference") == "identity"
    assert trainer_output_activation("AnomalyTaskTrainer_paper") == "sigmoid"
    assert trainer_output_activation("nnUNetTrainer") == "sigmoid"
