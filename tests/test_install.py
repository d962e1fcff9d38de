"""Real installs into a fresh virtual environment: nnU-Net finds the trainers, and nnU-Net is left as it was.

Each test creates a bare virtual environment (no pip, about a second) whose ``site-packages`` sees the
dependencies of the environment running the tests through a folder of links (torch, scipy, pip,
setuptools, ...; everything except nnU-Net, this package and any ``.pth`` file). nnU-Net is then
installed the way a user has it (a regular copy, or an editable flat-layout clone as nnU-Net's
README installs it) and this package is installed from a copy of the sources with pip, exactly as
``pip install .`` / ``pip install -e .`` would, without touching the network (``--no-deps
--no-build-isolation``). Reusing the installed dependencies keeps a test at about a minute instead of
the ~6 GB and several minutes a full ``pip install`` into an empty environment costs.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from _helpers import source_copy

pytestmark = pytest.mark.slow

HOOK = "nnunet_anomaly.pth"
#: names in the parent's site-packages that the child environment must not see
HIDDEN = ("nnunetv2", "nnunet_anomaly", "nnunet-anomaly", "__editable__", "_nnunet_anomaly")


def _purelib(prefix: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))


def _bin(prefix: Path, name: str) -> Path:
    return Path(sysconfig.get_path("scripts", vars={"base": str(prefix), "platbase": str(prefix)})) / name


def _dependency_view(folder: Path) -> Path:
    """Links to the parent's installed packages, minus nnU-Net, this package and every .pth file."""
    folder.mkdir()
    parent = Path(sysconfig.get_path("purelib"))
    for entry in parent.iterdir():
        if entry.name.startswith(HIDDEN) or entry.suffix == ".pth" or entry.name == "__pycache__":
            continue
        (folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return folder


@pytest.fixture
def child(tmp_path):
    """A bare venv that imports the parent's dependencies; returns (python, site-packages, environment)."""
    prefix = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(prefix)],
                   check=True, timeout=120)
    site_packages = _purelib(prefix)
    view = _dependency_view(tmp_path / "deps")
    (site_packages / "zz_parent_dependencies.pth").write_text(f"{view}\n")  # a plain path line, runs nothing
    env = {k: v for k, v in os.environ.items()
           if k not in ("nnUNet_extTrainer", "nnunet_anomaly_startup_hook", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_NO_INDEX"] = "1"
    return _bin(prefix, "python"), site_packages, env


def _run(python, *args, env, timeout=600):
    # run outside the repository: a `python -c` in its root would import ./nnunet_anomaly, not the install
    result = subprocess.run([str(python), *map(str, args)], capture_output=True, text=True, env=env,
                            cwd=Path(python).parent, timeout=timeout)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _pip(python, *args, env):
    return _run(python, "-m", "pip", "--disable-pip-version-check", *args, env=env)


def _snapshot(folder: Path) -> dict:
    """{relative path: sha256} of every file (bytecode caches excluded)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def _install_regular_nnunet(site_packages: Path) -> Path:
    import nnunetv2
    package = Path(nnunetv2.__file__).parent
    shutil.copytree(package, site_packages / "nnunetv2", ignore=shutil.ignore_patterns("__pycache__",
                                                                                        "nnunet_anomaly_trainers.py"))
    for info in package.parent.glob("nnunetv2-*.dist-info"):
        shutil.copytree(info, site_packages / info.name)
    return site_packages / "nnunetv2"


def _install_editable_nnunet(python, tmp_path, env) -> Path:
    """``git clone nnUNet && pip install -e .``: a flat-layout setuptools project installed editable."""
    import nnunetv2
    clone = tmp_path / "nnUNet"
    shutil.copytree(Path(nnunetv2.__file__).parent, clone / "nnunetv2",
                    ignore=shutil.ignore_patterns("__pycache__", "nnunet_anomaly_trainers.py"))
    (clone / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "nnunetv2"
        version = "2.8.1"

        [tool.setuptools.packages.find]
        include = ["nnunetv2", "nnunetv2.*"]
    """))
    _pip(python, "install", "--no-deps", "--no-build-isolation", "-q", "-e", clone, env=env)
    return clone / "nnunetv2"


FIND_EVERY_TRAINER = """
import os, json
import nnunetv2
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find
from nnunet_anomaly.plugin import trainer_classes
found = {name: find(name) is cls for name, cls in trainer_classes().items()}
others = {name: find(name).__name__ for name in ["nnUNetTrainer_1epoch", *os.environ.get("ALSO_FIND", "").split()]}
print("RESULT", json.dumps({"nnunetv2": nnunetv2.__file__, "found": found, "others": others,
                            "ext": os.environ.get("nnUNet_extTrainer")}))
"""


def _result(stdout: str) -> dict:
    import json
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])


def _check_found(python, envs, nnunet_folder: Path) -> list:
    """Fresh processes (one per environment, run side by side) that look every trainer up through nnU-Net."""
    runs = [subprocess.Popen([str(python), "-c", FIND_EVERY_TRAINER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=Path(python).parent) for env in envs]
    results = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stdout[-3000:] + stderr[-3000:]
        result = _result(stdout)
        assert Path(result["nnunetv2"]).parent == nnunet_folder  # the real nnU-Net, not a stray folder
        assert result["found"] and all(result["found"].values()), result["found"]
        assert result["others"]["nnUNetTrainer_1epoch"] == "nnUNetTrainer_1epoch"  # nnU-Net's own still found
        results.append(result)
    return results


def _user_trainer_folder(tmp_path) -> Path:
    folder = tmp_path / "my_trainers"
    folder.mkdir()
    (folder / "lab_trainers.py").write_text(textwrap.dedent("""
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        class MyLabTrainer(nnUNetTrainer):
            pass
    """))
    return folder


def test_pip_install_and_uninstall_with_a_regular_nnunet(child, tmp_path):
    python, site_packages, env = child
    nnunet = _install_regular_nnunet(site_packages)
    before = _snapshot(nnunet)

    _pip(python, "install", "--no-deps", "--no-build-isolation", "-q", source_copy(tmp_path / "nnunet-anomaly"), env=env)
    assert _snapshot(nnunet) == before, "the install wrote into nnU-Net's package folder"
    assert (site_packages / HOOK).is_file()
    record = next(site_packages.glob("nnunet_anomaly-*.dist-info")).joinpath("RECORD").read_text()
    assert not [line for line in record.splitlines() if line.startswith("nnunetv2/")]

    # a fresh process with no nnUNet_extTrainer finds every trainer, through our folder; one with the
    # user's own folder on it keeps that entry first and finds the user's trainer too
    mine = _user_trainer_folder(tmp_path)
    plain, users = _check_found(python, [env, {**env, "nnUNet_extTrainer": str(mine), "ALSO_FIND": "MyLabTrainer"}],
                                nnunet)
    ours = plain["ext"]
    assert ours.endswith(os.path.join("nnunet_anomaly", "plugin", "ext_trainers"))
    assert Path(ours).resolve().is_relative_to(site_packages.resolve())
    assert users["ext"].split(os.pathsep) == [str(mine), ours]
    assert users["others"]["MyLabTrainer"] == "MyLabTrainer"

    _pip(python, "uninstall", "-y", "-q", "nnunet-anomaly", env=env)
    assert _snapshot(nnunet) == before
    assert not (site_packages / HOOK).exists()
    after = _run(python, "-c", "import os, nnunetv2.training.nnUNetTrainer.nnUNetTrainer as m; "
                 "print(m.nnUNetTrainer.__name__, os.environ.get('nnUNet_extTrainer'))", env=env)
    assert after.strip().splitlines()[-1] == "nnUNetTrainer None"


def test_editable_install_next_to_an_editable_flat_layout_nnunet(child, tmp_path):
    """nnU-Net installed as its README says (clone, pip install -e .): a folder of ours under site-packages/nnunetv2
    would shadow it and break `import nnunetv2.training...`; our editable install must not create one."""
    python, site_packages, env = child
    nnunet = _install_editable_nnunet(python, tmp_path, env)
    before = _snapshot(nnunet)

    _pip(python, "install", "--no-deps", "--no-build-isolation", "-q", "-e", source_copy(tmp_path / "nnunet-anomaly"), env=env)
    assert not (site_packages / "nnunetv2").exists()
    assert (site_packages / HOOK).is_file()
    _check_found(python, [env], nnunet)
    assert _snapshot(nnunet) == before

    _pip(python, "uninstall", "-y", "-q", "nnunet-anomaly", env=env)
    assert not (site_packages / HOOK).exists() and not (site_packages / "nnunetv2").exists()
    after = _run(python, "-c", "import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as m; print(m.__file__)", env=env)
    assert Path(after.strip()).is_relative_to(nnunet)
    assert _snapshot(nnunet) == before
