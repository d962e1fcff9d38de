"""How nnU-Net finds the nnunet-anomaly trainers (``-tr AnomalyTaskTrainer``).

nnU-Net 2.8 resolves ``-tr NAME`` (and, at prediction time, the trainer name stored in the checkpoint)
by importing the modules of its own ``nnunetv2/training/nnUNetTrainer/`` folder, then the folders
listed in the environment variable ``nnUNet_extTrainer``. It has no entry points. We ship two doors,
both the same thin, guarded shim module ``nnunet_anomaly_trainers.py`` that re-exports
:func:`trainer_classes`:

- **installed shim** (no configuration): the wheel, and the editable install, put a copy of the shim
  into ``nnunetv2/training/nnUNetTrainer/``; it is in our install RECORD, so ``pip uninstall``
  removes it. :func:`installed_shim_path` tells whether it is there.
- **``nnUNet_extTrainer`` folder** (nnU-Net's official route): :func:`ext_trainer_dir` is a folder
  holding only the shim; ``export nnUNet_extTrainer=$(python -m nnunet_anomaly.plugin)``.

The trainers themselves live in :mod:`nnunet_anomaly.trainers`. Importing this module imports
neither nnU-Net nor torch.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

SHIM_MODULE_NAME = "nnunet_anomaly_trainers"
"""File stem of the shim module (in nnU-Net's trainer folder and in :func:`ext_trainer_dir`)."""

_NNUNET_TRAINER_SUBDIR = ("training", "nnUNetTrainer")


def ext_trainer_dir() -> str:
    """Folder to put on ``nnUNet_extTrainer`` so that nnU-Net finds our trainers.

    It holds only the shim module, because nnU-Net imports every module in such a folder.

    Returns
    -------
    str
        Absolute path of the folder (a string, ready for ``os.pathsep``-joined environment variables).

    Examples
    --------
    >>> import os
    >>> folder = ext_trainer_dir()
    >>> sorted(f for f in os.listdir(folder) if f.endswith(".py"))
    ['__init__.py', 'nnunet_anomaly_trainers.py']
    """
    return str(Path(__file__).resolve().parent / "ext_trainers")


def shim_source_path() -> Path:
    """The shim module's source file (what the installed shim is a copy of).

    Examples
    --------
    >>> shim_source_path().name
    'nnunet_anomaly_trainers.py'
    """
    return Path(ext_trainer_dir()) / f"{SHIM_MODULE_NAME}.py"


def installed_shim_path() -> Path | None:
    """Where the installed shim is inside the importable ``nnunetv2``, or None if it is not there.

    Finds ``nnunetv2`` without importing it (so this stays fast and torch-free).

    Returns
    -------
    pathlib.Path or None
        ``.../nnunetv2/training/nnUNetTrainer/nnunet_anomaly_trainers.py`` when that file exists; None
        when it does not or when nnU-Net is not installed.
    """
    spec = importlib.util.find_spec("nnunetv2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*_NNUNET_TRAINER_SUBDIR, f"{SHIM_MODULE_NAME}.py")
        if candidate.is_file():
            return candidate
    return None


def trainer_classes() -> dict[str, type]:
    """The nnU-Net trainer classes that :mod:`nnunet_anomaly.trainers` exports, by class name.

    Only subclasses of ``nnUNetTrainer`` defined inside ``nnunet_anomaly`` are returned, under their own
    ``__name__`` (the name nnU-Net stores in checkpoints and looks up), so re-exporting them can never
    shadow one of nnU-Net's own trainers. The module's ``__all__`` is honoured when it has one.

    Returns
    -------
    dict
        ``{class name: class}``; the shims put exactly these names in their namespace.
    """
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    module = importlib.import_module("nnunet_anomaly.trainers")
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    found = {}
    for name in names:
        obj = getattr(module, name, None)
        if (
            isinstance(obj, type)
            and issubclass(obj, nnUNetTrainer)
            and obj.__name__ == name
            and obj.__module__.split(".")[0] == "nnunet_anomaly"
        ):
            found[name] = obj
    return found


def discovery_report() -> str:
    """A few lines saying which discovery routes are active in this environment (no nnU-Net import).

    Examples
    --------
    >>> "nnUNet_extTrainer" in discovery_report()
    True
    """
    shim = installed_shim_path()
    ext_paths = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p.strip()]
    ours = ext_trainer_dir()
    on_ext = any(os.path.abspath(p) == ours for p in ext_paths)
    return "\n".join([
        f"installed shim (no configuration needed): {shim if shim else 'not installed'}",
        f"nnUNet_extTrainer folder: {ours} ({'on' if on_ext else 'not on'} nnUNet_extTrainer)",
    ])
