"""nnU-Net's door to the nnunet-anomaly trainers (``nnUNetv2_train ... -tr AnomalyTaskTrainer``).

This module sits in the folder that our start-up hook appends to ``nnUNet_extTrainer`` (the folder
printed by ``python -m nnunet_anomaly.plugin``); nnU-Net imports it as a top-level module while it
looks a trainer up. It only re-exports the classes of :mod:`nnunet_anomaly.trainers`, which keep
their canonical module path, so nnU-Net's spawned data-augmentation workers can unpickle them.

nnU-Net imports this module whenever it searches the external folders for a trainer. A broken or
half-removed nnunet-anomaly must therefore never break that search: any error while importing ours
becomes a warning, and this module then simply exports nothing.
"""
try:
    from nnunet_anomaly.plugin import trainer_classes as _trainer_classes

    globals().update(_trainer_classes())
except Exception as _error:  # noqa: BLE001 -- deliberately broad, see the module docstring
    import warnings as _warnings

    _warnings.warn(
        f"nnunet-anomaly trainers are unavailable ({type(_error).__name__}: {_error}); nnU-Net's own "
        "trainers still work. Reinstall with `pip install nnunet-anomaly` to use AnomalyTaskTrainer.",
        RuntimeWarning,
        stacklevel=2,
    )
