"""nnU-Net v2 integration: the library behind the trainers in :mod:`nnunet_anomaly.trainers`.

Modules
-------
trainer              ``AnomalyTaskTrainer``: nnU-Net hooks wired to the pieces below
transforms           batchgeneratorsv2 anomaly transform; soft deep-supervision downsampling by averaging
losses               soft BCE-with-logits, MSE on probabilities, deep-supervision weights
validation           the fixed synthetic validation set, pixel AP/AUROC, DDP gathering
sources              preprocessed-case source pool; the external-pool rule
positional_encoding  CoordConv + random Fourier features inside the network
lr_schedule          the reference's warm-up / exponential decay / floor schedule
planning             add configurations (paper, tiny) to nnUNetPlans.json
progress             progress.png with the synthetic-validation curves

Importing this package does not import nnU-Net; import the submodules you need.
"""
