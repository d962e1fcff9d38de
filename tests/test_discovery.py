"""nnU-Net finds our trainers by name through our start-up hook and our nnUNet_extTrainer folder.

Nothing of ours goes into nnU-Net's package folder. Real installs (wheel and editable, into a fresh
virtual environment, with a regular and an editable flat-layout nnU-Net) are in test_install.py; the
literal ``nnUNetv2_train`` / ``nnUNetv2_predict`` routes run end to end in test_e2e_cli.py.
"""
import importlib.metadata
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from nnunet_anomaly.plugin import (SHIM_MODULE_NAME, STARTUP_HOOK_NAME, discovery_report, ext_trainer_dir,
                                   shim_source_path, stale_shim_path, trainer_classes)
from nnunet_anomaly.plugin import _startup

from _helpers import source_copy

REPO = Path(__file__).resolve().parents[1]
HOOK_SOURCE = REPO / "nnunet_anomaly" / "plugin" / STARTUP_HOOK_NAME


def _clean_env(**extra):
    """This process's environment without anything our hook (or a user) may have set."""
    env = {k: v for k, v in os.environ.items() if k not in ("nnUNet_extTrainer", _startup.SWITCH, "PYTHONPATH")}
    env.update(extra)
    return env


def _run_python(code, env=None, site_dir=None):
    """Run `code` in a fresh interpreter; `site_dir` is processed like site-packages first (its .pth files run)."""
    prologue = f"import site; site.addsitedir({str(site_dir)!r})\n" if site_dir else ""
    return subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(code)], capture_output=True, text=True,
                          env=_clean_env() if env is None else env, timeout=300)


@pytest.fixture
def hook_site(tmp_path):
    """A folder holding only our .pth, as site-packages holds it after an install."""
    folder = tmp_path / "site"
    folder.mkdir()
    shutil.copy2(HOOK_SOURCE, folder / STARTUP_HOOK_NAME)
    return folder


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


# ----------------------------------------------------------------------------- the start-up hook
def test_hook_appends_our_folder_after_the_users_entries():
    package_dir = str(Path(ext_trainer_dir()).parents[1])
    environ = {}
    _startup.register_ext_trainer_dir(package_dir, environ)
    assert environ["nnUNet_extTrainer"] == ext_trainer_dir()
    _startup.register_ext_trainer_dir(package_dir, environ)  # spawned workers run the hook again
    assert environ["nnUNet_extTrainer"] == ext_trainer_dir()
    mine = os.pathsep.join(["/opt/my_trainers", "/opt/lab_trainers"])
    environ = {"nnUNet_extTrainer": mine}
    _startup.register_ext_trainer_dir(package_dir, environ)
    assert environ["nnUNet_extTrainer"].split(os.pathsep) == ["/opt/my_trainers", "/opt/lab_trainers", ext_trainer_dir()]


def test_hook_file_runs_in_a_fresh_interpreter(hook_site, tmp_path):
    """The .pth line itself: it sets the variable, keeps the user's entries, and can be switched off."""
    show = "import os; print(repr(os.environ.get('nnUNet_extTrainer')))"
    assert _run_python(show, site_dir=hook_site).stdout.strip() == repr(ext_trainer_dir())
    mine = str(tmp_path / "mine")
    kept = _run_python(show, env=_clean_env(nnUNet_extTrainer=mine), site_dir=hook_site).stdout.strip()
    assert kept == repr(mine + os.pathsep + ext_trainer_dir())
    off = _run_python(show, env=_clean_env(nnunet_anomaly_startup_hook="0"), site_dir=hook_site)
    assert off.stdout.strip() == "None"


def test_hook_never_fails_a_python_start(tmp_path):
    """Without our package on the path the .pth does nothing and prints nothing."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    shutil.copy2(HOOK_SOURCE, site_dir / STARTUP_HOOK_NAME)
    code = (f"import sys; sys.modules['nnunet_anomaly'] = None; import site; site.addsitedir({str(site_dir)!r}); "
            "import os; print(repr(os.environ.get('nnUNet_extTrainer')))")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=_clean_env(),
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "None" and result.stderr == ""


def test_hook_keeps_python_start_up_cheap():
    """The hook reads no JSON and imports nothing beyond importlib.util for an ordinary process."""
    code = ("import sys, os, importlib.util as u; before = set(sys.modules); "
            f"s = u.spec_from_file_location('_nnunet_anomaly_startup', {str(Path(_startup.__file__))!r}); "
            "s.loader.exec_module(u.module_from_spec(s)); "
            "print(sorted(set(sys.modules) - before))")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=_clean_env(),
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_nnunet_resolves_every_trainer_through_our_folder(hook_site):
    """A fresh process without nnUNet_extTrainer: every trainer resolves to our canonical class, found in our folder."""
    result = _run_python("""
        import os
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
        from nnunet_anomaly.plugin import trainer_classes
        for name, cls in trainer_classes().items():
            assert recursive_find_trainer_class_by_name(name) is cls, name
        print("ALL", len(trainer_classes()))
    """, site_dir=hook_site)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "ALL" in result.stdout
    assert f"Using trainer 'AnomalyTaskTrainer' from: {ext_trainer_dir()}" in result.stdout


def test_nothing_of_ours_in_nnunets_package_folder():
    """The installed distribution ships no file under nnunetv2/, and no older shim is left there."""
    files = importlib.metadata.files("nnunet-anomaly") or []
    assert not [f for f in files if str(f).replace("\\", "/").startswith("nnunetv2/")]
    assert any(Path(str(f)).name == STARTUP_HOOK_NAME for f in files), (
        "the start-up hook is not installed: reinstall the package (make env / pip install -e .)")
    assert stale_shim_path() is None, f"{stale_shim_path()} was left by an older install; reinstall (make env)"


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
                            timeout=60, env=_clean_env())
    assert result.returncode == 0 and result.stdout.strip() == ext_trainer_dir()
    check = subprocess.run([sys.executable, "-m", "nnunet_anomaly.plugin", "--check"], capture_output=True,
                           text=True, timeout=60, env=_clean_env(nnUNet_extTrainer=ext_trainer_dir()))
    assert f"our trainer folder {ext_trainer_dir()} is on nnUNet_extTrainer" in check.stdout
    assert "start-up hook" in discovery_report()


def test_broken_install_never_breaks_nnunets_trainer_search(tmp_path):
    """Simulate an ImportError in nnunet_anomaly.trainers: our module warns, a user's trainer in a later folder
    and nnU-Net's own trainers are still found."""
    user = tmp_path / "user_trainers"
    user.mkdir()
    (user / "my_trainers.py").write_text(textwrap.dedent("""
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        class MyLabTrainer(nnUNetTrainer):
            pass
    """))
    result = _run_python("""
        import sys, warnings
        sys.modules["nnunet_anomaly.trainers"] = None   # makes `import nnunet_anomaly.trainers` raise ImportError
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            print("FOUND", recursive_find_trainer_class_by_name("MyLabTrainer").__name__)
        print("OWN", recursive_find_trainer_class_by_name("nnUNetTrainer_1epoch").__name__)
        print("WARNED", any("nnunet-anomaly trainers are unavailable" in str(w.message) for w in caught))
        try:
            recursive_find_trainer_class_by_name("AnomalyTaskTrainer")
        except RuntimeError as error:
            print("MISSING", "Could not find requested nnunet trainer AnomalyTaskTrainer" in str(error))
    """, env=_clean_env(nnUNet_extTrainer=os.pathsep.join([ext_trainer_dir(), str(user)])))
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ("FOUND MyLabTrainer", "OWN nnUNetTrainer_1epoch", "WARNED True", "MISSING True"):
        assert line in result.stdout, result.stdout[-3000:]


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
def test_wheels_ship_the_hook_and_nothing_inside_nnunetv2(tmp_path):
    """Build the regular and the editable wheel (no network: --no-build-isolation) from a copy and inspect both."""
    source = source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
         str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    editable = subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_editable({str(dist)!r})"],
        cwd=source, capture_output=True, text=True, timeout=300)
    assert editable.returncode == 0, editable.stderr[-3000:]
    wheels = sorted(dist.glob("nnunet_anomaly-*.whl"))
    assert len(wheels) == 2 and any("editable" in w.name for w in wheels)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            record = archive.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
            top_level = archive.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode()
            assert archive.read(STARTUP_HOOK_NAME) == HOOK_SOURCE.read_bytes(), wheel.name
        assert f"{STARTUP_HOOK_NAME}," in record  # so `pip uninstall nnunet-anomaly` removes it
        assert not [n for n in names if n.startswith("nnunetv2/")], wheel.name
        assert top_level.split() == ["nnunet_anomaly"]
    regular = next(w for w in wheels if "editable" not in w.name)
    assert "nnunet_anomaly/trainers/__init__.py" in zipfile.ZipFile(regular).namelist()
