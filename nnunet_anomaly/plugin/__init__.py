"""How nnU-Net finds the nnunet-anomaly trainers (``-tr AnomalyTaskTrainer``).

nnU-Net 2.8 resolves ``-tr NAME`` (and, at prediction time, the trainer name stored in the checkpoint)
by importing the modules of its own ``nnunetv2/training/nnUNetTrainer/`` folder, then those of the
folders listed in the environment variable ``nnUNet_extTrainer``. It has no entry points.

Our door is the ``nnUNet_extTrainer`` route, made automatic:

- :func:`ext_trainer_dir` is a folder of ours holding only the thin, guarded module
  ``nnunet_anomaly_trainers.py``, which re-exports :func:`trainer_classes`;
- the start-up hook ``nnunet_anomaly.pth`` (installed into site-packages by ``pip install .`` and
  ``pip install -e .``, removed by ``pip uninstall``) appends that folder to ``nnUNet_extTrainer`` in
  every Python process, after the user's own entries (see :mod:`nnunet_anomaly.plugin._startup`);
- without the hook (switched off, or ``pip install --target``):
  ``export nnUNet_extTrainer=$(python -m nnunet_anomaly.plugin)``.

Nothing of ours is ever written into nnU-Net's package folder. The trainers themselves live in
:mod:`nnunet_anomaly.trainers`. Importing this module imports neither nnU-Net nor torch.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import site
import sys
from pathlib import Path

SHIM_MODULE_NAME = "nnunet_anomaly_trainers"
"""File stem of the module in :func:`ext_trainer_dir` that nnU-Net imports."""

STARTUP_HOOK_NAME = "nnunet_anomaly.pth"
"""File name of the start-up hook in site-packages."""

NNUNET_REQUIREMENT = "nnunetv2>=2.8.1,<2.9"
"""The nnU-Net releases this package is tested with (``setup.py`` declares the same range)."""

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
    """The module nnU-Net imports from :func:`ext_trainer_dir` (it re-exports :func:`trainer_classes`).

    Examples
    --------
    >>> shim_source_path().name
    'nnunet_anomaly_trainers.py'
    """
    return Path(ext_trainer_dir()) / f"{SHIM_MODULE_NAME}.py"


def stale_shim_path() -> Path | None:
    """A trainer shim that earlier builds of nnunet-anomaly wrote into nnU-Net's own folder, if one is still there.

    Those builds installed ``nnunetv2/training/nnUNetTrainer/nnunet_anomaly_trainers.py``; ``pip
    uninstall`` of them removes it. Finds ``nnunetv2`` without importing it (fast and torch-free).

    Returns
    -------
    pathlib.Path or None
    """
    spec = importlib.util.find_spec("nnunetv2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*_NNUNET_TRAINER_SUBDIR, f"{SHIM_MODULE_NAME}.py")
        if candidate.is_file():
            return candidate
    return None


def startup_hook_paths() -> list[Path]:
    """The installed start-up hook files (``nnunet_anomaly.pth``) in this interpreter's site directories."""
    folders = list(getattr(site, "getsitepackages", lambda: [])())
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    found = []
    for folder in dict.fromkeys(os.path.realpath(f) for f in folders):
        if os.path.isfile(os.path.join(folder, STARTUP_HOOK_NAME)):
            found.append(Path(folder, STARTUP_HOOK_NAME))
    return found


def _version_tuple(version: str) -> tuple:
    """Leading numeric release parts: '2.9.0rc1' -> (2, 9, 0), '2.8.1.dev0' -> (2, 8, 1)."""
    parts = []
    for piece in version.split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() < len(piece):
            break
    return tuple(parts)


def nnunet_version_problem(version: str | None = None) -> str | None:
    """A sentence when the installed nnunetv2 is outside :data:`NNUNET_REQUIREMENT`, else None.

    Examples
    --------
    >>> nnunet_version_problem("2.8.1") is None, nnunet_version_problem("2.8.7") is None
    (True, True)
    >>> nnunet_version_problem("2.9.0")
    'nnunetv2 2.9.0 is outside the tested range nnunetv2>=2.8.1,<2.9 (see documentation/install.md)'
    """
    if version is None:
        from importlib.metadata import PackageNotFoundError, version as installed_version
        try:
            version = installed_version("nnunetv2")
        except PackageNotFoundError:
            return "nnunetv2 is not installed"
    if (2, 8, 1) <= _version_tuple(version) < (2, 9):
        return None
    return f"nnunetv2 {version} is outside the tested range {NNUNET_REQUIREMENT} (see documentation/install.md)"


def trainer_classes() -> dict[str, type]:
    """The nnU-Net trainer classes that :mod:`nnunet_anomaly.trainers` exports, by class name.

    Only subclasses of ``nnUNetTrainer`` defined inside ``nnunet_anomaly`` are returned, under their own
    ``__name__`` (the name nnU-Net stores in checkpoints and looks up), so re-exporting them can never
    shadow one of nnU-Net's own trainers. The module's ``__all__`` is honoured when it has one.

    Returns
    -------
    dict
        ``{class name: class}``; the module in :func:`ext_trainer_dir` puts exactly these names in its namespace.
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
    """A few lines saying how nnU-Net finds our trainers in this environment (no nnU-Net import).

    Examples
    --------
    >>> "nnUNet_extTrainer" in discovery_report()
    True
    """
    from nnunet_anomaly.plugin._startup import SWITCH, hook_enabled

    hooks = startup_hook_paths()
    ext_paths = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p.strip()]
    ours = ext_trainer_dir()
    on_ext = any(os.path.realpath(p) == os.path.realpath(ours) for p in ext_paths)
    lines = [
        f"start-up hook: {', '.join(map(str, hooks)) if hooks else 'not installed in this interpreter'}"
        + ("" if hook_enabled() else f" (switched off by {SWITCH}={os.environ.get(SWITCH)})"),
        f"nnUNet_extTrainer: {os.environ.get('nnUNet_extTrainer', '')!r}",
        f"our trainer folder {ours} is {'on' if on_ext else 'NOT on'} nnUNet_extTrainer"
        + ("" if on_ext else "; export nnUNet_extTrainer=$(python -m nnunet_anomaly.plugin) or reinstall"),
        f"python: {sys.executable}",
    ]
    stale = stale_shim_path()
    if stale is not None:
        lines.append(f"WARNING: {stale} was left by an older nnunet-anomaly install; reinstall this package (pip "
                     "then removes it) or delete the file")
    problem = nnunet_version_problem()
    if problem:
        lines.append(f"WARNING: {problem}")
    return "\n".join(lines)
