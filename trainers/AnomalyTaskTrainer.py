"""The task-fold trainers: T training tasks, the others validate (C(5, T) folds)."""
from nnunet_anomaly.nnunet.trainer import AnomalyTaskTrainer


class AnomalyTaskTrainer_T2(AnomalyTaskTrainer):
    num_train_tasks = 2  # 10 folds


class AnomalyTaskTrainer_T3(AnomalyTaskTrainer):
    num_train_tasks = 3  # 10 folds


class AnomalyTaskTrainer_T4(AnomalyTaskTrainer):
    num_train_tasks = 4  # 5 folds
