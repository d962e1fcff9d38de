"""nnU-Net finds our trainers by name: installed shim, nnUNet_extTrainer folder, and the wheel that ships them.

The literal ``nnUNetv2_train`` / ``nnUNetv2_predict`` routes are exercised end to end in test_e2e_cli.py.
"""
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from nnunet_anomaly.plugin import (SHIM_MODULE_NAME, ext_trainer_dir, installed_shim_path, shim_source_path,
                                   trainer_classes)

REPO = Path(__file__).resolve().parents[1]
SHIM_IN_NNUNET = f"nnunetv2/training/nnUNetTrainer/{SHIM_MODULE_NAME}.py"


def _run_python(code, **env):
    environment = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environment, timeout=300)


def test_trainers_module_exports_the_headline_trainers():
    classes = trainer_classes()
    assert {"AnomalyTaskTrainer", "AnomalyTaskTrainer_ci"} <= set(classes)
    for name, cls in classes.items():
        assert cls.__name__ == name and cls.__module__.startswith("nnunet_anomaly.")


def test_every_trainer_class_in_the_trainers_package_is_exported():
    """A trainer defined in a submodule of nnunet_anomaly.trainers but missing from its __all__ would be
    invisible to nnU-Net."""
    import importlib
    import pkgutil

    import nnunet_anomaly.trainers as package
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    defined = set()
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        defined |= {obj.__name__ for obj in vars(module).values()
                    if isinstance(obj, type) and issubclass(obj, nnUNetTrainer) and obj.__module__ == info.name}
    assert defined and defined <= set(trainer_classes()), sorted(defined - set(trainer_classes()))


def test_installed_shim_is_current():
    shim = installed_shim_path()
    assert shim is not None, "the nnU-Net trainer shim is not installed; run `pip install -e .` (or make test)"
    assert shim.read_bytes() == shim_source_path().read_bytes(), f"{shim} is stale; reinstall the package"


def test_nnunet_resolves_every_trainer_to_our_class():
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    for name, cls in trainer_classes().items():
        assert recursive_find_trainer_class_by_name(name) is cls
    import nnunetv2.training.nnUNetTrainer.nnunet_anomaly_trainers as shim

    public = {n for n in vars(shim) if not n.startswith("_")}
    assert public == set(trainer_classes())  # nothing of nnU-Net's own is shadowed


def test_ext_trainer_folder_route_finds_our_classes():
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    folder = ext_trainer_dir()
    assert sorted(p.name for p in Path(folder).glob("*.py")) == ["__init__.py", f"{SHIM_MODULE_NAME}.py"]
    for name in ("AnomalyTaskTrainer", "AnomalyTaskTrainer_ci"):
        found = recursive_find_python_class(folder, name, None, base_folder=folder,
                                            cleanup_imports_from_base_folder=True)
        assert found is trainer_classes()[name]  # canonical class, so DA workers can unpickle it


def test_plugin_module_prints_the_ext_folder():
    result = subprocess.run([sys.executable, "-m", "nnunet_anomaly.plugin"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == ext_trainer_dir()
    check = subprocess.run([sys.executable, "-m", "nnunet_anomaly.plugin", "--check"], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "nnUNet_extTrainer": ext_trainer_dir()})
    assert "(on nnUNet_extTrainer)" in check.stdout


def test_broken_install_never_breaks_nnunet_trainers():
    """Simulate an ImportError in nnunet_anomaly.trainers: the shim warns, nnU-Net's own trainers still load."""
    result = _run_python("""
        import sys, warnings
        sys.modules["nnunet_anomaly.trainers"] = None   # makes `import nnunet_anomaly.trainers` raise ImportError
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cls = recursive_find_trainer_class_by_name("nnUNetTrainer_1epoch")
        print("FOUND", cls.__name__)
        print("WARNED", any("nnunet-anomaly trainers are unavailable" in str(w.message) for w in caught))
        try:
            recursive_find_trainer_class_by_name("AnomalyTaskTrainer")
        except RuntimeError as error:
            print("MISSING", "Could not find requested nnunet trainer AnomalyTaskTrainer" in str(error))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FOUND nnUNetTrainer_1epoch" in result.stdout
    assert "WARNED True" in result.stdout
    assert "MISSING True" in result.stdout


def test_shim_exports_nothing_when_our_package_fails(tmp_path):
    result = _run_python(f"""
        import sys, warnings, importlib.util
        sys.modules["nnunet_anomaly.plugin"] = None
        spec = importlib.util.spec_from_file_location("shim_copy", {str(shim_source_path())!r})
        module = importlib.util.module_from_spec(spec)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            spec.loader.exec_module(module)
        print(sorted(n for n in vars(module) if not n.startswith("_")), len(caught))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[] 1"


@pytest.mark.slow
def test_wheel_ships_the_shim_inside_nnunetv2(tmp_path):
    """Build the wheel (no network: --no-build-isolation) from a copy of the sources and inspect it."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for folder in ("nnunet_anomaly", "trainers", "dataset_conversion"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
         str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("nnunet_anomaly-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
        top_level = archive.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode()
        shipped = archive.read(SHIM_IN_NNUNET)
    assert shipped == shim_source_path().read_bytes()
    assert SHIM_IN_NNUNET in record  # so `pip uninstall nnunet-anomaly` removes it
    # nothing else of nnunetv2 is shipped, and nnunetv2 is not claimed as one of our packages
    assert [n for n in names if n.startswith("nnunetv2/")] == [SHIM_IN_NNUNET]
    assert top_level.split() == ["nnunet_anomaly"]
    assert "nnunet_anomaly/trainers/__init__.py" in names
