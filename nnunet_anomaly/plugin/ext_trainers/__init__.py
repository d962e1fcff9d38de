"""Folder for nnU-Net's official ``nnUNet_extTrainer`` route (see :func:`nnunet_anomaly.plugin.ext_trainer_dir`).

nnU-Net imports every module in this folder as a top-level module while it searches for a trainer,
so the folder holds only the thin, guarded shim ``nnunet_anomaly_trainers.py``; the trainers
themselves live in :mod:`nnunet_anomaly.trainers`.
"""
