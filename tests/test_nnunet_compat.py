"""The nnU-Net releases we rely on are declared, checked at run time, and documented."""
import ast
import re
from importlib.metadata import version
from pathlib import Path

from nnunet_anomaly.plugin import NNUNET_REQUIREMENT, nnunet_version_problem

ROOT = Path(__file__).resolve().parents[1]


def _setup_requirements() -> list:
    """install_requires of setup.py, with module-level string constants resolved (no setup() call)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    constants = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                 for t in node.targets if isinstance(t, ast.Name)}
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    requires = next(k.value for k in call.keywords if k.arg == "install_requires")
    return [constants[e.id] if isinstance(e, ast.Name) else e.value for e in requires.elts]


def test_setup_declares_the_tested_nnunet_range():
    nnunet = [r for r in _setup_requirements() if re.match(r"nnunetv2\b", r)]
    assert nnunet == [NNUNET_REQUIREMENT] == ["nnunetv2>=2.8.1,<2.9"]


def test_the_installed_nnunet_is_in_the_range():
    assert nnunet_version_problem() is None, nnunet_version_problem()
    assert nnunet_version_problem(version("nnunetv2")) is None


def test_a_release_outside_the_range_is_named():
    for outside in ("2.9.0", "3.0", "2.8.0", "2.7.4"):
        assert f"nnunetv2 {outside} is outside the tested range" in nnunet_version_problem(outside)


def test_install_docs_state_the_range_and_how_to_check_a_newer_release():
    text = (ROOT / "documentation" / "install.md").read_text()
    assert NNUNET_REQUIREMENT in text
    section = text[text.index("## nnU-Net versions"):]
    for needed in ("pip install --no-deps", "pytest", "nnunet_anomaly.plugin --check"):
        assert needed in section, needed
