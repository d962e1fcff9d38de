"""nnunet-anomaly: learn to localise medical anomalies from healthy images and synthetic tasks.

The library works on plain numpy arrays (channel-first, any number of spatial dimensions):

- :mod:`nnunet_anomaly.poisson`: N-D Poisson image editing (exact Dirichlet solve with the DST-I);
- :mod:`nnunet_anomaly.tasks`: the five synthetic anomaly tasks and the shared recipe;
- :mod:`nnunet_anomaly.labelling`: the Gaussian labelling function;
- :mod:`nnunet_anomaly.folds`: the (synthetic task, data fold) cross-validation mapping;
- :mod:`nnunet_anomaly.evaluation`: the paper's metrics, tables and figures.

nnU-Net trainers live in :mod:`nnunet_anomaly.trainers`; importing this package never imports
nnU-Net or torch.
"""

__version__ = "0.1.0"
