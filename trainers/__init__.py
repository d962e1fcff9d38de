"""nnU-Net trainer classes of nnunet-anomaly (installed as ``nnunet_anomaly.trainers``).

``from nnunet_anomaly.trainers import *`` imports every trainer; nnU-Net finds them by class name.

=============================  =======================================================================
trainer                         what changes
=============================  =======================================================================
AnomalyTaskTrainer              1 training task, 4 validation tasks, 5 folds (the paper's headline)
AnomalyTaskTrainer_T2/_T3/_T4   2 / 3 / 4 training tasks (10 / 10 / 5 folds)
AnomalyTaskTrainer_MSE          MSE on the sigmoid probabilities instead of soft BCE
AnomalyTaskTrainer_nnUNetDA     nnU-Net's full data augmentation
AnomalyTaskTrainer_PosEnc       positional-encoding input channels inside the network
AnomalyTaskTrainer_paper        AdamW + the reference's per-step LR schedule + early stopping
AnomalyTaskTrainer_reference    paper optimisation + identity-output MSE + no deep supervision + pos. enc. + cubic, no TTA
..._paper_T2/_T3/_T4            the paper optimisation with 2 / 3 / 4 training tasks (and ``_reference_T*``)
AnomalyTaskTrainer_ci           1 epoch x 5 iterations, cheap validation (CI)
AnomalyTaskTrainer_demo         sized for the offline demo on 2 CPU cores
AnomalyTaskTrainer_demoLong     the demo recipe at GPU scale (benchmarks/bench_quality.py)
AnomalyTaskTrainer_demo2d       the chest X-ray demo (2D): the demo recipe + augmentation without mirroring
AnomalyTaskTrainer_demo2dQuick  the chest X-ray demo's ``--quick`` run (1 epoch x 5 iterations)
=============================  =======================================================================
"""
from nnunet_anomaly.trainers.AnomalyTaskTrainer import (AnomalyTaskTrainer, AnomalyTaskTrainer_T2,
                                                        AnomalyTaskTrainer_T3, AnomalyTaskTrainer_T4)
from nnunet_anomaly.trainers.augmentation_variants import AnomalyTaskTrainer_nnUNetDA
from nnunet_anomaly.trainers.loss_variants import AnomalyTaskTrainer_MSE
from nnunet_anomaly.trainers.paper import (AnomalyTaskTrainer_paper, AnomalyTaskTrainer_paper_T2,
                                           AnomalyTaskTrainer_paper_T3, AnomalyTaskTrainer_paper_T4,
                                           AnomalyTaskTrainer_reference, AnomalyTaskTrainer_reference_T2,
                                           AnomalyTaskTrainer_reference_T3, AnomalyTaskTrainer_reference_T4)
from nnunet_anomaly.trainers.positional_encoding import AnomalyTaskTrainer_PosEnc
from nnunet_anomaly.trainers.short_runs import (AnomalyTaskTrainer_ci, AnomalyTaskTrainer_demo, AnomalyTaskTrainer_demo2d,
                                                AnomalyTaskTrainer_demo2dQuick, AnomalyTaskTrainer_demoLong)

__all__ = ["AnomalyTaskTrainer", "AnomalyTaskTrainer_T2", "AnomalyTaskTrainer_T3", "AnomalyTaskTrainer_T4",
           "AnomalyTaskTrainer_MSE", "AnomalyTaskTrainer_nnUNetDA", "AnomalyTaskTrainer_PosEnc",
           "AnomalyTaskTrainer_paper", "AnomalyTaskTrainer_paper_T2", "AnomalyTaskTrainer_paper_T3",
           "AnomalyTaskTrainer_paper_T4", "AnomalyTaskTrainer_reference", "AnomalyTaskTrainer_reference_T2",
           "AnomalyTaskTrainer_reference_T3", "AnomalyTaskTrainer_reference_T4", "AnomalyTaskTrainer_ci",
           "AnomalyTaskTrainer_demo", "AnomalyTaskTrainer_demoLong", "AnomalyTaskTrainer_demo2d",
           "AnomalyTaskTrainer_demo2dQuick"]
