"""Per-epoch validation logging under (fake) DDP, checkpoint selection signal, early stopping."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

import nnunet_anomaly.nnunet.trainer as trainer_module
from nnunet_anomaly.nnunet.progress import AnomalyLocalLogger
from nnunet_anomaly.trainers import AnomalyTaskTrainer, AnomalyTaskTrainer_paper


def _bare(cls, tmp_path):
    from nnunetv2.training.logging.nnunet_logger import MetaLogger
    trainer = cls.__new__(cls)
    trainer.logger = MetaLogger(str(tmp_path), False)
    trainer.logger.local_logger = AnomalyLocalLogger()
    trainer.current_epoch = 0
    trainer.val_task_names = ["sink", "source"]
    trainer.is_ddp = False
    trainer.num_iterations_per_epoch = 250
    trainer.print_to_log_file = lambda *a, **k: None
    return trainer


def _outputs(scores, targets, tasks, loss):
    return {"loss": loss, "scores": [np.asarray(s, np.float32) for s in scores],
            "targets": [np.asarray(t, bool) for t in targets], "tasks": tasks}


class FakeDist:
    """torch.distributed stand-in: this process is rank 0 of 2; rank 1's objects come from a queue."""

    def __init__(self, other_rank_objects):
        self.queue = list(other_rank_objects)

    def get_world_size(self):
        return 2

    def all_gather_object(self, output, obj):
        output[:] = [obj, self.queue.pop(0)]


def test_validation_epoch_end_gathers_ranks_and_logs_ap(tmp_path, monkeypatch):
    trainer = _bare(AnomalyTaskTrainer, tmp_path)
    trainer.is_ddp = True
    mine = [_outputs([[0.9, 0.1]], [[1, 0]], ["sink"], 0.5)]
    other_scores = ({"source": [np.array([0.3, 0.8], np.float32)]}, {"source": [np.array([0, 1], bool)]})
    monkeypatch.setattr(trainer_module, "dist", FakeDist([other_scores, [0.7]]))
    trainer.on_validation_epoch_end(mine)
    log = trainer.logger.local_logger.my_fantastic_logging
    expected = average_precision_score([1, 0, 0, 1], [0.9, 0.1, 0.3, 0.8])
    assert log["mean_fg_dice"][0] == pytest.approx(expected)
    assert log["ema_fg_dice"][0] == pytest.approx(expected)  # nnU-Net's EMA starts at the first value
    assert log["val_losses"][0] == pytest.approx(0.6)        # mean over both ranks
    assert set(log["val_ap_per_task"][0]) == {"sink", "source"}
    assert log["dice_per_class_or_region"][0] == [1.0, 1.0]


def test_selection_sees_healthy_anatomy(tmp_path):
    """Two models find the anomalies equally well; the one that also marks healthy tissue is selected less."""
    anomalous = [_outputs([[0.9, 0.8, 0.1, 0.2]], [[1, 1, 0, 0]], ["sink"], 0.1)]
    logged = {}
    for name, healthy_scores in (("quiet", [0.05, 0.1, 0.0, 0.15]), ("fires", [0.95, 0.1, 0.85, 0.15])):
        trainer = _bare(AnomalyTaskTrainer, tmp_path)
        trainer.on_validation_epoch_end(anomalous + [_outputs([healthy_scores], [[0, 0, 0, 0]], ["healthy"], 0.0)])
        logged[name] = trainer.logger.local_logger.my_fantastic_logging
    for log in logged.values():
        assert log["val_ap"][0] == 1.0  # the anomalous patches alone cannot tell the two apart
    assert logged["quiet"]["mean_fg_dice"][0] == 1.0 == logged["quiet"]["val_ap_with_healthy"][0]
    expected = average_precision_score([1, 1, 0, 0, 0, 0, 0, 0], [0.9, 0.8, 0.1, 0.2, 0.95, 0.1, 0.85, 0.15])
    assert logged["fires"]["mean_fg_dice"][0] == pytest.approx(expected) and expected < 0.7
    assert logged["fires"]["val_healthy_fp"][0]["1%"] > 0.9 > 0.2 > logged["quiet"]["val_healthy_fp"][0]["1%"]


def test_selection_on_anomalies_only_is_still_available(tmp_path):
    class OnAnomalies(AnomalyTaskTrainer):
        selection_metric = "ap"

    trainer = _bare(OnAnomalies, tmp_path)
    trainer.on_validation_epoch_end([_outputs([[0.9, 0.1]], [[1, 0]], ["sink"], 0.1),
                                     _outputs([[0.95, 0.97]], [[0, 0]], ["healthy"], 0.0)])
    log = trainer.logger.local_logger.my_fantastic_logging
    assert log["mean_fg_dice"][0] == 1.0 and log["val_ap_with_healthy"][0] < 1.0


def test_validation_without_anomalies_logs_zero_not_nan(tmp_path):
    trainer = _bare(AnomalyTaskTrainer, tmp_path)
    trainer.on_validation_epoch_end([_outputs([[0.2, 0.1]], [[0, 0]], ["sink"], 0.1)])
    assert trainer.logger.local_logger.my_fantastic_logging["mean_fg_dice"][0] == 0.0


def test_early_stopping_counts_steps(tmp_path):
    trainer = _bare(AnomalyTaskTrainer_paper, tmp_path)
    assert trainer.early_stopping_patience_steps == 5000  # 20 epochs of 250 iterations
    log = trainer.logger.local_logger.my_fantastic_logging
    log["ema_fg_dice"] = [0.1, 0.5] + [0.4] * 19
    assert not trainer.should_stop_early()
    log["ema_fg_dice"].append(0.4)
    assert trainer.should_stop_early()
    assert not _bare(AnomalyTaskTrainer, tmp_path).should_stop_early()  # no early stopping by default


def test_progress_png_is_written(tmp_path):
    logger = AnomalyLocalLogger()
    for epoch in range(3):
        for key, value in [("mean_fg_dice", 0.1 * epoch), ("ema_fg_dice", 0.05 * epoch), ("train_losses", 1.0),
                           ("val_losses", 0.9), ("lrs", 1e-3), ("epoch_start_timestamps", 0.0),
                           ("epoch_end_timestamps", 2.0), ("dice_per_class_or_region", [0.1]),
                           ("val_auroc", 0.6), ("val_ap_per_task", {"sink": 0.2}),
                           ("val_auroc_per_task", {"sink": 0.6}), ("val_ap", 0.2), ("val_ap_with_healthy", 0.1),
                           ("val_healthy_fp", {"1%": 0.3, "0.1%": 0.6}), ("val_ap_bootstrap_sd", 0.02)]:
            logger.log(key, value, epoch)
    logger.plot_progress_png(str(tmp_path))
    from PIL import Image
    assert Image.open(tmp_path / "progress.png").size[0] > 500


def test_older_checkpoints_get_the_new_logger_keys():
    logger = AnomalyLocalLogger()
    old = {key: values for key, values in AnomalyLocalLogger().my_fantastic_logging.items()
           if key not in ("val_ap", "val_ap_with_healthy", "val_healthy_fp")}
    old["mean_fg_dice"] = [0.3, 0.4]
    logger.load_checkpoint(old)
    log = logger.my_fantastic_logging
    assert np.isnan(log["val_ap_with_healthy"]).all() and log["val_healthy_fp"] == [{}, {}]


def test_adamw_with_polynomial_decay(tmp_path):
    import torch
    from nnunet_anomaly.trainers import AnomalyTaskTrainer_demo

    trainer = _bare(AnomalyTaskTrainer_demo, tmp_path)
    trainer.network, trainer.initial_lr, trainer.num_epochs = torch.nn.Linear(2, 1), 3e-3, 10
    optimizer, schedule = trainer.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 0.0
    schedule.step(5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-3 * 0.5 ** 0.9)  # nnU-Net's poly decay
